/**
 * The functional API: one call per operation, PyTorch semantics by default.
 *
 * Every function validates all arguments first and throws a {@link BatchNormError}
 * subclass on bad input before anything is written. Tensors may be `Float32Array`s
 * (copied into wasm memory and back) or {@link WasmTensor}s (used in place: the fast path).
 * @module
 */
import { getEngine, type Engine } from "../engine/loader.js";
import { atChannel, engineForPlain, portable, Staging, STREAM_WINDOW, streamElementwise } from "../engine/staging.js";
import { backwardStreamed, trainStreamed } from "./streamed.js";
import { WasmTensor } from "../engine/tensor.js";
import {
  checkConvention, checkData, checkEps, checkLayout, checkMomentum, checkNoAlias,
  checkOptionKeys, checkPerChannel, checkTrainable, dimsOf, optionKeys, required,
  type Convention, type Dims, type Layout, type TensorLike,
} from "../engine/validate.js";
import { InvalidArgumentError, InvalidOptionError } from "../engine/errors.js";
import { checkMask, maskLengthOf } from "./relu-mask.js";

/** Output type: a `Float32Array`, unless the caller passed a {@link WasmTensor} as `out`. */
export type Output = Float32Array | WasmTensor;

/**
 * An activation fused into the normalisation pass (oneDNN's `fuse_norm_relu`):
 * `"relu"` gives `y = max(BN(x) + z, 0)`, bit-identical to BN, then the add, then a ReLU
 * as separate passes, without another read and write of `y`. Default `"none"`.
 */
export type Activation = "none" | "relu";

/** Options of a forward pass that fuse what usually follows batch norm. */
export interface FusedOptions {
  /** Applied last, in the same pass (default `"none"`). */
  activation?: Activation;
  /**
   * Residual input added before the activation: `y = relu(BN(x) + z)` (ResNet's
   * `bn -> + shortcut -> relu`, oneDNN's `fuse_norm_add_relu`). Same shape as `x`.
   */
  z?: TensorLike;
  /**
   * With `activation: "relu"`: where to write the ReLU's 1-bit backward mask
   * ({@link reluMaskLength} elements of opaque bits), to give the backward as `mask`
   * instead of the output `y`: the backward then reads 1/32 of the bytes of `y`.
   */
  outMask?: TensorLike;
}

/** Checks an `activation` option. */
export function checkActivation(a: unknown): Activation {
  if (a === undefined) return "none";
  if (a !== "none" && a !== "relu") throw new InvalidOptionError(`activation must be "none" or "relu", got ${JSON.stringify(a)}`);
  return a;
}

/** Options of {@link batchNormTrain}: parameters, running statistics, and how to update them. */
export interface TrainOptions extends FusedOptions {
  /** gamma, one per channel (default: all 1, as with `affine: false`). */
  weight?: TensorLike;
  /** beta, one per channel (default: all 0). */
  bias?: TensorLike;
  /** Running mean, updated in place. Give both running tensors or neither. */
  runningMean?: TensorLike;
  /** Running variance, updated in place. */
  runningVar?: TensorLike;
  /** Momentum of the running statistics, in [0, 1]. Default 0.1 (`"pytorch"`), 0.9 (`"onnx"`). */
  momentum?: number;
  /** Added to the variance before the square root; default 1e-5; must be > 0 in training. */
  eps?: number;
  /** Default `"NCHW"` (channels-first at any rank). */
  layout?: Layout;
  /**
   * `"pytorch"` (default): `new = (1 - m) * old + m * batch` with the unbiased batch variance.
   * `"onnx"` (= Keras): `new = m * old + (1 - m) * batch` with the biased batch variance.
   */
  convention?: Convention;
  /** Where to write `y` (a resident tensor makes the call copy-free). */
  out?: TensorLike;
}

const TRAIN_KEYS = optionKeys<TrainOptions>({
  weight: true, bias: true, runningMean: true, runningVar: true, momentum: true, eps: true, layout: true, convention: true, out: true,
  activation: true, z: true, outMask: true,
});

/** The `outMask` option: a ReLU mask of the right length, only with `activation: "relu"`. */
function checkOutMask(outMask: TensorLike | undefined, activation: Activation, shape: readonly number[], dims: Dims): void {
  if (outMask === undefined) return;
  if (activation !== "relu") throw new InvalidOptionError(`outMask is the ReLU's mask: it needs activation: "relu"`);
  checkMask("outMask", outMask, shape, dims);
}

