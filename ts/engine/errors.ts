/**
 * Errors thrown by batchnorm-wasm. Every one is a {@link BatchNormError}, so
 * `catch (e) { if (e instanceof BatchNormError) ... }` catches all of them; the subclass
 * says what kind of mistake it was and the message says exactly what is wrong.
 *
 * A call that throws one of these has changed nothing: all checks run before any output
 * or running statistic is written.
 * @module
 */

/** Base class of every error this package throws on bad input or misuse. */
export class BatchNormError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The shape is unusable: rank < 2, or a dimension that is not a positive integer. */
export class ShapeError extends BatchNormError {}

/** A tensor's length does not match the element count its shape implies. */
export class LengthMismatchError extends BatchNormError {}

/** A per-channel parameter or statistic does not have one value per channel. */
export class ChannelMismatchError extends BatchNormError {}

/** Training needs more than one value per channel (PyTorch raises the same). */
export class TooFewValuesError extends BatchNormError {}

/** An option is out of range or of the wrong kind (eps, momentum, layout, convention...). */
export class InvalidOptionError extends BatchNormError {}

/** An argument is not a `Float32Array` or {@link WasmTensor}, or a required one is missing. */
export class InvalidArgumentError extends BatchNormError {}

/** The API was used before `await init()`, or a tensor was used after `free()`. */
export class StateError extends BatchNormError {}
