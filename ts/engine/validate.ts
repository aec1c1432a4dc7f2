/**
 * Argument checks shared by the functional API and the module API. Each throws the
 * matching {@link BatchNormError} subclass with a message that names the argument.
 * @module
 */
import {
  ChannelMismatchError,
  InvalidArgumentError,
  InvalidOptionError,
  LengthMismatchError,
  ShapeError,
  TooFewValuesError,
} from "./errors.js";
import { WasmTensor } from "./tensor.js";

/** Where the channel axis is: `"NCHW"` = channels-first `(N, C, ...)` at any rank,
 * `"NHWC"` = channels-last `(N, ..., C)` at any rank. */
export type Layout = "NCHW" | "NHWC";
/** Running-statistics convention: PyTorch's (default) or ONNX's (= Keras's). */
export type Convention = "pytorch" | "onnx";
/** A tensor argument: a plain array (copied in/out) or a tensor resident in wasm memory. */
export type TensorLike = Float32Array | WasmTensor;

/** A shape reduced to `outer x channels x inner` (see the Rust crate's `Dims`). */
export interface Dims {
  outer: number;
  channels: number;
  inner: number;
  /** Total elements. */
  size: number;
  /** Values per channel (`outer * inner`). */
  perChannel: number;
}

export function dimsOf(shape: readonly number[], layout: Layout): Dims {
  if (!Array.isArray(shape)) throw new ShapeError(`shape must be an array of integers, got ${typeof shape}`);
  if (shape.length < 2) {
    throw new ShapeError(`batch norm needs an input of rank >= 2 (N, C, ...), got shape [${shape.join(", ")}] of rank ${shape.length}`);
  }
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 1) {
      throw new ShapeError(`dimension ${i} of shape [${shape.join(", ")}] must be a positive integer, got ${d}`);
    }
  });
  const size = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(size) || size * 4 > 2 ** 32) {
    throw new ShapeError(`shape [${shape.join(", ")}] has ${size} elements, more than a 32-bit wasm memory holds`);
  }
  const channels = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  const outer = size / (channels * inner);
  return { outer, channels, inner, size, perChannel: outer * inner };
}

export function checkLayout(layout: unknown): Layout {
  if (layout === undefined) return "NCHW";
  if (layout !== "NCHW" && layout !== "NHWC") {
    throw new InvalidOptionError(`layout must be "NCHW" (channels-first) or "NHWC" (channels-last), got ${JSON.stringify(layout)}`);
  }
  return layout;
}

export function checkConvention(convention: unknown): Convention {
  if (convention === undefined) return "pytorch";
  if (convention !== "pytorch" && convention !== "onnx") {
    throw new InvalidOptionError(`convention must be "pytorch" or "onnx", got ${JSON.stringify(convention)}`);
  }
  return convention;
}

/**
 * `eps` added to the variance: finite and >= 0 where running statistics normalise (eval),
 * and > 0 where batch statistics do (training): a constant channel has variance 0 and
 * would divide by zero. PyTorch raises "batch_norm eps must be positive during training".
 */
export function checkEps(eps: unknown, batchStats = false): number {
  if (eps === undefined) return 1e-5;
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) {
    throw new InvalidOptionError(`eps must be a finite number >= 0, got ${String(eps)}`);
  }
  if (batchStats && eps === 0) {
    throw new InvalidOptionError("eps must be positive when normalising with batch statistics (training), got 0 (as PyTorch)");
  }
  return eps;
}

export function checkMomentum(momentum: unknown, convention: Convention): number {
  // Each convention's own default: PyTorch keeps (1 - 0.1) of the old value, ONNX 0.9.
  if (momentum === undefined) return convention === "onnx" ? 0.9 : 0.1;
  if (typeof momentum !== "number" || !(momentum >= 0 && momentum <= 1)) {
    throw new InvalidOptionError(`momentum must be a number in [0, 1], got ${String(momentum)}`);
  }
  return momentum;
}

/** The length of a tensor argument; a named error for anything that is not one. */
export function lengthOf(name: string, t: unknown): number {
  if (t instanceof Float32Array) return t.length;
  if (t instanceof WasmTensor) return t.length; // throws StateError if freed
  const kind = t === null ? "null" : ArrayBuffer.isView(t) ? t.constructor.name : typeof t;
  throw new InvalidArgumentError(`${name} must be a Float32Array or WasmTensor, got ${kind}`);
}

/** A data tensor (x, dy, out) must hold exactly `dims.size` elements. */
export function checkData(name: string, t: unknown, shape: readonly number[], dims: Dims): void {
  const n = lengthOf(name, t);
  if (n !== dims.size) {
    throw new LengthMismatchError(`${name} has ${n} elements but shape [${shape.join(", ")}] implies ${dims.size}`);
  }
}

/** A per-channel vector must hold exactly `dims.channels` elements (if given). */
export function checkPerChannel(name: string, t: unknown, dims: Dims): void {
  if (t === undefined) return;
  const n = lengthOf(name, t);
  if (n !== dims.channels) {
    throw new ChannelMismatchError(`${name} has ${n} elements but the input has ${dims.channels} channels`);
  }
}

export function checkTrainable(shape: readonly number[], dims: Dims): void {
  if (dims.perChannel < 2) {
    throw new TooFewValuesError(
      `expected more than 1 value per channel when training, got input of shape [${shape.join(", ")}] (${dims.perChannel} value per channel)`,
    );
  }
}

export function required<T>(name: string, v: T | undefined): T {
  if (v === undefined || v === null) throw new InvalidArgumentError(`${name} is required`);
  return v;
}

/** Two wasm-resident tensors must not overlap when one is written: the kernels read and
 * write through separate Rust slices, and overlapping them would be undefined behaviour. */
export function checkNoAlias(outName: string, out: TensorLike | undefined, inputs: Record<string, TensorLike | undefined>): void {
  if (!(out instanceof WasmTensor)) return;
  for (const [name, t] of Object.entries(inputs)) {
    if (t instanceof WasmTensor && t.overlaps(out)) {
      throw new InvalidArgumentError(`${outName} must not share memory with ${name}`);
    }
  }
}

/**
 * Every key of an options type, checked by the compiler both ways: an option added to the
 * interface but not listed here, or listed but not in the interface, fails to compile.
 */
export function optionKeys<T extends object>(keys: { [K in keyof Required<T>]: true }): readonly string[] {
  return Object.keys(keys);
}

/** Levenshtein distance, case-insensitive (so `running_mean` is near `runningMean`). */
function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * Rejects an options argument that is not a plain object, or that has a key `known` does
 * not list: in JavaScript a typo (`{ epsilon: 1e-3 }`) would otherwise change nothing and
 * say nothing. The message names the key and the closest known one.
 */
export function checkOptionKeys(what: string, opts: unknown, known: readonly string[]): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== "object" || Array.isArray(opts) || ArrayBuffer.isView(opts)) {
    const kind = opts === null ? "null" : Array.isArray(opts) ? "an array" : ArrayBuffer.isView(opts) ? opts.constructor.name : typeof opts;
    throw new InvalidOptionError(`${what} options must be an object, got ${kind}`);
  }
  for (const key of Object.keys(opts)) {
    if (known.includes(key)) continue;
    const closest = known.reduce((best, k) => (editDistance(key, k) < editDistance(key, best) ? k : best), known[0]);
    const hint = closest === undefined ? "" : ` (did you mean ${JSON.stringify(closest)}?)`;
    throw new InvalidOptionError(`unknown option ${JSON.stringify(key)}${hint} in ${what} options; known: ${known.join(", ")}`);
  }
}
