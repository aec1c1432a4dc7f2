/**
 * Batch Renormalization (Ioffe 2017, Algorithm 1): batch norm whose training output is
 * corrected towards the moving statistics, so that training and inference normalise the
 * same way even with small or non-i.i.d. mini-batches.
 *
 * With the batch statistics `muB`, `sigmaB = sqrt(varB + eps)` and the moving ones `mu`,
 * `sigma = sqrt(runningVar + eps)`:
 *   r = clip(sigmaB / sigma, 1/rMax, rMax),  d = clip((muB - mu) / sigma, -dMax, dMax),
 *   y = gamma * (xhat * r + d) + beta,       xhat = (x - muB) / sigmaB,
 * with `r` and `d` constants in backward (the paper's stop_gradient). That is batch norm
 * with the affine `gamma * r`, `beta + gamma * d`, so it runs on batch norm's own kernels:
 * the statistics pass, then the normalise pass with the corrected affine, then the
 * moving averages; backward is batch norm's backward with `gamma * r`, and
 * `dgamma = r * sum(dy * xhat) + d * sum(dy)`. With `rMax = 1, dMax = 0` it is plain
 * batch norm, bit for bit.
 *
 * Moving statistics: this uses the layer's own running mean and variance (PyTorch's
 * convention: unbiased variance, `momentum` weighing the new batch), so `sigma` is
 * `sqrt(runningVar + eps)` and inference is unchanged. Keras's
 * `BatchNormalization(renorm=True)` keeps separate renorm moving averages of the mean and
 * the standard deviation (`renorm_momentum`) for r and d, next to the moving mean and
 * variance used at inference; the paper's Algorithm 1 has one set (mean and sigma). Both
 * converge to the same statistics; they differ in how fast r and d follow the batch.
 * @module
 */
import { getEngine, type Engine } from "../engine/loader.js";
import { Staging } from "../engine/staging.js";
import { InvalidArgumentError, InvalidOptionError } from "../engine/errors.js";
import {
  checkData, checkEps, checkLayout, checkMomentum, checkNoAlias, checkOptionKeys, checkPerChannel, checkTrainable, dimsOf, optionKeys, required,
  type Layout, type TensorLike,
} from "../engine/validate.js";
import { WasmTensor } from "../engine/tensor.js";
import { batchNormBackwardOn, type Output } from "./functional.js";

/** The clipping bounds of Batch Renormalization. */
export interface RenormBounds {
  /** r is clipped to [1/rMax, rMax]; >= 1 (1 = no correction of the scale). */
  rMax: number;
  /** d is clipped to [-dMax, dMax]; >= 0 (0 = no correction of the shift). */
  dMax: number;
}

/** Checks `{ rMax, dMax }`. */
export function checkRenorm(b: unknown): RenormBounds {
  if (b === null || typeof b !== "object") throw new InvalidOptionError(`renorm must be an object { rMax, dMax }, got ${String(b)}`);
  checkOptionKeys("renorm", b, ["rMax", "dMax"]);
  const { rMax, dMax } = b as RenormBounds;
  if (typeof rMax !== "number" || !(rMax >= 1) || !Number.isFinite(rMax)) throw new InvalidOptionError(`renorm.rMax must be a finite number >= 1, got ${String(rMax)}`);
  if (typeof dMax !== "number" || !(dMax >= 0) || !Number.isFinite(dMax)) throw new InvalidOptionError(`renorm.dMax must be a finite number >= 0, got ${String(dMax)}`);
  return { rMax, dMax };
}

/** Options of {@link renormSchedule}; the defaults are the paper's (Ioffe 2017, section 4). */
export interface RenormScheduleOptions {
  /** Final rMax (default 3). */
  rMax?: number;
  /** Final dMax (default 5). */
  dMax?: number;
  /** Steps of plain batch norm first (rMax = 1, dMax = 0); default 5000. */
  warmupSteps?: number;
  /** Step at which rMax reaches its final value (linear from the warm-up); default 40000. */
  rMaxSteps?: number;
  /** Step at which dMax reaches its final value; default 25000. */
  dMaxSteps?: number;
}

/**
 * The paper's warm-up: plain batch norm for `warmupSteps`, then rMax and dMax relaxed
 * linearly to their final values. Returns the bounds for a training step.
 *
 * @example
 * const bounds = renormSchedule();
 * bn.renorm = bounds(step); // { rMax: 1, dMax: 0 } at first, { rMax: 3, dMax: 5 } from step 40000
 */