/** What {@link batchNormTrain} returns: the output and the batch statistics backward needs. */
export interface TrainResult {
  /** The normalised output. */
  y: Output;
  /** Per-channel batch mean (save it for backward). */
  mean: Float32Array;
  /** Per-channel `1 / sqrt(biased batch variance + eps)` (save it for backward). */
  invStd: Float32Array;
}

const needBoth = (a: unknown, b: unknown) => {
  if ((a === undefined) !== (b === undefined)) {
    throw new InvalidArgumentError("runningMean and runningVar must be given together");
  }
};

/**
 * Training-mode forward: normalises each channel with its batch mean and biased
 * variance, applies `weight`/`bias`, and updates `runningMean`/`runningVar` in place.
 *
 * @example
 * const { y, mean, invStd } = batchNormTrain(x, [8, 3, 32, 32], { weight, bias, runningMean, runningVar });
 * // conv -> BN -> ReLU, and ResNet's BN -> + shortcut -> ReLU, in one pass:
 * const r1 = batchNormTrain(x, [8, 3, 32, 32], { weight, bias, activation: "relu" });
 * const r2 = batchNormTrain(x, [8, 3, 32, 32], { weight, bias, activation: "relu", z: shortcut });
 */
export function batchNormTrain(x: TensorLike, shape: readonly number[], opts: TrainOptions = {}): TrainResult {
  return batchNormTrainOn(getEngine(), x, shape, opts);
}

/** batchNormTrain on a given engine (see `createEngine`). */
export function batchNormTrainOn(engine: Engine, x: TensorLike, shape: readonly number[], opts: TrainOptions = {}): TrainResult {
  checkOptionKeys("batchNormTrain", opts, TRAIN_KEYS);
  const layout = checkLayout(opts.layout);
  const convention = checkConvention(opts.convention);
  const activation = checkActivation(opts.activation);
  const dims = dimsOf(shape, layout);
  checkData("x", x, shape, dims);
  if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
  if (opts.z !== undefined) checkData("z", opts.z, shape, dims);
  checkOutMask(opts.outMask, activation, shape, dims);
  checkPerChannel("weight", opts.weight, dims);
  checkPerChannel("bias", opts.bias, dims);
  needBoth(opts.runningMean, opts.runningVar);
  checkPerChannel("runningMean", opts.runningMean, dims);
  checkPerChannel("runningVar", opts.runningVar, dims);
  const eps = checkEps(opts.eps, true);
  const momentum = checkMomentum(opts.momentum, convention);
  checkTrainable(shape, dims);
  // Everything the kernel writes must be disjoint from everything else it touches.
  const inputs = { x, weight: opts.weight, bias: opts.bias, z: opts.z };
  checkNoAlias("out", opts.out, { ...inputs, runningMean: opts.runningMean, runningVar: opts.runningVar });
  checkNoAlias("runningMean", opts.runningMean, { ...inputs, runningVar: opts.runningVar });
  checkNoAlias("runningVar", opts.runningVar, inputs);
  if (opts.outMask !== undefined) {
    checkNoAlias("outMask", opts.outMask, { ...inputs, out: opts.out, runningMean: opts.runningMean, runningVar: opts.runningVar });
  }
  const unshared = engineForPlain(engine, [x, opts.z, opts.out, opts.outMask]);
  if (unshared !== engine) {
    // Plain arrays only, on the threads build: run where copies are cheap (Engine.unshared).
    // The same bits as here: the reductions combine fixed segments whatever the thread
    // count. Resident running statistics take their update back afterwards.
    const [weight, bias, runningMean, runningVar] = [opts.weight, opts.bias, opts.runningMean, opts.runningVar].map(portable);
    const r = batchNormTrainOn(unshared, x, shape, { ...opts, weight, bias, runningMean, runningVar });
    if (opts.runningMean instanceof WasmTensor) opts.runningMean.view.set(runningMean as Float32Array);
    if (opts.runningVar instanceof WasmTensor) opts.runningVar.view.set(runningVar as Float32Array);
    return r;
  }

  const s = new Staging(engine);
  try {
    const relu = activation === "relu";
    // The mask is written by the one-call kernel (the streaming path has no mask).
    if (streams(dims.size) && !(opts.out instanceof WasmTensor) && opts.outMask === undefined) {
      // A plain-array output: reductions on the whole tensor, then the output streamed out.
      return trainStreamed(s, x, dims, { ...opts, out: opts.out }, { eps, momentum, convention, relu });
    }
    const y = s.output(dims.size, opts.out);
    const mean = s.output(dims.channels);
    const invStd = s.output(dims.channels);
    const mask = opts.outMask === undefined ? undefined : s.output(maskLengthOf(dims), opts.outMask);
    s.engine.glue.train_forward(
      s.input(x), y.ptr, dims.outer, dims.channels, dims.inner,
      s.input(opts.weight), s.input(opts.bias), s.inout(opts.runningMean), s.inout(opts.runningVar),
      momentum, convention === "onnx" ? 1 : 0, eps, mean.ptr, invStd.ptr, relu, s.input(opts.z), mask?.ptr ?? 0,
    );
    mask?.result();
    s.commit();
    return { y: y.result(), mean: mean.result() as Float32Array, invStd: invStd.result() as Float32Array };
  } finally {
    s.release();
  }
}

