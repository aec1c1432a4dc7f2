// Timing: warm-up, calibrated inner loops, and round-robin repetitions so that the
// contenders of one comparison share the machine's noise (2 shared cores here).
import v8 from "node:v8";
import vm from "node:vm";

v8.setFlagsFromString("--expose-gc");
/** A full GC between repetitions keeps one contender's garbage out of another's time. */
export const gc = vm.runInNewContext("gc");

export function median(xs) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const now = () => performance.now();
export const SLOW_MS = 1000;

async function callN(fn, n, isAsync) {
  if (isAsync) for (let i = 0; i < n; i++) await fn();
  else for (let i = 0; i < n; i++) fn();
}

/**
 * Measures cases side by side. Each case: { id, fn, before?, warmup?, reps?, minRepMs?,
 * budgetMs?, settle? } (fn may be async; before() runs untimed before each repetition, e.g.
 * to switch the tfjs backend; `settle` calls of fn run untimed after each repetition's GC,
 * see below). Every case is warmed up, its inner loop count is calibrated
 * so a timed repetition lasts at least minRepMs, then repetitions go round-robin: round r
 * times every case that still wants a repetition.
 *
 * A case with budgetMs whose warm-up call took at least SLOW_MS (a call of seconds: JIT
 * warm-up is noise there) counts that warm-up call as its first sample and takes only
 * as many repetitions as fit in budgetMs (at least 1 in all).
 * Returns a Map id -> { median, min, max, reps, iters, samples } in seconds per call.
 *
 * `settle` (default 0): the full GC before a repetition leaves the caches cold and V8's
 * concurrent sweeper running on another core for about a millisecond, so the first call
 * after it measures that GC as much as the code: with 4 ms repetitions, a 2-thread
 * LayerNorm of (4096, 768) measured 0.75-1.0 ms a call, 0.5 ms back to back (a GroupNorm
 * 0.86-1.05 against 0.65 ms), while one thread's code moved far less. With `settle: 1` each
 * repetition times the calls that follow one untimed call: steady-state throughput, as
 * in a loop that does not force a full GC every few milliseconds.
 */
export async function measure(cases, defaults) {
  const out = new Map();
  const st = [];
  for (const c of cases) {
    const o = { warmup: 2, reps: 10, minRepMs: 2, settle: 0, ...defaults, ...c };
    if (o.before) await o.before();
    let isAsync = false;
    let t1 = Infinity;
    const samples = [];
    for (let i = 0; i < Math.max(1, o.warmup); i++) {
      if (i > 0 && o.before) await o.before();
      gc();
      const t = now();
      const r = o.fn();
      if (r && typeof r.then === "function") { isAsync = true; await r; }
      const dt = now() - t;
      t1 = Math.min(t1, dt);
      if (o.budgetMs !== undefined && dt >= SLOW_MS) {
        samples.push(dt / 1000);
        break;
      }
    }
    let reps = o.reps;
    if (samples.length) reps = Math.max(1, Math.min(o.reps, Math.floor(o.budgetMs / t1)));
    const iters = o.minRepMs > 0 ? Math.max(1, Math.min(1e6, Math.ceil(o.minRepMs / Math.max(t1, 1e-4)))) : 1;
    st.push({ o: { ...o, reps }, isAsync, iters, samples });
  }
  const rounds = Math.max(...st.map((s) => s.o.reps));
  for (let r = 0; r < rounds; r++) {
    for (const s of st) {
      if (s.samples.length >= s.o.reps) continue;
      if (s.o.before) await s.o.before();
      gc();
      await callN(s.o.fn, s.o.settle, s.isAsync);
      const t = now();
      await callN(s.o.fn, s.iters, s.isAsync);
      s.samples.push((now() - t) / 1000 / s.iters);
    }
  }
  for (const s of st) {
    out.set(s.o.id, {
      median: median(s.samples),
      min: Math.min(...s.samples),
      max: Math.max(...s.samples),
      reps: s.samples.length,
      iters: s.iters,
      samples: s.samples,
    });
  }
  return out;
}

/**
 * Cold-cache timing: before each timed call a buffer of `evictBytes` (several times the
 * last-level cache: 128 MiB by default, against this VM's 32 MiB L3) is written, so the
 * call finds its operands in main memory, as it would for a tensor too large for the
 * cache or not touched since it was last in one. Each sample is one call; cases go round
 * robin; medians in seconds. `measure` reports the warm case instead: back-to-back calls
 * whose operands stay in cache when they fit (the 12 MiB tensors of bench/norms.mjs fit in
 * this VM's L3, and so does a copy of them, which then runs at L3 speed). The evicting
 * writes leave dirty lines that the timed call's misses write back, for every case alike.
 * Synchronous cases only.
 */
export function measureCold(cases, { reps = 15, evictBytes = 128 << 20 } = {}) {
  const evict = new Float32Array(evictBytes >>> 2);
  const samples = new Map(cases.map((c) => [c.id, []]));
  for (const c of cases) c.fn(); // compiled and warmed up before the first sample
  for (let r = 0; r < reps; r++) {
    for (const c of cases) {
      evict.fill(r + 1);
      const t = now();
      c.fn();
      samples.get(c.id).push((now() - t) / 1000);
    }
  }
  return new Map([...samples].map(([id, xs]) => [id, { median: median(xs), min: Math.min(...xs), reps: xs.length }]));
}