export function renormSchedule(opts: RenormScheduleOptions = {}): (step: number) => RenormBounds {
  checkOptionKeys("renormSchedule", opts, optionKeys<RenormScheduleOptions>({ rMax: true, dMax: true, warmupSteps: true, rMaxSteps: true, dMaxSteps: true }));
  const { rMax = 3, dMax = 5, warmupSteps = 5000, rMaxSteps = 40000, dMaxSteps = 25000 } = opts;
  checkRenorm({ rMax, dMax });
  for (const [k, v] of [["warmupSteps", warmupSteps], ["rMaxSteps", rMaxSteps], ["dMaxSteps", dMaxSteps]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidOptionError(`${k} must be a non-negative integer, got ${String(v)}`);
  }
  if (rMaxSteps < warmupSteps || dMaxSteps < warmupSteps) throw new InvalidOptionError("rMaxSteps and dMaxSteps must be >= warmupSteps");
  const ramp = (step: number, end: number, from: number, to: number) =>
    step <= warmupSteps ? from : step >= end ? to : from + ((to - from) * (step - warmupSteps)) / (end - warmupSteps);
  return (step) => ({ rMax: ramp(step, rMaxSteps, 1, rMax), dMax: ramp(step, dMaxSteps, 0, dMax) });
}

/** Options of {@link batchRenormTrain}. */
export interface BatchRenormOptions extends RenormBounds {
  /** gamma, one per channel (default all 1). */
  weight?: TensorLike;
  /** beta, one per channel (default all 0). */
  bias?: TensorLike;
  /** Moving mean (required: r and d are relative to it); updated in place. */
  runningMean: TensorLike;
  /** Moving variance (required); updated in place. */
  runningVar: TensorLike;
  /** Default 0.1 (PyTorch's convention). */
  momentum?: number;
  /** Default 1e-5. */
  eps?: number;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Where to write `y`. */
  out?: TensorLike;
  /** The build to run on (default: the one `init()` loaded). */
  engine?: Engine;
}

/** Result of {@link batchRenormTrain}: what backward needs. */
export interface BatchRenormResult {
  /** The normalised output. */
  y: Output;
  /** Per-channel batch mean. */
  mean: Float32Array;
  /** Per-channel `1 / sigmaB`. */
  invStd: Float32Array;
  /** The clipped `r` per channel. */
  r: Float32Array;
  /** The clipped `d` per channel. */
  d: Float32Array;
}

const TRAIN_KEYS = optionKeys<BatchRenormOptions>({
  rMax: true, dMax: true, weight: true, bias: true, runningMean: true, runningVar: true, momentum: true, eps: true, layout: true, out: true, engine: true,
});

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/**
 * Training forward of Batch Renormalization (Algorithm 1 of Ioffe 2017); the moving
 * statistics are updated in place after r and d are taken from them.
 *
 * @example
 * const f = batchRenormTrain(x, [32, 64, 8, 8], { weight, bias, runningMean, runningVar, rMax: 3, dMax: 5 });
 * const g = batchRenormBackward(dy, x, [32, 64, 8, 8], { weight, ...f });
 */
export function batchRenormTrain(x: TensorLike, shape: readonly number[], opts: BatchRenormOptions): BatchRenormResult {
  if (opts === undefined) throw new InvalidArgumentError("batchRenormTrain needs options with runningMean, runningVar, rMax and dMax");
  checkOptionKeys("batchRenormTrain", opts, TRAIN_KEYS);
  const { rMax, dMax } = checkRenorm({ rMax: opts.rMax, dMax: opts.dMax });
  const layout = checkLayout(opts.layout);
  const dims = dimsOf(shape, layout);
  checkData("x", x, shape, dims);
  if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
  checkPerChannel("weight", opts.weight, dims);
  checkPerChannel("bias", opts.bias, dims);
  checkPerChannel("runningMean", required("runningMean", opts.runningMean), dims);
  checkPerChannel("runningVar", required("runningVar", opts.runningVar), dims);
  const eps = checkEps(opts.eps, true);
  const momentum = checkMomentum(opts.momentum, "pytorch");
  checkTrainable(shape, dims);
  const inputs = { x, weight: opts.weight, bias: opts.bias };
  checkNoAlias("out", opts.out, { ...inputs, runningMean: opts.runningMean, runningVar: opts.runningVar });
  checkNoAlias("runningMean", opts.runningMean, { ...inputs, runningVar: opts.runningVar });
  checkNoAlias("runningVar", opts.runningVar, inputs);

  const C = dims.channels;
  const view = (t: TensorLike | undefined) => (t === undefined ? undefined : t instanceof WasmTensor ? t.view : t);
  const s = new Staging(opts.engine ?? getEngine());
  try {
    const xp = s.input(x);
    const stats = s.outputF64(2 * C);
    s.engine.glue.moments(xp, dims.outer, C, dims.inner, stats.ptr);
    const st = stats.result();
    const rm = view(opts.runningMean)!;
    const rv = view(opts.runningVar)!;
    const g = view(opts.weight);
    const b = view(opts.bias);
    // The kernels take eps as f32: the same sigmaB as batch norm's own training forward.
    const epsF = Math.fround(eps);
    const mean = new Float32Array(C);
    const invStd = new Float32Array(C);
    const r = new Float32Array(C);
    const d = new Float32Array(C);
    const w2 = new Float32Array(C);
    const b2 = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const muB = st[c];
      const sigmaB = Math.sqrt(st[C + c] / dims.perChannel + epsF);
      const sigma = Math.sqrt(rv[c] + epsF);
      r[c] = clip(sigmaB / sigma, 1 / rMax, rMax);
      d[c] = clip((muB - rm[c]) / sigma, -dMax, dMax);
      mean[c] = muB;
      invStd[c] = 1 / sigmaB;
      const gc = g ? g[c] : 1;
      w2[c] = gc * r[c];
      b2[c] = (b ? b[c] : 0) + gc * d[c];
    }
    const y = s.output(dims.size, opts.out);
    s.engine.glue.normalize_f64_mean(
      xp, y.ptr, dims.outer, C, dims.inner, s.input(w2), s.input(b2), s.inputF64(st.subarray(0, C)), s.input(invStd), false, 0,
    );
    const rmp = s.inout(opts.runningMean);
    const rvp = s.inout(opts.runningVar);
    s.engine.glue.update_running(rmp, rvp, C, s.inputF64(st), dims.perChannel, momentum, 0);
    s.commit();
    return { y: y.result(), mean, invStd, r, d };
  } finally {
    s.release();
  }
}

