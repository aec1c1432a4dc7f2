/**
 * The functional API of the per-sample normalisation layers: LayerNorm, RMSNorm,
 * GroupNorm and InstanceNorm, forward and backward, PyTorch semantics.
 *
 * They run on batch norm's kernels (see `crates/batchnorm-core/src/passes/rows.rs` and `groups.rs`): LayerNorm and
 * RMSNorm on the row geometry (one statistic per row of `prod(normalizedShape)` values),
 * GroupNorm and InstanceNorm on the group geometry (one statistic per sample and group
 * of channels). As in the batch-norm functions, every argument is checked before
 * anything is written, and tensors may be `Float32Array`s or resident {@link WasmTensor}s.
 * @module
 */
import { getEngine, type Engine, type Glue } from "../engine/loader.js";
import { Staging } from "../engine/staging.js";
import { ChannelMismatchError, InvalidArgumentError, ShapeError, TooFewValuesError } from "../engine/errors.js";
import {
  checkData, checkEps, checkLayout, checkMomentum, checkNoAlias, checkOptionKeys, optionKeys, required,
  type Dims, type Layout, type TensorLike,
} from "../engine/validate.js";
import { WasmTensor } from "../engine/tensor.js";
import { batchNormBackwardOn, batchNormEvalOn, type Output } from "./functional.js";

/** The kernels' exports for these layers (see `crates/batchnorm-wasm/src/lib.rs`). */
interface NormGlue extends Glue {
  rows_forward(x: number, y: number, rows: number, len: number, weight: number, bias: number, eps: number, rms: boolean, mean: number, invStd: number): void;
  rows_backward(
    dy: number, x: number, dx: number, rows: number, len: number, weight: number, mean: number, invStd: number, rms: boolean,
    dWeight: number, dBias: number,
  ): void;
  groups_forward(
    x: number, y: number, n: number, channels: number, spatial: number, groups: number, channelsLast: boolean,
    weight: number, bias: number, eps: number, mean: number, invStd: number, runningMean: number, runningVar: number, momentum: number,
  ): void;
  groups_backward(
    dy: number, x: number, dx: number, n: number, channels: number, spatial: number, groups: number, channelsLast: boolean,
    weight: number, mean: number, invStd: number, dWeight: number, dBias: number,
  ): void;
}

const glue = (e: Engine) => e.glue as NormGlue;

/** PyTorch's `torch.finfo(torch.float32).eps`: RMSNorm's `eps` when it is `null`. */
export const F32_EPS = 2 ** -23;

// ---------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------

/** Checks a shape: a non-empty array of positive safe integers that fits wasm32. */
function checkShape(shape: readonly number[], minRank: number, what: string): number {
  if (!Array.isArray(shape)) throw new ShapeError(`shape must be an array of integers, got ${typeof shape}`);
  if (shape.length < minRank) {
    throw new ShapeError(`${what}: expected at least ${minRank} dimensions for input tensor, got shape [${shape.join(", ")}]`);
  }
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 1) throw new ShapeError(`dimension ${i} of shape [${shape.join(", ")}] must be a positive integer, got ${d}`);
  });
  const size = shape.reduce((a, b) => a * b, 1);
  if (size * 4 > 2 ** 32) throw new ShapeError(`shape [${shape.join(", ")}] has ${size} elements, more than a 32-bit wasm memory holds`);
  return size;
}

/** `normalizedShape` as PyTorch takes it: a number means `[n]`. */
export function normalizedShapeOf(normalizedShape: number | readonly number[]): number[] {
  const ns = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape;
  if (!Array.isArray(ns) || ns.length === 0 || ns.some((d) => !Number.isSafeInteger(d) || d < 1)) {
    throw new ShapeError(`normalizedShape must be a positive integer or a non-empty array of them, got ${JSON.stringify(normalizedShape)}`);
  }
  return [...ns];
}

/** Rows of the row geometry; PyTorch's error when the trailing dims do not match. */
function rowsOf(shape: readonly number[], normalizedShape: readonly number[]): { rows: number; len: number; size: number } {
  const size = checkShape(shape, 1, "layer norm");
  const k = normalizedShape.length;
  const tail = shape.slice(shape.length - k);
  if (shape.length < k || tail.some((d, i) => d !== normalizedShape[i])) {
    throw new ShapeError(
      `Given normalized_shape=[${normalizedShape.join(", ")}], expected input with shape [*, ${normalizedShape.join(", ")}], but got input of size [${shape.join(", ")}]`,
    );
  }
  const len = normalizedShape.reduce((a, b) => a * b, 1);
  return { rows: size / len, len, size };
}

