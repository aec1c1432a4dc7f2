// Where the time of a training step goes: each pass of the kernels timed on its own
// (statistics, normalisation, gradient sums, dx), on wasm-resident tensors, medians.
//   node bench/breakdown.mjs [build]      (default simd)
import { createEngine, shardMoments, shardNormalize, shardGradSums, shardBackwardApply, invStdOf, WasmTensor } from "../dist/index.js";

const build = process.argv[2] ?? "simd";
const engine = await createEngine(build, build === "simd-threads" ? 2 : undefined);
const REPS = 21;
const median = (f) => {
  const t = [];
  for (let i = 0; i < REPS + 3; i++) {
    const a = performance.now();
    f();
    if (i >= 3) t.push(performance.now() - a);
  }
  return t.sort((a, b) => a - b)[REPS >> 1];
};

console.log(`# ${build}; median of ${REPS}; Melem/s and share of the four passes`);
console.log("| shape | layout | statistics (read x) | normalise (read x, write y) | grad sums (read dy, x) | dx (read dy, x, write dx) |");
console.log("|---|---|---|---|---|---|");
for (const [shape, layout] of [[[32, 64, 56, 56], "NCHW"], [[32, 56, 56, 64], "NHWC"], [[256, 1024], "NCHW"], [[4096, 16, 64], "NCHW"]]) {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = WasmTensor.alloc(n, engine), dy = WasmTensor.alloc(n, engine), out = WasmTensor.alloc(n, engine);
  const xv = x.view, dyv = dy.view;
  for (let i = 0; i < n; i++) { xv[i] = Math.sin(i) * 2 + 1; dyv[i] = Math.cos(i * 0.3); }
  const m = shardMoments(engine, x, shape, layout);
  const invStd = invStdOf(m, 1e-5);
  const mean32 = Float32Array.from(m.mean);
  const sums = shardGradSums(engine, dy, x, shape, layout, mean32);
  const t = [
    median(() => shardMoments(engine, x, shape, layout)),
    median(() => shardNormalize(engine, x, shape, layout, { mean: m.mean, invStd, out })),
    median(() => shardGradSums(engine, dy, x, shape, layout, mean32)),
    median(() => shardBackwardApply(engine, dy, x, shape, layout, { mean: mean32, invStd, sums, count: m.count, out })),
  ];
  const total = t.reduce((a, b) => a + b, 0);
  const cell = (ms) => `${(n / ms / 1e3).toFixed(0)} (${((100 * ms) / total).toFixed(0)}%)`;
  console.log(`| ${shape.join("x")} | ${layout} | ${t.map(cell).join(" | ")} |`);
  for (const v of [x, dy, out]) v.free();
}
