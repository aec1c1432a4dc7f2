// Numerical agreement of every contender with the float64-accumulating plain JS
// reference, so that the benchmark measures the same computation everywhere.
import * as plain from "./plainjs.mjs";

/** Reference outputs: eval, one train step from the given running stats, backward. */
export function reference(spec, data, convention = "pytorch", momentum = spec.momentum) {
  const d = plain.dimsOf(spec.shape, spec.layout);
  const out = { evalY: new Float32Array(d.size), trainY: new Float32Array(d.size), dx: new Float32Array(d.size) };
  plain.evalForward(data.x, out.evalY, d, data.weight, data.bias, data.runningMean, data.runningVar, spec.eps);
  out.runningMean = data.runningMean.slice();
  out.runningVar = data.runningVar.slice();
  const s = plain.trainForward(data.x, out.trainY, d, data.weight, data.bias, out.runningMean, out.runningVar, momentum, spec.eps, convention);
  out.mean = s.mean;
  out.invStd = s.invStd;
  const g = plain.backward(data.dy, data.x, out.dx, d, data.weight, s.mean, s.invStd);
  out.dWeight = g.dW;
  out.dBias = g.dB;
  out.perChannel = d.perChannel;
  return out;
}

/**
 * Max error of each output present in `got`, scaled: elementwise outputs by
 * max(1, max|ref|); per-channel sums (dWeight, dBias) by max(max|ref|, sqrt(M)),
 * the size of a sum of M unit-scale terms of random sign.
 */
export function compare(got, ref, tol = 2e-3) {
  const errs = {};
  let ok = true;
  for (const k of ["evalY", "trainY", "mean", "invStd", "runningMean", "runningVar", "dx", "dWeight", "dBias"]) {
    const a = got[k];
    if (a === undefined) continue;
    const r = ref[k];
    if (a.length !== r.length) { errs[k] = `length ${a.length} != ${r.length}`; ok = false; continue; }
    let maxRef = 0, maxErr = 0;
    for (let i = 0; i < r.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(r[i]));
      const e = Math.abs(a[i] - r[i]);
      maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e);
    }
    const scale = k === "dWeight" || k === "dBias" ? Math.max(maxRef, Math.sqrt(ref.perChannel)) : Math.max(1, maxRef);
    const e = maxErr / scale;
    errs[k] = Number(e.toPrecision(3));
    if (!(e <= tol)) ok = false;
  }
  return { ok, errs };
}