/** `(N, C, S)` of the group geometry from `(N, C, *)` or channels-last `(N, *, C)`. */
export interface GroupDims {
  n: number;
  channels: number;
  spatial: number;
  size: number;
}

function groupDimsOf(shape: readonly number[], layout: Layout, groups: number, what: string): GroupDims {
  const size = checkShape(shape, 2, what);
  const channels = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  if (!Number.isSafeInteger(groups) || groups < 1) throw new InvalidArgumentError(`numGroups must be a positive integer, got ${String(groups)}`);
  if (channels % groups !== 0) {
    throw new ShapeError(`Expected number of channels in input to be divisible by num_groups, but got input of shape [${shape.join(", ")}] and num_groups=${groups}`);
  }
  return { n: shape[0], channels, spatial: size / (shape[0] * channels), size };
}

/** A per-feature vector (weight, bias) of exactly `len` values, when given. */
function checkVector(name: string, t: TensorLike | undefined, len: number, of: string): void {
  if (t === undefined) return;
  const n = t instanceof Float32Array ? t.length : t instanceof WasmTensor ? t.length : -1;
  if (n < 0) throw new InvalidArgumentError(`${name} must be a Float32Array or WasmTensor`);
  if (n !== len) throw new ChannelMismatchError(`${name} has ${n} elements but ${of} has ${len}`);
}

const dataDims = (size: number): Dims => ({ outer: 1, channels: 1, inner: size, size, perChannel: size });

// ---------------------------------------------------------------------------------------
// LayerNorm / RMSNorm
// ---------------------------------------------------------------------------------------

/** Options of {@link layerNorm}. */
export interface LayerNormOptions {
  /** gamma, `prod(normalizedShape)` values (default all 1). */
  weight?: TensorLike;
  /** beta, `prod(normalizedShape)` values (default all 0). */
  bias?: TensorLike;
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Where to write `y`. */
  out?: TensorLike;
  /** The build to run on (default: the one `init()` loaded). */
  engine?: Engine;
}

/** Result of {@link layerNorm} and {@link rmsNorm}. */
export interface RowNormResult {
  /** The normalised output. */
  y: Output;
  /** Per-row mean (all 0 for RMSNorm); keep it for backward. */
  mean: Float32Array;
  /** Per-row `1 / sqrt(var + eps)` (RMSNorm: `1 / sqrt(mean(x^2) + eps)`); keep it for backward. */
  invStd: Float32Array;
}

const LN_KEYS = optionKeys<LayerNormOptions>({ weight: true, bias: true, eps: true, out: true, engine: true });

/**
 * `torch.nn.functional.layer_norm`: normalises over the last `normalizedShape.length`
 * dims, then `* weight + bias` elementwise along them.
 *
 * @example
 * const { y, mean, invStd } = layerNorm(x, [4, 128, 768], 768, { weight, bias });
 */
export function layerNorm(x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[], opts: LayerNormOptions = {}): RowNormResult {
  checkOptionKeys("layerNorm", opts, LN_KEYS);
  return rowsForward("layerNorm", x, shape, normalizedShape, opts, false, checkEps(opts.eps));
}

