/**
 * Folding an inference-mode batch norm into the Linear or convolution before it
 * (PyTorch's `fuse_linear_bn_eval` / `fuse_conv_bn_eval`): with
 * `s = gamma / sqrt(runningVar + eps)` per output channel,
 * `W' = W * s` and `b' = (b - runningMean) * s + beta`, so `layer'(x) = BN(layer(x))` and
 * the batch norm disappears from the inference graph. Only the running statistics are
 * used (no batch statistics, no momentum convention).
 *
 * Precision: `s` and `b'` are computed in f64 and rounded once; PyTorch rounds `rsqrt`,
 * `s`, `b - mean` and each product in f32, so results agree with it to a few f32 ulps
 * (test/fold.test.ts checks both against PyTorch's own output and an f64 reference).
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError, InvalidOptionError, StateError } from "../engine/errors.js";
import { checkEps } from "../engine/validate.js";
import { BatchNorm } from "./batchnorm.js";
import type { StateDict } from "./state.js";

/**
 * Where a weight's output-channel axis is. Out-first: `"OIHW"` (PyTorch's convolutions at
 * any rank, and Linear's `[out, in]`) and `"OHWI"` (channels-last convolutions). Out-last:
 * `"HWIO"` (TensorFlow / Keras convolution kernels, and Keras Dense's `[in, out]`).
 */
export type WeightLayout = "OIHW" | "OHWI" | "HWIO";

/** Options of {@link foldBatchNorm}: the layer's bias, its weight layout, and eps. */
export interface FoldOptions {
  /** The layer's bias, one per output channel (default: none, i.e. zeros). */
  bias?: Float32Array;
  /** Default `"OIHW"` (also right for a Linear weight `[out, in]`). */
  layout?: WeightLayout;
  /** The batch norm's eps when folding from a state dict (default 1e-5); a module has its own. */
  eps?: number;
}

/** What {@link foldBatchNorm} returns: the layer's weight and bias with the batch norm folded in. */
export interface Folded {
  /** The folded weight, same shape and layout as the input weight. */
  weight: Float32Array;
  /** The folded bias, one per output channel (always present, as in PyTorch). */
  bias: Float32Array;
}

/** The batch norm's numbers that folding needs. */
interface Stats {
  mean: Float32Array;
  variance: Float32Array;
  gamma?: Float32Array;
  beta?: Float32Array;
  eps: number;
}

/**
 * Folds a batch norm in eval mode into the weight (and bias) of the layer before it.
 * `bn` is a {@link BatchNorm} module (in eval mode, with running statistics) or its state
 * dict (PyTorch's keys; pass `eps` in the options if it is not 1e-5).
 *
 * @example
 * // conv (OIHW weight w, bias b) -> bn, for inference:
 * const { weight, bias } = foldBatchNorm(w, bn.eval(), { bias: b });
 * // from a state dict, channels-last convolution weights:
 * const f = foldBatchNorm(wOHWI, stateDict, { layout: "OHWI", eps: 1e-3 });
 */
export function foldBatchNorm(weight: Float32Array, bn: BatchNorm | StateDict, opts: FoldOptions = {}): Folded {
  const st = statsOf(bn, opts.eps);
  const C = st.mean.length;
  if (!(weight instanceof Float32Array)) throw new InvalidArgumentError("weight must be a Float32Array");
  if (weight.length === 0 || weight.length % C !== 0) {
    throw new ChannelMismatchError(`weight has ${weight.length} values, not a positive multiple of the batch norm's ${C} channels`);
  }
  if (opts.bias !== undefined) {
    if (!(opts.bias instanceof Float32Array)) throw new InvalidArgumentError("bias must be a Float32Array");
    if (opts.bias.length !== C) throw new ChannelMismatchError(`bias has ${opts.bias.length} values but the batch norm has ${C} channels`);
  }
  const layout = opts.layout ?? "OIHW";
  if (layout !== "OIHW" && layout !== "OHWI" && layout !== "HWIO") {
    throw new InvalidOptionError(`layout must be "OIHW", "OHWI" or "HWIO", got ${JSON.stringify(layout)}`);
  }

  const scale = new Float64Array(C);
  const bias = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (st.gamma ? st.gamma[c] : 1) / Math.sqrt(st.variance[c] + st.eps);
    bias[c] = ((opts.bias ? opts.bias[c] : 0) - st.mean[c]) * scale[c] + (st.beta ? st.beta[c] : 0);
  }
  const out = new Float32Array(weight.length);
  if (layout === "HWIO") {
    for (let i = 0; i < weight.length; i++) out[i] = weight[i] * scale[i % C];
  } else {
    const per = weight.length / C; // values per output channel, contiguous
    for (let c = 0, i = 0; c < C; c++) {
      for (const end = i + per; i < end; i++) out[i] = weight[i] * scale[c];
    }
  }
  return { weight: out, bias };
}

function statsOf(bn: BatchNorm | StateDict, eps: number | undefined): Stats {
  if (bn instanceof BatchNorm) {
    if (eps !== undefined) throw new InvalidOptionError("eps is taken from the module; give it only with a state dict");
    if (bn.training) throw new StateError("foldBatchNorm folds the running statistics: put the module in eval mode first (as PyTorch)");
    if (!bn.trackRunningStats) {
      throw new StateError("this BatchNorm has no running statistics (trackRunningStats: false): it normalises with batch statistics, which cannot be folded");
    }
    return {
      mean: bn.runningMean!.view.slice(), variance: bn.runningVar!.view.slice(),
      gamma: bn.weight?.view.slice(), beta: bn.bias?.view.slice(), eps: bn.eps,
    };
  }
  if (typeof bn !== "object" || bn === null) throw new InvalidArgumentError("bn must be a BatchNorm module or a state dict");
  const mean = bn.running_mean, variance = bn.running_var;
  if (!(mean instanceof Float32Array) || !(variance instanceof Float32Array)) {
    throw new InvalidArgumentError('the state dict needs Float32Array "running_mean" and "running_var"');
  }
  if (variance.length !== mean.length || mean.length === 0) {
    throw new ChannelMismatchError(`state dict "running_var" has ${variance.length} values, "running_mean" ${mean.length}`);
  }
  for (const k of ["weight", "bias"] as const) {
    const v = bn[k];
    if (v === undefined) continue;
    if (!(v instanceof Float32Array)) throw new InvalidArgumentError(`state dict "${k}" must be a Float32Array`);
    if (v.length !== mean.length) throw new ChannelMismatchError(`state dict "${k}" has ${v.length} values, "running_mean" ${mean.length}`);
  }
  return { mean, variance, gamma: bn.weight, beta: bn.bias, eps: checkEps(eps) };
}
