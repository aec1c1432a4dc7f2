/**
 * The fused ReLU's 1-bit backward mask (oneDNN's workspace): the forward writes the bits
 * `y > 0`, the backward reads them instead of the output `y`, 1/32 of its bytes. An
 * opaque tensor to callers: {@link reluMaskLength} `f32`-sized elements of bits (a
 * {@link WasmTensor}, or a `Float32Array` that is only ever copied, never read as numbers).
 *
 * Layout (crates/batchnorm-core/src/passes/mask.rs): each unit (a plane of one channel
 * when channels-first, a row of all channels when channels-last) starts a 32-bit word, so
 * a unit of `L` elements takes `ceil(L / 32)` words.
 * @module
 */
import { LengthMismatchError } from "../engine/errors.js";
import { checkLayout, dimsOf, lengthOf, type Dims, type Layout } from "../engine/validate.js";

/** Words (f32-sized elements) of the mask of a tensor with these dims. */
export function maskLengthOf(d: Dims): number {
  const unit = d.inner > 1 ? d.inner : d.channels;
  return (d.size / unit) * Math.ceil(unit / 32);
}

/**
 * Elements (4 bytes each) of the ReLU mask of an input of `shape`: allocate
 * `WasmTensor.alloc(reluMaskLength(shape, layout))` and pass it as `outMask` to a forward
 * with `activation: "relu"`, then as `mask` to its backward (instead of `y`).
 *
 * @example
 * ```ts
 * const mask = WasmTensor.alloc(reluMaskLength([32, 64, 56, 56]));  // 32*64 planes of 3136: 99 words each
 * const f = batchNormTrain(x, shape, { weight, bias, activation: "relu", out: y, outMask: mask });
 * const g = batchNormBackward(dy, x, shape, { weight, mean: f.mean, invStd: f.invStd, activation: "relu", mask });
 * ```
 */
export function reluMaskLength(shape: readonly number[], layout: Layout = "NCHW"): number {
  return maskLengthOf(dimsOf(shape, checkLayout(layout)));
}

/** A mask argument must hold exactly {@link maskLengthOf} elements. */
export function checkMask(name: string, t: unknown, shape: readonly number[], d: Dims): void {
  const n = lengthOf(name, t);
  const want = maskLengthOf(d);
  if (n !== want) {
    throw new LengthMismatchError(`${name} has ${n} elements but a ReLU mask of shape [${shape.join(", ")}] has ${want} (see reluMaskLength)`);
  }
}
