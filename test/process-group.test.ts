/**
 * Process groups on Node worker_threads, both transports: collectives (bit-identical on
 * every rank, in rank order), mismatched calls, and faults (a rank terminated or crashed
 * mid-collective, a timeout, dispose).
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { ProcessGroup, WorkerError, InvalidOptionError, type ProcessGroupOptions } from "../dist/index.js";
import { wrap, type Remote } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { rng } from "./reference.js";
import { RANK, disposeAll, startGroup, type RankApi } from "./workers/start.js";

afterEach(disposeAll);
const start = (n: number, opts: ProcessGroupOptions) => startGroup(n, opts);

/** The sum over ranks in rank order, in float64, rounded once (what every rank must get). */
function rankOrderSum(parts: Float64Array[] | Float32Array[], mean: boolean, f32: boolean): Float64Array | Float32Array {
  const out = f32 ? new Float32Array(parts[0].length) : new Float64Array(parts[0].length);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (const p of parts) s += p[i];
    out[i] = mean ? s / parts.length : s;
  }
  return out;
}

/** `v` scaled by 10^-3 .. 10^3 in turn (so the summation order shows in the bits), as float32 or float64. */
function spread(v: Float32Array, f32: boolean): Float32Array | Float64Array {
  const scaled = Array.from(v, (x, i) => x * 10 ** ((i % 7) - 3));
  return f32 ? Float32Array.from(scaled) : Float64Array.from(scaled);
}

/** The first element whose bits differ (NaN-safe, no huge diff printed), or -1. */
function firstBitDifference(a: Float32Array | Float64Array, b: Float32Array | Float64Array): number {
  if (a.length !== b.length || a.BYTES_PER_ELEMENT !== b.BYTES_PER_ELEMENT) return 0;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return Math.floor(i / a.BYTES_PER_ELEMENT);
  return -1;
}

/** Ranks 0 and 1 of 3 enter a barrier; neither passes in 300 ms, both do once rank 2 enters. */
async function expectBarrierHolds(ranks: Remote<RankApi>[]): Promise<void> {
  let passed = 0;
  const first = [ranks[0].barrier(), ranks[1].barrier()].map((p) => p.then(() => passed++));
  await new Promise((r) => setTimeout(r, 300));
  expect(passed).toBe(0);
  await Promise.all([...first, ranks[2].barrier()]);
  expect(passed).toBe(2);
}

