// Our library's harness: one contender per (build, path), where path is
// "resident" (WasmTensor arguments: zero-copy), "copy" (Float32Array arguments, moved
// through wasm memory on every call, into preallocated outputs) or "new" (Float32Array
// arguments, a new output array per call: what `batchNormEval(x, shape, opts)` does).
import { createEngine, batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn, WasmTensor } from "../../dist/index.js";

export const BUILDS = ["scalar", "simd", "simd-threads"];
export const THREADS = 2;

/** A build's name in tables: the threads build with its pool size. */
export const buildLabel = (build) => (build === "simd-threads" ? `simd-threads(${THREADS})` : build);

export async function createOurEngine(build) {
  return build === "simd-threads" ? createEngine(build, THREADS) : createEngine(build);
}

/**
 * spec: { shape, layout, eps, momentum }; data: { x, dy, weight, bias, runningMean, runningVar } (Float32Array).
 * Returns { eval, train, backward, step, check(convention), free }.
 */
export function oursContender(eng, spec, data, path) {
  const { shape, layout, eps, momentum } = spec;
  const n = data.x.length;
  const owned = [];
  const put = (a) => {
    if (path !== "resident") return a.slice();
    const t = WasmTensor.from(a, eng);
    owned.push(t);
    return t;
  };
  const fresh = (len) => {
    if (path === "new") return undefined;
    if (path === "copy") return new Float32Array(len);
    const t = WasmTensor.alloc(len, eng);
    owned.push(t);
    return t;
  };
  const x = put(data.x), dy = put(data.dy), weight = put(data.weight), bias = put(data.bias);
  const runningMean = put(data.runningMean), runningVar = put(data.runningVar);
  const y = fresh(n), dx = fresh(n); // undefined for "new": every call allocates its output
  const trainOpts = { weight, bias, runningMean, runningVar, momentum, eps, layout, out: y };
  const evalOpts = { weight, bias, runningMean, runningVar, eps, layout, out: y };
  const saved = batchNormTrainOn(eng, x, shape, trainOpts);
  const bwdOpts = { weight, mean: saved.mean, invStd: saved.invStd, layout, out: dx };
  const arr = (t) => (t instanceof WasmTensor ? t.toArray() : t.slice());

  return {
    eval: () => batchNormEvalOn(eng, x, shape, evalOpts),
    train: () => batchNormTrainOn(eng, x, shape, trainOpts),
    backward: () => batchNormBackwardOn(eng, dy, x, shape, bwdOpts),
    step: () => {
      const r = batchNormTrainOn(eng, x, shape, trainOpts);
      return batchNormBackwardOn(eng, dy, x, shape, { weight, mean: r.mean, invStd: r.invStd, layout, out: dx });
    },
    /** Outputs of one eval, one train step from the given running stats, one backward. */
    check(convention = "pytorch", mom = momentum) {
      const rm = put(data.runningMean), rv = put(data.runningVar);
      const out = {};
      out.evalY = arr(batchNormEvalOn(eng, x, shape, { ...evalOpts, runningMean: rm, runningVar: rv }));
      const r = batchNormTrainOn(eng, x, shape, { ...trainOpts, runningMean: rm, runningVar: rv, convention, momentum: mom });
      Object.assign(out, { trainY: arr(r.y), mean: r.mean, invStd: r.invStd, runningMean: arr(rm), runningVar: arr(rv) });
      const b = batchNormBackwardOn(eng, dy, x, shape, { weight, mean: r.mean, invStd: r.invStd, layout, out: dx });
      Object.assign(out, { dx: arr(b.dx), dWeight: b.dWeight, dBias: b.dBias });
      return out;
    },
    free() {
      for (const t of owned) t.free();
      owned.length = 0;
    },
  };
}