/** Options of {@link batchNormEval}: the running statistics are required. */
export interface EvalOptions extends FusedOptions {
  /** gamma, one per channel (default: all 1). */
  weight?: TensorLike;
  /** beta, one per channel (default: all 0). */
  bias?: TensorLike;
  /** Running mean (required). */
  runningMean: TensorLike;
  /** Running variance (required). */
  runningVar: TensorLike;
  /** Default 1e-5. */
  eps?: number;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** Where to write `y`. */
  out?: TensorLike;
}

const EVAL_KEYS = optionKeys<EvalOptions>({
  weight: true, bias: true, runningMean: true, runningVar: true, eps: true, layout: true, out: true, activation: true, z: true,
  outMask: true,
});

/**
 * Inference-mode forward with the running statistics:
 * `y = (x - runningMean) * (weight / sqrt(runningVar + eps)) + bias`, then `+ z` and the
 * activation when given.
 *
 * @example
 * ```ts
 * const y = batchNormEval(x, [8, 3, 32, 32], { weight, bias, runningMean, runningVar });
 * ```
 */
export function batchNormEval(x: TensorLike, shape: readonly number[], opts: EvalOptions): Output {
  return batchNormEvalOn(getEngine(), x, shape, opts);
}

/** batchNormEval on a given engine (see `createEngine`). */
export function batchNormEvalOn(engine: Engine, x: TensorLike, shape: readonly number[], opts: EvalOptions): Output {
  if (opts === undefined) throw new InvalidArgumentError("batchNormEval needs options with runningMean and runningVar");
  checkOptionKeys("batchNormEval", opts, EVAL_KEYS);
  const layout = checkLayout(opts.layout);
  const activation = checkActivation(opts.activation);
  const dims = dimsOf(shape, layout);
  checkData("x", x, shape, dims);
  if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
  if (opts.z !== undefined) checkData("z", opts.z, shape, dims);
  checkPerChannel("weight", opts.weight, dims);
  checkPerChannel("bias", opts.bias, dims);
  checkPerChannel("runningMean", required("runningMean", opts.runningMean), dims);
  checkPerChannel("runningVar", required("runningVar", opts.runningVar), dims);
  checkOutMask(opts.outMask, activation, shape, dims);
  const eps = checkEps(opts.eps);
  const evalInputs = { x, z: opts.z, weight: opts.weight, bias: opts.bias, runningMean: opts.runningMean, runningVar: opts.runningVar };
  checkNoAlias("out", opts.out, evalInputs);
  if (opts.outMask !== undefined) checkNoAlias("outMask", opts.outMask, { ...evalInputs, out: opts.out });
  const unshared = engineForPlain(engine, [x, opts.z, opts.out, opts.outMask]);
  if (unshared !== engine) {
    const [weight, bias, runningMean, runningVar] = [opts.weight, opts.bias, opts.runningMean, opts.runningVar].map(portable);
    return batchNormEvalOn(unshared, x, shape, { ...opts, weight, bias, runningMean: runningMean!, runningVar: runningVar! });
  }

  const s = new Staging(engine);
  try {
    const relu = activation === "relu";
    const [w, b, rm, rv] = [opts.weight, opts.bias, opts.runningMean, opts.runningVar].map((t) => s.input(t));
    // The mask is written by the one-call kernel (the streaming path has no mask).
    if (streams(dims.size) && !(opts.out instanceof WasmTensor) && opts.outMask === undefined) {
      // A plain-array output: stream through cache-sized windows (one allocation for a new output).
      const out = opts.out ?? new Float32Array(dims.size);
      const g = s.engine.glue;
      streamElementwise(s, dims, [x, opts.z], [out], (c, [xp, zp], [yp]) => {
        g.eval_forward(xp, yp, c.outer, c.channels, c.inner, atChannel(w, c), atChannel(b, c), atChannel(rm, c), atChannel(rv, c), eps, relu, zp);
      });
      return out;
    }
    const y = s.output(dims.size, opts.out);
    const mask = opts.outMask === undefined ? undefined : s.output(maskLengthOf(dims), opts.outMask);
    s.engine.glue.eval_forward(s.input(x), y.ptr, dims.outer, dims.channels, dims.inner, w, b, rm, rv, eps, relu, s.input(opts.z), mask?.ptr ?? 0);
    mask?.result();
    return y.result();
  } finally {
    s.release();
  }
}