describe.each(["shared", "message"] as const)("process group over %s", (transport) => {
  describe.each([1, 2, 3, 4])("%i rank(s)", (n) => {
    it("allReduce (sum, mean; f32, f64; small and chunked) is the rank-order sum, bit-identical on every rank", async () => {
      // 64 KiB slots: 100k floats go in 7 chunks, each past the small-reduce limit.
      const { ranks } = await start(n, { transport, slotBytes: 1 << 16 });
      for (const [len, f32, op] of [[128, true, "sum"], [128, false, "mean"], [100_000, true, "sum"], [30_000, false, "mean"], [0, true, "sum"]] as const) {
        const r = rng(len + n);
        // Values of very different magnitudes, so the summation order shows in the bits.
        const parts = ranks.map(() => spread(r.normals(len), f32));
        const got = await Promise.all(ranks.map((k, i) => k.allReduce(parts[i], op)));
        const want = rankOrderSum(parts as Float64Array[], op === "mean", f32);
        for (const g of got) {
          expect(g.length).toBe(len);
          expect(firstBitDifference(g, want)).toBe(-1);
        }
      }
    });

    it("reduceScatter: each rank's segment is the rank-order sum (bit-identical), the rest untouched; allGatherSegments assembles the segments", async () => {
      // 64 KiB slots: 100k floats go in 7 chunks, so segments start and end inside chunks.
      const { ranks } = await start(n, { transport, slotBytes: 1 << 16 });
      for (const [len, f32, op] of [[100_000, true, "sum"], [30_001, false, "mean"], [7, true, "sum"], [2, true, "mean"], [0, false, "sum"]] as const) {
        const r = rng(len + 10 * n);
        const parts = ranks.map(() => spread(r.normals(len), f32));
        const want = rankOrderSum(parts as Float64Array[], op === "mean", f32);
        const segments = await Promise.all(ranks.map((k) => k.segment(len)));
        // Contiguous, in rank order, covering the buffer, sizes differing by at most one.
        expect(segments[0][0]).toBe(0);
        segments.forEach(([lo, hi], i) => {
          expect(hi).toBe(i + 1 < n ? segments[i + 1][0] : len);
          expect(Math.abs(hi - lo - len / n)).toBeLessThan(1);
        });
        const got = await Promise.all(ranks.map((k, i) => k.reduceScatter(parts[i], op)));
        got.forEach((g, i) => {
          const [lo, hi] = segments[i];
          expect(firstBitDifference(g.subarray(lo, hi), want.subarray(lo, hi))).toBe(-1);
          const mine = parts[i]; // sent by value: the rank's input, outside its segment untouched
          expect(firstBitDifference(g.subarray(0, lo), mine.subarray(0, lo))).toBe(-1);
          expect(firstBitDifference(g.subarray(hi), mine.subarray(hi))).toBe(-1);
        });
        // Each rank holds the reduced values in its segment and its own garbage elsewhere.
        const gathered = await Promise.all(ranks.map((k, i) => k.allGatherSegments(got[i])));
        for (const g of gathered) expect(firstBitDifference(g, want)).toBe(-1);
      }
    });

    it("broadcast copies the root's buffer; allGather returns every rank's", async () => {
      const { ranks } = await start(n, { transport, slotBytes: 1 << 12 });
      const root = n - 1;
      const parts = ranks.map((_, i) => Float64Array.from(rng(i).normals(3000)));
      const got = await Promise.all(ranks.map((k, i) => k.broadcast(parts[i], root)));
      for (const g of got) expect(g).toEqual(parts[root]);
      const f = ranks.map((_, i) => Float32Array.from({ length: 1500 }, (_, j) => i * 10_000 + j));
      const all = await Promise.all(ranks.map((k, i) => k.allGather(f[i])));
      for (const g of all) expect(g).toEqual(f);
    });
  });

  it("bad arguments reject on the calling rank before any collective (the group stays in step)", async () => {
    const { ranks } = await start(2, { transport });
    expect(await ranks[0].outcome("allReduce", Float32Array.of(1), { operation: "sum" })).toMatchObject({ name: "InvalidOptionError", message: expect.stringMatching(/unknown option "operation" \(did you mean "op"\?\)/) });
    expect(await ranks[0].outcome("allReduce", Float32Array.of(1), { op: "max" })).toMatchObject({ name: "InvalidArgumentError" });
    expect(await ranks[0].outcome("broadcast", Float32Array.of(1), 2)).toMatchObject({ name: "InvalidArgumentError", message: expect.stringMatching(/root must be a rank in \[0, 1\], got 2/) });
    expect(await ranks[0].outcome("allReduce", [1, 2] as never)).toMatchObject({ name: "InvalidArgumentError", message: expect.stringMatching(/Float32Array or Float64Array/) });
    expect(await ranks[0].outcome("reduceScatter", Float32Array.of(1), { op: "max" })).toMatchObject({ name: "InvalidArgumentError", message: expect.stringMatching(/reduceScatter op must be "sum" or "mean"/) });
    expect(await ranks[0].outcome("allGatherSegments", new Int32Array(2) as never)).toMatchObject({ name: "InvalidArgumentError", message: expect.stringMatching(/allGatherSegments needs a Float32Array or Float64Array/) });
    const ok = await Promise.all(ranks.map((k) => k.allReduce(Float64Array.of(0.5), "mean")));
    expect(ok).toEqual([Float64Array.of(0.5), Float64Array.of(0.5)]);
  });

  it("barrier: no rank passes before every rank arrived", async () => {
    await expectBarrierHolds((await start(3, { transport })).ranks);
  });

  it("mismatched calls are an error on every rank; the group stays usable", async () => {
    const { ranks, group } = await start(2, { transport });
    const sizes = await Promise.all([ranks[0].outcome("allReduce", new Float32Array(128)), ranks[1].outcome("allReduce", new Float32Array(64))]);
    for (const s of sizes) {
      expect(s.name).toBe("CollectiveMismatchError");
      expect(s.message).toMatch(/rank 0 allReduce\(sum, 128 float32\), rank 1 allReduce\(sum, 64 float32\)/);
    }
    const kinds = await Promise.all([ranks[0].outcome("barrier"), ranks[1].outcome("allGather", new Float32Array(4))]);
    for (const s of kinds) expect(s.message).toMatch(/rank 0 barrier\(\), rank 1 allGather\(4 float32\)/);
    const scatter = await Promise.all([ranks[0].outcome("reduceScatter", new Float32Array(8)), ranks[1].outcome("allGatherSegments", new Float32Array(8))]);
    for (const s of scatter) expect(s.message).toMatch(/rank 0 reduceScatter\(sum, 8 float32\), rank 1 allGatherSegments\(8 float32\)/);
    expect(group.broken).toBeUndefined();
    const ok = await Promise.all(ranks.map((k) => k.allReduce(Float32Array.of(1, 2), "sum")));
    for (const g of ok) expect(g).toEqual(Float32Array.of(2, 4));
  });

  it("a rank terminated mid-collective: every other rank's collective rejects, the group is broken, a new one works", async () => {
    const { ranks, group } = await start(3, { transport });
    const pending = [ranks[0].outcome("allReduce", new Float32Array(1000)), ranks[1].outcome("barrier")];
    await new Promise((r) => setTimeout(r, 100)); // both are waiting for rank 2
    group.terminate(2);
    for (const s of await Promise.all(pending)) {
      expect(s).toMatchObject({ ok: false, name: "WorkerError" });
      expect(s.message).toMatch(/process group is broken: rank 2 (was terminated|died)/);
    }
    expect(group.broken).toBeInstanceOf(WorkerError);
    expect(await ranks[0].outcome("barrier")).toMatchObject({ ok: false, name: "WorkerError" });
    const next = await start(2, { transport });
    expect(await Promise.all(next.ranks.map((k) => k.allReduce(Float32Array.of(1), "sum")))).toEqual([Float32Array.of(2), Float32Array.of(2)]);
  });

  it("a rank that crashes (exits) mid-collective: the others reject", async () => {
    const { ranks, group } = await start(2, { transport });
    const pending = ranks[0].outcome("allReduce", new Float32Array(10));
    await new Promise((r) => setTimeout(r, 100));
    void ranks[1].exit(3);
    const s = await pending;
    expect(s).toMatchObject({ ok: false, name: "WorkerError" });
    // Shared memory carries only "rank 1 died"; the port carries the exit code.
    expect(s.message).toMatch(/rank 1 (exited \(code 3\)|died)/);
    expect(group.broken?.message).toMatch(/rank 1 exited/);
  });

  it("a collective no other rank joins times out, and breaks the group for everyone", async () => {
    const { ranks, group } = await start(2, { transport, timeoutMs: 300 });
    const s = await ranks[0].outcome("barrier");
    expect(s).toMatchObject({ ok: false, name: "CollectiveTimeoutError" });
    expect(s.message).toMatch(/rank 0 waited 300 ms/);
    await expect.poll(() => group.broken?.message).toMatch(/rank 0 waited 300 ms/);
    expect(await ranks[1].outcome("barrier")).toMatchObject({ ok: false, name: "WorkerError" });
  });

  it("dispose breaks the group and ends every worker", async () => {
    const { ranks, group, workers } = await start(2, { transport });
    const exits = workers.map((w) => new Promise((r) => w.once("exit", r)));
    const pending = ranks[0].outcome("barrier");
    group.dispose();
    await Promise.all(exits);
    void pending; // its worker is gone: the call can never answer (comlink keeps it pending)
    expect(group.broken?.message).toMatch(/disposed/);
  });
});

