// Thread scaling of the simd-threads build: Melem/s (median of reps) for eval, train
// forward and backward on wasm-resident tensors, per pool size, against the simd build
// in the same process. Needs a machine with more cores than CI's 2 to say anything.
// Run (after npm run build): node scripts/thread-scaling.mjs [threads...]   e.g. 1 2 4 8 16
import os from "node:os";
import { createEngine, batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn, WasmTensor } from "../dist/index.js";

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const threadCounts = counts.length ? counts : [1, 2];
const REPS = 15;
const shapes = [
  [[32, 64, 56, 56], "NCHW"],
  [[32, 56, 56, 64], "NHWC"],
  [[8, 256, 14, 14], "NCHW"],
  [[256, 1024], "NCHW"],
];

/** Median seconds per call of each kernel on each engine, runs interleaved round-robin
 * (engine A, engine B, A, B, ...) so drifting machine load hits both alike. */
function measure(engines, shape, layout) {
  const n = shape.reduce((a, b) => a * b, 1);
  const C = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const setups = engines.map((engine) => {
    const x = WasmTensor.alloc(n, engine), y = WasmTensor.alloc(n, engine), dy = WasmTensor.alloc(n, engine), dx = WasmTensor.alloc(n, engine);
    const xv = x.view, dyv = dy.view;
    for (let i = 0; i < n; i++) { xv[i] = Math.sin(i) * 2 + 1; dyv[i] = Math.cos(i * 0.7); }
    const rm = WasmTensor.alloc(C, engine), rv = WasmTensor.from(new Float32Array(C).fill(1), engine);
    const w = WasmTensor.from(new Float32Array(C).fill(1), engine), b = WasmTensor.alloc(C, engine);
    const { mean, invStd } = batchNormTrainOn(engine, x, shape, { layout });
    return {
      tensors: [x, y, dy, dx, rm, rv, w, b],
      eval: () => batchNormEvalOn(engine, x, shape, { weight: w, bias: b, runningMean: rm, runningVar: rv, layout, out: y }),
      train: () => batchNormTrainOn(engine, x, shape, { weight: w, bias: b, runningMean: rm, runningVar: rv, layout, out: y }),
      backward: () => batchNormBackwardOn(engine, dy, x, shape, { weight: w, mean, invStd, layout, out: dx }),
    };
  });
  const results = engines.map(() => ({}));
  for (const k of ["eval", "train", "backward"]) {
    const times = engines.map(() => []);
    for (let rep = 0; rep < REPS + 3; rep++) {
      setups.forEach((s, e) => {
        const a = performance.now();
        s[k]();
        if (rep >= 3) times[e].push(performance.now() - a); // 3 warm-up rounds
      });
    }
    times.forEach((t, e) => {
      t.sort((a, b) => a - b);
      results[e][k] = n / (t[t.length >> 1] / 1e3) / 1e6;
    });
  }
  for (const s of setups) for (const t of s.tensors) t.free();
  return results;
}

// One process per pool size: a build loads once per realm (see createEngine).
const child = process.env.BN_SCALING_THREADS;
if (child) {
  const simd = await createEngine("simd");
  const threaded = await createEngine("simd-threads", Number(child));
  const rows = shapes.map(([shape, layout]) => {
    const [s, t] = measure([simd, threaded], shape, layout);
    return { shape, layout, simd: s, threads: t };
  });
  console.log(JSON.stringify(rows));
} else {
  const { execFileSync } = await import("node:child_process");
  console.log(`# ${os.cpus()[0]?.model}, ${os.availableParallelism()} logical cores, Node ${process.version}; Melem/s, median of ${REPS}, builds interleaved; resident tensors`);
  console.log(`| shape | layout | build | eval | train fwd | backward | eval x simd | train x simd | backward x simd |`);
  console.log(`|---|---|---|---|---|---|---|---|---|`);
  const results = threadCounts.map((t) => [t, JSON.parse(execFileSync(process.execPath, [process.argv[1]], { env: { ...process.env, BN_SCALING_THREADS: String(t) }, encoding: "utf8" }))]);
  const f = (v) => v.toFixed(0);
  shapes.forEach(([shape, layout], i) => {
    const base = results[0][1][i].simd; // simd, measured in the first child
    console.log(`| ${shape.join("x")} | ${layout} | simd | ${f(base.eval)} | ${f(base.train)} | ${f(base.backward)} | 1.00 | 1.00 | 1.00 |`);
    for (const [t, rows] of results) {
      const r = rows[i].threads;
      const x = (k) => (r[k] / rows[i].simd[k]).toFixed(2); // vs simd in the same process
      console.log(`| ${shape.join("x")} | ${layout} | threads=${t} | ${f(r.eval)} | ${f(r.train)} | ${f(r.backward)} | ${x("eval")} | ${x("train")} | ${x("backward")} |`);
    }
  });
}