/** Options of {@link batchRenormBackward}: the forward's saved values. */
export interface BatchRenormBackwardOptions {
  /** gamma (default all 1). */
  weight?: TensorLike;
  /** The forward's batch mean. */
  mean: Float32Array;
  /** The forward's `1 / sigmaB`. */
  invStd: Float32Array;
  /** The forward's r. */
  r: Float32Array;
  /** The forward's d. */
  d: Float32Array;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Where to write `dx`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

const BACKWARD_KEYS = optionKeys<BatchRenormBackwardOptions>({ weight: true, mean: true, invStd: true, r: true, d: true, layout: true, out: true, engine: true });

/** Gradients of Batch Renormalization. */
export interface BatchRenormGradients {
  /** Gradient of the input. */
  dx: Output;
  /** `r * sum(dy * xhat) + d * sum(dy)` per channel. */
  dWeight: Float32Array;
  /** `sum(dy)` per channel. */
  dBias: Float32Array;
}

/**
 * Backward of {@link batchRenormTrain}: r and d are constants, so this is batch norm's
 * backward with the scale `weight * r` (pass the forward's `mean`, `invStd`, `r`, `d`).
 *
 * @example
 * const g = batchRenormBackward(dy, x, shape, { weight, mean: f.mean, invStd: f.invStd, r: f.r, d: f.d });
 */
export function batchRenormBackward(dy: TensorLike, x: TensorLike, shape: readonly number[], opts: BatchRenormBackwardOptions): BatchRenormGradients {
  if (opts === undefined) throw new InvalidArgumentError("batchRenormBackward needs options with mean, invStd, r and d");
  checkOptionKeys("batchRenormBackward", opts, BACKWARD_KEYS);
  const layout = checkLayout(opts.layout);
  const dims = dimsOf(shape, layout);
  for (const k of ["mean", "invStd", "r", "d"] as const) checkPerChannel(k, required(k, opts[k]), dims);
  checkPerChannel("weight", opts.weight, dims);
  const C = dims.channels;
  const g = opts.weight === undefined ? undefined : opts.weight instanceof WasmTensor ? opts.weight.view : opts.weight;
  const w2 = Float32Array.from({ length: C }, (_, c) => (g ? g[c] : 1) * opts.r[c]);
  const res = batchNormBackwardOn(opts.engine ?? getEngine(), dy, x, shape, { weight: w2, mean: opts.mean, invStd: opts.invStd, layout, out: opts.out });
  // The kernel's dWeight is sum(dy * xhat); y depends on gamma through xhat * r + d.
  const dWeight = res.dWeight.map((v, c) => opts.r[c] * v + opts.d[c] * res.dBias[c]);
  return { dx: res.dx, dWeight, dBias: res.dBias };
}