// A rank that reaches a shared-memory barrier first polls for up to `spinMs` before it
// sleeps: the polling must see every arrival (no sleep at all, or one far past the test)
// and must still give way to a dead rank, a timeout and a disposed group.
describe.each([0, 60_000])("shared memory with spinMs %i", (spinMs) => {
  it("collectives and barriers as without polling", async () => {
    const { ranks } = await start(3, { transport: "shared", spinMs, slotBytes: 1 << 16 });
    for (const [len, op] of [[128, "sum"], [100_000, "mean"]] as const) {
      const parts = ranks.map((_, i) => spread(rng(len + i).normals(len), true));
      const want = rankOrderSum(parts as Float32Array[], op === "mean", true);
      for (const g of await Promise.all(ranks.map((k, i) => k.allReduce(parts[i], op)))) expect(firstBitDifference(g, want)).toBe(-1);
    }
    await expectBarrierHolds(ranks);
  });

  it("the group keeps the spinMs it was given", async () => {
    const { group } = await start(2, { transport: "shared", spinMs });
    expect(group.spinMs).toBe(spinMs);
  });

  it("a rank terminated while the others poll: they reject at once, not after spinMs", async () => {
    const { ranks, group } = await start(3, { transport: "shared", spinMs });
    const t0 = performance.now();
    const pending = [ranks[0].outcome("allReduce", new Float32Array(10)), ranks[1].outcome("barrier")];
    await new Promise((r) => setTimeout(r, 100));
    group.terminate(2);
    for (const s of await Promise.all(pending)) expect(s).toMatchObject({ ok: false, name: "WorkerError", message: expect.stringMatching(/rank 2/) });
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it("polling stops at timeoutMs", async () => {
    const { ranks } = await start(2, { transport: "shared", spinMs, timeoutMs: 300 });
    const t0 = performance.now();
    expect(await ranks[0].outcome("barrier")).toMatchObject({ ok: false, name: "CollectiveTimeoutError", message: expect.stringMatching(/rank 0 waited 300 ms/) });
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

it("spinMs by default: 0.2 ms, or 0 with more ranks than logical cores", async () => {
  expect((await start(1, { transport: "shared" })).group.spinMs).toBe(0.2);
  const cores = availableParallelism();
  expect((await start(cores + 1, { transport: "shared" })).group.spinMs).toBe(0);
});

describe("bucketed gradient all-reduce and parameter broadcast", () => {
  const seeded = (seed: number, sizes: number[]) => {
    let s = seed; // as test/workers/rank.mjs makes them
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    return sizes.map((n) => Float32Array.from({ length: n }, next));
  };
  // 4 KiB buckets: tensors split across buckets and buckets spanning tensors. 128 KiB: the
  // 20,000-float tensor goes alone, in place; the small ones around it are packed.
  it.each([
    ["shared", [5, 0, 1000, 3, 2500, 7], 4096],
    ["message", [5, 0, 1000, 3, 2500, 7], 4096],
    ["shared", [5, 20_000, 3, 2500, 7], 1 << 17],
  ] as const)("over %s, sizes %j, %i-byte buckets: every element reduced once, in rank order", async (transport, sizes, bucketBytes) => {
    const { ranks } = await start(3, { transport });
    const seeds = [11, 22, 33];
    for (const [op, mean] of [["sum", false], ["mean", true]] as const) {
      const inputs = seeds.map((seed) => seeded(seed, [...sizes]));
      const got = await Promise.all(ranks.map((r, i) => r.bucketed("reduce", [...sizes], seeds[i], { op, bucketBytes })));
      const want = sizes.map((_, t) => rankOrderSum(inputs.map((a) => a[t]) as Float32Array[], mean, true));
      for (const g of got) g.forEach((a, t) => expect(firstBitDifference(a, want[t]), `tensor ${t}`).toBe(-1));
    }
    const b = await Promise.all(ranks.map((r, i) => r.bucketed("broadcast", [...sizes], seeds[i], { root: 1, bucketBytes })));
    for (const g of b) expect(g).toEqual(seeded(22, [...sizes]));
  });
});

describe("ProcessGroup.create", () => {
  it("rejects bad options before touching the workers", async () => {
    await expect(ProcessGroup.create([], {})).rejects.toThrow(/non-empty array/);
    await expect(ProcessGroup.create([], { transport: "carrier" as never })).rejects.toThrow(InvalidOptionError);
    await expect(ProcessGroup.create([], { timeout: 3 } as never)).rejects.toThrow(/unknown option "timeout" \(did you mean "timeoutMs"\?\)/);
    await expect(ProcessGroup.create([], { slotBytes: 12 })).rejects.toThrow(/slotBytes must be a positive multiple of 8/);
    for (const spinMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, "1"]) {
      await expect(ProcessGroup.create([], { spinMs } as never)).rejects.toThrow(/spinMs must be a number of milliseconds >= 0/);
    }
  });

  it("workers that asked to join before the group was created are answered", async () => {
    const workers = [new Worker(RANK), new Worker(RANK)];
    const ranks = workers.map((w) => wrap<RankApi>(nodeEndpoint(w)));
    const joined = Promise.all(ranks.map((r) => r.join()));
    await new Promise((r) => setTimeout(r, 400)); // their first requests found nobody listening
    const group = await ProcessGroup.create(workers);
    try {
      expect((await joined).map((j) => j.rank)).toEqual([0, 1]);
      expect(await Promise.all(ranks.map((k) => k.allReduce(Float32Array.of(3), "sum")))).toEqual([Float32Array.of(6), Float32Array.of(6)]);
    } finally {
      group.dispose();
    }
  });

  it("a worker that never joins: create rejects in time and terminates the workers", async () => {
    const w = new Worker("setInterval(() => {}, 1000)", { eval: true });
    const exited = new Promise((r) => w.once("exit", r));
    await expect(ProcessGroup.create([w], { joinTimeoutMs: 200 })).rejects.toThrow(/within 200 ms/);
    await exited;
  });
});
