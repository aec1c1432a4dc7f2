// Runs in the browser (page or module worker): loads batchnorm-wasm the way an app
// would, runs the given cases, returns plain arrays for the test to check in Node.
import { init, batchNormTrain, batchNormEval, WasmTensor, setParallelThreshold } from "/dist/index.js";

export async function runCases(cases, stage = () => {}) {
  stage("init started");
  const info = await init({ threads: 2 });
  stage(`init done (${info.build})`);
  const outputs = cases.map((c) => {
    const f = (a) => Float32Array.from(a);
    if (c.training) {
      const rm = f(c.mean), rv = f(c.var);
      const { y } = batchNormTrain(f(c.x), c.shape, {
        weight: f(c.scale), bias: f(c.bias), runningMean: rm, runningVar: rv,
        eps: c.epsilon, momentum: c.momentum, convention: "onnx", layout: c.layout,
      });
      return { y: Array.from(y), mean: Array.from(rm), var: Array.from(rv) };
    }
    const y = batchNormEval(f(c.x), c.shape, {
      weight: f(c.scale), bias: f(c.bias), runningMean: f(c.mean), runningVar: f(c.var), eps: c.epsilon,
    });
    return { y: Array.from(y) };
  });
  // A tensor resident in wasm memory, above a lowered threshold so the threaded kernels run.
  setParallelThreshold(1 << 16);
  const n = 4 * 8 * 64 * 64;
  const x = WasmTensor.alloc(n);
  for (let i = 0; i < n; i++) x.view[i] = Math.sin(i * 0.37) * 3 + 1;
  const { mean } = batchNormTrain(x, [4, 8, 64, 64], { out: WasmTensor.alloc(n) });
  return { info, outputs, bigMean: Array.from(mean) };
}
