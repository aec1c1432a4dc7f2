/**
 * Options shared by the `BatchNorm` modules and `SyncBatchNorm`, resolved and checked in
 * one place, and the momentum rule of a training step.
 * @module
 */
import { InvalidArgumentError, InvalidOptionError } from "../engine/errors.js";
import { checkConvention, checkEps, checkLayout, type Convention, type Layout } from "../engine/validate.js";
import { checkFitsWasm32 } from "../engine/memory.js";

export interface LayerOptions {
  /** Default 1e-5. */
  eps?: number;
  /**
   * Running-statistics momentum in [0, 1] (default 0.1 for `"pytorch"`, 0.9 for `"onnx"`),
   * or `null` for a cumulative moving average (`1 / numBatchesTracked`), as in PyTorch.
   */
  momentum?: number | null;
  /** Learnable `weight` and `bias` (default true). */
  affine?: boolean;
  /** Keep running statistics (default true). When false, eval mode uses batch statistics too. */
  trackRunningStats?: boolean;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Default `"pytorch"`. */
  convention?: Convention;
}

export interface LayerConfig {
  numFeatures: number;
  eps: number;
  momentum: number | null;
  affine: boolean;
  trackRunningStats: boolean;
  layout: Layout;
  convention: Convention;
}

export function resolveLayerOptions(numFeatures: number, opts: LayerOptions): LayerConfig {
  if (!Number.isSafeInteger(numFeatures) || numFeatures < 1) {
    throw new InvalidArgumentError(`numFeatures must be a positive integer, got ${String(numFeatures)}`);
  }
  // Each per-channel buffer holds numFeatures f32s: past 32-bit memory is a shape mistake.
  checkFitsWasm32("numFeatures", numFeatures);
  const convention = checkConvention(opts.convention);
  const momentum = opts.momentum === undefined ? (convention === "onnx" ? 0.9 : 0.1) : opts.momentum;
  if (momentum !== null && !(typeof momentum === "number" && momentum >= 0 && momentum <= 1)) {
    throw new InvalidOptionError(`momentum must be a number in [0, 1] or null, got ${String(momentum)}`);
  }
  return {
    numFeatures,
    eps: checkEps(opts.eps),
    momentum,
    affine: opts.affine ?? true,
    trackRunningStats: opts.trackRunningStats ?? true,
    layout: checkLayout(opts.layout),
    convention,
  };
}

/**
 * The momentum to pass to the kernels for a training step taken after `batchesSoFar`
 * batches. `null` is a cumulative average, as PyTorch: the new batch weighs 1 / count
 * (ONNX's momentum weighs the old value, so there it is 1 - 1 / count).
 */
export function stepMomentum(cfg: LayerConfig, batchesSoFar: number): number {
  if (cfg.momentum !== null) return cfg.momentum;
  const weightOfBatch = 1 / (batchesSoFar + 1);
  return cfg.convention === "onnx" ? 1 - weightOfBatch : weightOfBatch;
}