/** Options of {@link batchNormBackward}: the statistics the forward pass returned. */
export interface BackwardOptions {
  /** gamma (default all 1). */
  weight?: TensorLike;
  /** The `mean` the forward pass returned (required). */
  mean: TensorLike;
  /** The `invStd` the forward pass returned (required). */
  invStd: TensorLike;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /**
   * `true` (default): the forward used batch statistics, so gradients flow through them.
   * `false`: the statistics were constants (eval mode): `dx = dy * weight * invStd`.
   */
  training?: boolean;
  /** Where to write `dx`. */
  out?: TensorLike;
  /** The forward's fused activation (default `"none"`). */
  activation?: Activation;
  /**
   * The forward's output `y`; with `activation: "relu"` it or `mask` is required: the ReLU
   * passes the gradient where `y > 0` (as PyTorch's ReLU backward, which also uses its output).
   */
  y?: TensorLike;
  /**
   * The ReLU mask the forward wrote to its `outMask` (the same bits as `y > 0`, 1/32 of the
   * bytes to read); used instead of `y` when both are given.
   */
  mask?: TensorLike;
  /** The forward had a residual `z`: also return its gradient `dz`. */
  residual?: boolean;
  /**
   * Where to write `dz`. May be `dy` itself (the same array or tensor): `dz` is then
   * written over `dy`, which the backward reads first. In training through the ReLU that
   * saves writing a separate tensor (the gradient of a residual block's shortcut usually
   * has no other use for `dy`).
   */
  outZ?: TensorLike;
}

const BACKWARD_KEYS = optionKeys<BackwardOptions>({
  weight: true, mean: true, invStd: true, layout: true, training: true, out: true, activation: true, y: true, residual: true, outZ: true,
  mask: true,
});

/** What {@link batchNormBackward} returns: the input gradient and the parameter gradients. */
export interface BackwardResult {
  /** Gradient with respect to `x`. */
  dx: Output;
  /** Gradient of the residual input `z` (only with `residual: true`). */
  dz?: Output;
  /** `sum(dy * x_hat)` per channel (computed whether or not `weight` was given). */
  dWeight: Float32Array;
  /** `sum(dy)` per channel. */
  dBias: Float32Array;
}

/**
 * Backward pass: `dx`, `dWeight`, `dBias` from one fused reduction over `dy` and `x`
 * plus one elementwise pass. Through a fused ReLU (`activation: "relu"`, with the forward's
 * output `y`), the ReLU's mask is applied as `dy` is read in both passes, and `dz` (with
 * `residual: true`) is written in the second.
 *
 * @example
 * const f = batchNormTrain(x, shape, { weight, activation: "relu", z });
 * const { dx, dz, dWeight, dBias } = batchNormBackward(dy, x, shape, {
 *   weight, mean: f.mean, invStd: f.invStd, activation: "relu", y: f.y, residual: true,
 * });
 */
export function batchNormBackward(dy: TensorLike, x: TensorLike, shape: readonly number[], opts: BackwardOptions): BackwardResult {
  return batchNormBackwardOn(getEngine(), dy, x, shape, opts);
}

