// The main job: load the best wasm build, train a BatchNorm2d-sized layer for a few
// steps on wasm-resident tensors, check the result, and time eval against a plain JS loop.
// Run: npm start (builds first) or node examples/demo.mjs (after npm run build).
import { init, batchNormTrain, batchNormEval, batchNormBackward, WasmTensor } from "../dist/index.js";

const info = await init();
console.log(`batchnorm-wasm loaded build "${info.build}" with ${info.threads} thread(s)`);

const [N, C, H, W] = [32, 64, 56, 56];
const shape = [N, C, H, W];
const size = N * C * H * W;
const plane = H * W;

// Input with a different mean and spread per channel, already resident in wasm memory.
const x = WasmTensor.alloc(size);
const y = WasmTensor.alloc(size);
const dx = WasmTensor.alloc(size);
const dy = WasmTensor.alloc(size);
{
  const xv = x.view;
  const dyv = dy.view;
  let s = 1;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < size; i++) {
    const c = Math.floor(i / plane) % C;
    xv[i] = c + (1 + c / 8) * (rand() + rand() + rand() - 1.5);
    dyv[i] = rand() - 0.5;
  }
}
const weight = new Float32Array(C).fill(1);
const bias = new Float32Array(C);
const runningMean = new Float32Array(C);
const runningVar = new Float32Array(C).fill(1);

console.log(`\nTraining forward + backward, 5 steps on (${shape.join(", ")}) = ${(size / 1e6).toFixed(1)} M elements:`);
for (let step = 1; step <= 5; step++) {
  const t0 = performance.now();
  const { mean, invStd } = batchNormTrain(x, shape, { weight, bias, runningMean, runningVar, out: y });
  const { dWeight, dBias } = batchNormBackward(dy, x, shape, { weight, mean, invStd, out: dx });
  const ms = performance.now() - t0;
  console.log(
    `  step ${step}: ${ms.toFixed(1)} ms  running mean[1..3] = ${fmt(runningMean.subarray(1, 4))}  ` +
      `running var[1..3] = ${fmt(runningVar.subarray(1, 4))}  dWeight[0] = ${dWeight[0].toFixed(3)}  dBias[0] = ${dBias[0].toFixed(3)}`,
  );
}

// After normalisation each channel has mean ~0 and std ~1.
const yv = y.view;
let worst = 0;
for (let c = 0; c < C; c++) {
  let s = 0, s2 = 0;
  for (let n = 0; n < N; n++) for (let i = 0; i < plane; i++) { const v = yv[(n * C + c) * plane + i]; s += v; s2 += v * v; }
  const m = s / (N * plane);
  worst = Math.max(worst, Math.abs(m), Math.abs(Math.sqrt(s2 / (N * plane) - m * m) - 1));
}
console.log(`\nNormalised output: every channel has |mean| and |std - 1| <= ${worst.toExponential(1)}`);

// Eval forward: wasm on resident tensors vs a plain JS loop, medians of 7 runs.
const med = (f) => { const t = []; for (let i = 0; i < 7; i++) { const a = performance.now(); f(); t.push(performance.now() - a); } return t.sort((a, b) => a - b)[3]; };
const yJs = new Float32Array(size);
const xJs = x.toArray();
const wasmMs = med(() => batchNormEval(x, shape, { weight, bias, runningMean, runningVar, out: y }));
const jsMs = med(() => {
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
    const a = weight[c] / Math.sqrt(runningVar[c] + 1e-5), m = runningMean[c], b = bias[c];
    const o = (n * C + c) * plane;
    for (let i = 0; i < plane; i++) yJs[o + i] = (xJs[o + i] - m) * a + b;
  }
});
console.log(`Eval forward, median of 7: wasm ${(size / wasmMs / 1e3).toFixed(0)} Melem/s, plain JS ${(size / jsMs / 1e3).toFixed(0)} Melem/s (${(jsMs / wasmMs).toFixed(1)}x)`);

for (const t of [x, y, dx, dy]) t.free();

function fmt(a) {
  return "[" + Array.from(a, (v) => v.toFixed(3)).join(", ") + "]";
}