/** Options of {@link rmsNorm}. */
export interface RmsNormOptions {
  /** gamma, `prod(normalizedShape)` values (default all 1). */
  weight?: TensorLike;
  /** Added to the mean square; `null` or absent: `torch.finfo(float32).eps`, as PyTorch. */
  eps?: number | null;
  /** Where to write `y`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

const RMS_KEYS = optionKeys<RmsNormOptions>({ weight: true, eps: true, out: true, engine: true });

/**
 * `torch.nn.functional.rms_norm`: `y = x / sqrt(mean(x^2) + eps) * weight` over the last
 * `normalizedShape.length` dims.
 *
 * @example
 * const { y, invStd } = rmsNorm(x, [8, 512], 512, { weight });
 */
export function rmsNorm(x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[], opts: RmsNormOptions = {}): RowNormResult {
  checkOptionKeys("rmsNorm", opts, RMS_KEYS);
  const eps = opts.eps === null || opts.eps === undefined ? F32_EPS : checkEps(opts.eps);
  return rowsForward("rmsNorm", x, shape, normalizedShape, opts, true, eps);
}

function rowsForward(
  what: string, x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[],
  opts: { weight?: TensorLike; bias?: TensorLike; out?: TensorLike; engine?: Engine }, rms: boolean, eps: number,
): RowNormResult {
  const ns = normalizedShapeOf(normalizedShape);
  const r = rowsOf(shape, ns);
  const d = dataDims(r.size);
  checkData("x", x, shape, d);
  if (opts.out !== undefined) checkData("out", opts.out, shape, d);
  checkVector("weight", opts.weight, r.len, `normalizedShape [${ns.join(", ")}]`);
  checkVector("bias", opts.bias, r.len, `normalizedShape [${ns.join(", ")}]`);
  checkNoAlias("out", opts.out, { x, weight: opts.weight, bias: opts.bias });
  void what;
  const s = new Staging(opts.engine ?? getEngine());
  try {
    const y = s.output(r.size, opts.out);
    const mean = s.output(r.rows);
    const invStd = s.output(r.rows);
    glue(s.engine).rows_forward(s.input(x), y.ptr, r.rows, r.len, s.input(opts.weight), s.input(opts.bias), eps, rms, mean.ptr, invStd.ptr);
    return { y: y.result(), mean: mean.result() as Float32Array, invStd: invStd.result() as Float32Array };
  } finally {
    s.release();
  }
}

/** Options of {@link layerNormBackward} and {@link rmsNormBackward}. */
export interface RowNormBackwardOptions {
  /** gamma (default all 1). */
  weight?: TensorLike;
  /** The forward's `mean` (required for LayerNorm; RMSNorm has none). */
  mean?: TensorLike;
  /** The forward's `invStd` (required). */
  invStd: TensorLike;
  /** Where to write `dx`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

/** Gradients of a normalisation layer. */
export interface NormGradients {
  /** Gradient of the input. */
  dx: Output;
  /** `sum(dy * xhat)` per feature (per element of `normalizedShape`, or per channel). */
  dWeight: Float32Array;
  /** `sum(dy)` per feature (absent for RMSNorm, which has no bias). */
  dBias?: Float32Array;
}

const ROW_BACKWARD_KEYS = optionKeys<RowNormBackwardOptions>({ weight: true, mean: true, invStd: true, out: true, engine: true });

/**
 * Backward of {@link layerNorm}: `dx` (through the row statistics), `dWeight`, `dBias`,
 * in one read of `dy` and `x`.
 *
 * @example
 * const f = layerNorm(x, shape, 768, { weight, bias });
 * const { dx, dWeight, dBias } = layerNormBackward(dy, x, shape, 768, { weight, mean: f.mean, invStd: f.invStd });
 */
export function layerNormBackward(
  dy: TensorLike, x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[], opts: RowNormBackwardOptions,
): NormGradients {
  if (opts === undefined) throw new InvalidArgumentError("layerNormBackward needs options with mean and invStd");
  checkOptionKeys("layerNormBackward", opts, ROW_BACKWARD_KEYS);
  return rowsBackward(dy, x, shape, normalizedShape, opts, false);
}

/** Backward of {@link rmsNorm}: `dx` and `dWeight`. */
export function rmsNormBackward(
  dy: TensorLike, x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[], opts: RowNormBackwardOptions,
): NormGradients {
  if (opts === undefined) throw new InvalidArgumentError("rmsNormBackward needs options with invStd");
  checkOptionKeys("rmsNormBackward", opts, ROW_BACKWARD_KEYS);
  return rowsBackward(dy, x, shape, normalizedShape, opts, true);
}

function rowsBackward(
  dy: TensorLike, x: TensorLike, shape: readonly number[], normalizedShape: number | readonly number[], opts: RowNormBackwardOptions, rms: boolean,
): NormGradients {
  const ns = normalizedShapeOf(normalizedShape);
  const r = rowsOf(shape, ns);
  const d = dataDims(r.size);
  checkData("dy", dy, shape, d);
  checkData("x", x, shape, d);
  if (opts.out !== undefined) checkData("out", opts.out, shape, d);
  checkVector("weight", opts.weight, r.len, `normalizedShape [${ns.join(", ")}]`);
  if (!rms) checkVector("mean", required("mean", opts.mean), r.rows, "the input's row count");
  else checkVector("mean", opts.mean, r.rows, "the input's row count");
  checkVector("invStd", required("invStd", opts.invStd), r.rows, "the input's row count");
  checkNoAlias("out", opts.out, { dy, x, weight: opts.weight, mean: opts.mean, invStd: opts.invStd });
  const s = new Staging(opts.engine ?? getEngine());
  try {
    const dx = s.output(r.size, opts.out);
    const dW = s.output(r.len);
    const dB = rms ? undefined : s.output(r.len);
    let mean = s.input(opts.mean);
    if (mean === 0) {
      mean = s.scratch(r.rows); // RMSNorm: the statistic has no mean
      s.heap(mean, r.rows).fill(0);
    }
    glue(s.engine).rows_backward(
      s.input(dy), s.input(x), dx.ptr, r.rows, r.len, s.input(opts.weight), mean, s.input(opts.invStd), rms, dW.ptr, dB?.ptr ?? 0,
    );
    const out: NormGradients = { dx: dx.result(), dWeight: dW.result() as Float32Array };
    if (dB) out.dBias = dB.result() as Float32Array;
    return out;
  } finally {
    s.release();
  }
}

// ---------------------------------------------------------------------------------------
// GroupNorm / InstanceNorm
// ---------------------------------------------------------------------------------------

/** Options of {@link groupNorm}. */
export interface GroupNormOptions {
  /** gamma, one per channel (default all 1). */
  weight?: TensorLike;
  /** beta, one per channel (default all 0). */
  bias?: TensorLike;
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** `"NCHW"` (default): `(N, C, *)`; `"NHWC"`: channels-last `(N, *, C)`. */
  layout?: Layout;
  /** Where to write `y`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

/** Result of {@link groupNorm}. */
export interface GroupNormResult {
  /** The normalised output. */
  y: Output;
  /** Per-(sample, group) mean, `N * numGroups` values; keep it for backward. */
  mean: Float32Array;
  /** Per-(sample, group) `1 / sqrt(var + eps)`; keep it for backward. */
  invStd: Float32Array;
}

const GN_KEYS = optionKeys<GroupNormOptions>({ weight: true, bias: true, eps: true, layout: true, out: true, engine: true });

/**
 * `torch.nn.functional.group_norm`: statistics per sample over each group of
 * `C / numGroups` consecutive channels (and all spatial positions), affine per channel.
 *
 * @example
 * const { y, mean, invStd } = groupNorm(x, [16, 256, 28, 28], 32, { weight, bias });
 */
export function groupNorm(x: TensorLike, shape: readonly number[], numGroups: number, opts: GroupNormOptions = {}): GroupNormResult {
  checkOptionKeys("groupNorm", opts, GN_KEYS);
  const layout = checkLayout(opts.layout);
  const g = groupDimsOf(shape, layout, numGroups, "group norm");
  return groupsForward(x, shape, g, numGroups, layout, opts, checkEps(opts.eps));
}

/** The group-geometry forward (GroupNorm, InstanceNorm with batch statistics). */
function groupsForward(
  x: TensorLike, shape: readonly number[], g: GroupDims, groups: number, layout: Layout,
  opts: { weight?: TensorLike; bias?: TensorLike; out?: TensorLike; engine?: Engine; runningMean?: TensorLike; runningVar?: TensorLike },
  eps: number, momentum = 0,
): GroupNormResult {
  const d = dataDims(g.size);
  checkData("x", x, shape, d);
  if (opts.out !== undefined) checkData("out", opts.out, shape, d);
  checkVector("weight", opts.weight, g.channels, "the input's channel count");
  checkVector("bias", opts.bias, g.channels, "the input's channel count");
  checkVector("runningMean", opts.runningMean, g.channels, "the input's channel count");
  checkVector("runningVar", opts.runningVar, g.channels, "the input's channel count");
  const inputs = { x, weight: opts.weight, bias: opts.bias };
  checkNoAlias("out", opts.out, { ...inputs, runningMean: opts.runningMean, runningVar: opts.runningVar });
  checkNoAlias("runningMean", opts.runningMean, { ...inputs, runningVar: opts.runningVar });
  checkNoAlias("runningVar", opts.runningVar, inputs);
  const s = new Staging(opts.engine ?? getEngine());
  try {
    const y = s.output(g.size, opts.out);
    const mean = s.output(g.n * groups);
    const invStd = s.output(g.n * groups);
    glue(s.engine).groups_forward(
      s.input(x), y.ptr, g.n, g.channels, g.spatial, groups, layout === "NHWC", s.input(opts.weight), s.input(opts.bias), eps,
      mean.ptr, invStd.ptr, s.inout(opts.runningMean), s.inout(opts.runningVar), momentum,
    );
    s.commit();
    return { y: y.result(), mean: mean.result() as Float32Array, invStd: invStd.result() as Float32Array };
  } finally {
    s.release();
  }
}

/** Options of {@link groupNormBackward}. */
export interface GroupNormBackwardOptions {
  /** gamma (default all 1). */
  weight?: TensorLike;
  /** The forward's per-(sample, group) `mean` (required). */
  mean: TensorLike;
  /** The forward's per-(sample, group) `invStd` (required). */
  invStd: TensorLike;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Where to write `dx`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

const GN_BACKWARD_KEYS = optionKeys<GroupNormBackwardOptions>({ weight: true, mean: true, invStd: true, layout: true, out: true, engine: true });

/**
 * Backward of {@link groupNorm}: `dx`, `dWeight`, `dBias` (one reduction pass over `dy`
 * and `x`, one elementwise pass).
 *
 * @example
 * const f = groupNorm(x, shape, 32, { weight, bias });
 * const { dx, dWeight, dBias } = groupNormBackward(dy, x, shape, 32, { weight, mean: f.mean, invStd: f.invStd });
 */
export function groupNormBackward(dy: TensorLike, x: TensorLike, shape: readonly number[], numGroups: number, opts: GroupNormBackwardOptions): NormGradients {
  if (opts === undefined) throw new InvalidArgumentError("groupNormBackward needs options with mean and invStd");
  checkOptionKeys("groupNormBackward", opts, GN_BACKWARD_KEYS);
  const layout = checkLayout(opts.layout);
  const g = groupDimsOf(shape, layout, numGroups, "group norm");
  return groupsBackward(dy, x, shape, g, numGroups, layout, opts);
}

function groupsBackward(
  dy: TensorLike, x: TensorLike, shape: readonly number[], g: GroupDims, groups: number, layout: Layout, opts: GroupNormBackwardOptions,
): NormGradients {
  const d = dataDims(g.size);
  checkData("dy", dy, shape, d);
  checkData("x", x, shape, d);
  if (opts.out !== undefined) checkData("out", opts.out, shape, d);
  checkVector("weight", opts.weight, g.channels, "the input's channel count");
  checkVector("mean", required("mean", opts.mean), g.n * groups, "N * numGroups");
  checkVector("invStd", required("invStd", opts.invStd), g.n * groups, "N * numGroups");
  checkNoAlias("out", opts.out, { dy, x, weight: opts.weight, mean: opts.mean, invStd: opts.invStd });
  const s = new Staging(opts.engine ?? getEngine());
  try {
    const dx = s.output(g.size, opts.out);
    const dW = s.output(g.channels);
    const dB = s.output(g.channels);
    glue(s.engine).groups_backward(
      s.input(dy), s.input(x), dx.ptr, g.n, g.channels, g.spatial, groups, layout === "NHWC",
      s.input(opts.weight), s.input(opts.mean), s.input(opts.invStd), dW.ptr, dB.ptr,
    );
    return { dx: dx.result(), dWeight: dW.result() as Float32Array, dBias: dB.result() as Float32Array };
  } finally {
    s.release();
  }
}

/** Options of {@link instanceNorm}. */
export interface InstanceNormOptions {
  /** gamma, one per channel. */
  weight?: TensorLike;
  /** beta, one per channel. */
  bias?: TensorLike;
  /** Running mean (per channel), updated in place when `useInputStats`; used otherwise. */
  runningMean?: TensorLike;
  /** Running variance (per channel). */
  runningVar?: TensorLike;
  /** `true` (default): normalise with each instance's statistics (and update the running
   * ones if given); `false`: with the running statistics (eval of a tracking layer). */
  useInputStats?: boolean;
  /** Momentum of the running statistics (PyTorch's convention), default 0.1. */
  momentum?: number;
  /** Default 1e-5. */
  eps?: number;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Where to write `y`. */
  out?: TensorLike;
  /** The build to run on. */
  engine?: Engine;
}

const IN_KEYS = optionKeys<InstanceNormOptions>({
  weight: true, bias: true, runningMean: true, runningVar: true, useInputStats: true, momentum: true, eps: true, layout: true, out: true, engine: true,
});

/** Result of {@link instanceNorm}: `mean` / `invStd` are per (sample, channel), `N * C` values. */
export type InstanceNormResult = GroupNormResult;

/**
 * `torch.nn.functional.instance_norm`: statistics per sample and channel. With
 * `useInputStats` and running statistics given, these are updated with the average over
 * the batch of each instance's mean and unbiased variance, as PyTorch.
 *
 * @example
 * const { y } = instanceNorm(x, [8, 3, 64, 64], { weight, bias });
 */
export function instanceNorm(x: TensorLike, shape: readonly number[], opts: InstanceNormOptions = {}): InstanceNormResult {
  checkOptionKeys("instanceNorm", opts, IN_KEYS);
  const layout = checkLayout(opts.layout);
  const useInputStats = opts.useInputStats ?? true;
  if (typeof useInputStats !== "boolean") throw new InvalidArgumentError(`useInputStats must be a boolean, got ${String(useInputStats)}`);
  if ((opts.runningMean === undefined) !== (opts.runningVar === undefined)) {
    throw new InvalidArgumentError("runningMean and runningVar must be given together");
  }
  checkShape(shape, 2, "instance norm");
  const channels = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const g = groupDimsOf(shape, layout, channels, "instance norm");
  const eps = checkEps(opts.eps, useInputStats);
  const momentum = checkMomentum(opts.momentum, "pytorch");
  if (useInputStats && g.spatial < 2) {
    throw new TooFewValuesError(`Expected more than 1 spatial element when training, got input size [${shape.join(", ")}]`);
  }
  if (useInputStats) return groupsForward(x, shape, g, channels, layout, opts, eps, momentum);
  const rm = required("runningMean (useInputStats: false normalises with the running statistics)", opts.runningMean);
  const rv = required("runningVar", opts.runningVar);
  // Constant per-channel statistics: exactly batch norm's eval forward.
  const y = batchNormEvalOn(opts.engine ?? getEngine(), x, shape, {
    weight: opts.weight, bias: opts.bias, runningMean: rm, runningVar: rv, eps, layout, out: opts.out,
  });
  const rmv = rm instanceof WasmTensor ? rm.view : rm;
  const rvv = rv instanceof WasmTensor ? rv.view : rv;
  const mean = new Float32Array(g.n * channels).map((_, i) => rmv[i % channels]);
  const invStd = new Float32Array(g.n * channels).map((_, i) => 1 / Math.sqrt(rvv[i % channels] + eps));
  return { y, mean, invStd };
}

/** Options of {@link instanceNormBackward}. */
export interface InstanceNormBackwardOptions extends GroupNormBackwardOptions {
  /** `true` (default): the forward used instance statistics (gradients flow through
   * them); `false`: running statistics (constants). */
  useInputStats?: boolean;
}

const IN_BACKWARD_KEYS = optionKeys<InstanceNormBackwardOptions>({
  weight: true, mean: true, invStd: true, layout: true, out: true, engine: true, useInputStats: true,
});

/**
 * Backward of {@link instanceNorm} (pass the forward's `mean` / `invStd`).
 *
 * @example
 * const f = instanceNorm(x, shape, { weight, bias });
 * const { dx, dWeight, dBias } = instanceNormBackward(dy, x, shape, { weight, mean: f.mean, invStd: f.invStd });
 */
export function instanceNormBackward(dy: TensorLike, x: TensorLike, shape: readonly number[], opts: InstanceNormBackwardOptions): NormGradients {
  if (opts === undefined) throw new InvalidArgumentError("instanceNormBackward needs options with mean and invStd");
  checkOptionKeys("instanceNormBackward", opts, IN_BACKWARD_KEYS);
  const layout = checkLayout(opts.layout);
  checkShape(shape, 2, "instance norm");
  const channels = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const g = groupDimsOf(shape, layout, channels, "instance norm");
  const useInputStats = opts.useInputStats ?? true;
  if (useInputStats) return groupsBackward(dy, x, shape, g, channels, layout, opts);
  // Constant statistics: batch norm's eval-mode backward with the per-channel ones.
  checkVector("mean", required("mean", opts.mean), g.n * channels, "N * C");
  checkVector("invStd", required("invStd", opts.invStd), g.n * channels, "N * C");
  const head = (t: TensorLike) => (t instanceof WasmTensor ? t.view : t).slice(0, channels);
  const r = batchNormBackwardOn(opts.engine ?? getEngine(), dy, x, shape, {
    weight: opts.weight, mean: head(opts.mean), invStd: head(opts.invStd), layout, training: false, out: opts.out,
  });
  return { dx: r.dx, dWeight: r.dWeight, dBias: r.dBias };
}