/** batchNormBackward on a given engine (see `createEngine`). */
export function batchNormBackwardOn(engine: Engine, dy: TensorLike, x: TensorLike, shape: readonly number[], opts: BackwardOptions): BackwardResult {
  if (opts === undefined) throw new InvalidArgumentError("batchNormBackward needs options with mean and invStd");
  checkOptionKeys("batchNormBackward", opts, BACKWARD_KEYS);
  const layout = checkLayout(opts.layout);
  const activation = checkActivation(opts.activation);
  const dims = dimsOf(shape, layout);
  checkData("dy", dy, shape, dims);
  checkData("x", x, shape, dims);
  if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
  // The ReLU's mask: its bits, or the output y (> 0).
  const mask = activation === "relu" ? opts.mask : undefined;
  if (opts.mask !== undefined && activation !== "relu") throw new InvalidOptionError(`mask is the ReLU's mask: it needs activation: "relu"`);
  if (mask !== undefined) checkMask("mask", mask, shape, dims);
  else if (activation === "relu") checkData("y", required("y (the forward output, for the ReLU's mask) or mask", opts.y), shape, dims);
  const residual = opts.residual ?? false;
  if (typeof residual !== "boolean") throw new InvalidArgumentError(`residual must be a boolean, got ${String(residual)}`);
  if (opts.outZ !== undefined) {
    if (!residual) throw new InvalidArgumentError("outZ is for dz, which needs residual: true");
    checkData("outZ", opts.outZ, shape, dims);
  }
  checkPerChannel("weight", opts.weight, dims);
  checkPerChannel("mean", required("mean", opts.mean), dims);
  checkPerChannel("invStd", required("invStd", opts.invStd), dims);
  const training = opts.training ?? true;
  if (typeof training !== "boolean") throw new InvalidArgumentError(`training must be a boolean, got ${String(training)}`);
  if (training) checkTrainable(shape, dims);
  const y = activation === "relu" && mask === undefined ? opts.y : undefined;
  const relu = y !== undefined || mask !== undefined;
  const inputs = { dy, x, y, mask, weight: opts.weight, mean: opts.mean, invStd: opts.invStd };
  checkNoAlias("out", opts.out, { ...inputs, outZ: opts.outZ });
  // outZ may be dy itself (the same memory, whole), not a part of it.
  checkNoAlias("outZ", opts.outZ, sameTensor(opts.outZ, dy) ? { ...inputs, dy: undefined } : inputs);
  const unshared = engineForPlain(engine, [dy, x, y, mask, opts.out, opts.outZ]);
  if (unshared !== engine) {
    // Plain arrays only, on the threads build: as in batchNormTrainOn.
    const [weight, mean, invStd] = [opts.weight, opts.mean, opts.invStd].map(portable);
    return batchNormBackwardOn(unshared, dy, x, shape, { ...opts, weight, mean: mean!, invStd: invStd! });
  }

  const s = new Staging(engine);
  try {
    if (streams(dims.size) && training && !(opts.out instanceof WasmTensor) && !(opts.outZ instanceof WasmTensor) && mask === undefined) {
      // Plain-array outputs: the sums on the whole tensors, then dx (and dz) streamed out.
      const dz = residual && y !== undefined ? (opts.outZ ?? new Float32Array(dims.size)) : undefined;
      const r: BackwardResult = backwardStreamed(s, dy, x, dims, { weight: opts.weight, mean: opts.mean, invStd: opts.invStd, y, out: opts.out, dz });
      if (dz) r.dz = dz;
      else if (residual) r.dz = copyOf(dy, opts.outZ);
      return r;
    }
    const dx = s.output(dims.size, opts.out);
    const dW = s.output(dims.channels);
    const dB = s.output(dims.channels);
    // Without a ReLU the residual's gradient is dy itself; with one, the kernel writes it.
    const dz = residual && relu ? s.output(dims.size, opts.outZ) : undefined;
    s.engine.glue.backward(
      s.input(dy), s.input(x), dx.ptr, dims.outer, dims.channels, dims.inner,
      s.input(opts.weight), s.input(opts.mean), s.input(opts.invStd), dW.ptr, dB.ptr, training,
      s.input(y), dz?.ptr ?? 0, s.input(mask),
    );
    const r: BackwardResult = { dx: dx.result(), dWeight: dW.result() as Float32Array, dBias: dB.result() as Float32Array };
    if (dz) r.dz = dz.result();
    else if (residual) r.dz = copyOf(dy, opts.outZ);
    return r;
  } finally {
    s.release();
  }
}

/**
 * Whether plain-array data of `size` elements goes through the streaming path: when it
 * spans more than one window (a smaller tensor fits in cache whole, and one kernel call
 * costs less than the streaming path's several). Every build streams: with a shared
 * memory (simd-threads) V8 copies between JavaScript arrays and wasm memory with a
 * slower word-by-word loop, but the one-call path copies three times as many bytes, and
 * streaming measured as fast as the simd build's (docs/performance.md).
 */
function streams(size: number): boolean {
  return size > STREAM_WINDOW;
}

/** Whether `a` and `b` are the same data: the same array, or tensors of the same memory. */
function sameTensor(a: TensorLike | undefined, b: TensorLike): boolean {
  if (a === b) return true;
  return a instanceof WasmTensor && b instanceof WasmTensor && a.engine === b.engine && a.ptr === b.ptr && a.length === b.length;
}

/** `src` copied into `out` (or a new array): the residual's gradient without a ReLU. */
function copyOf(src: TensorLike, out: TensorLike | undefined): Output {
  const v = src instanceof WasmTensor ? src.view : src;
  if (out === undefined) return v.slice();
  (out instanceof WasmTensor ? out.view : out).set(v);
  return out;
}
