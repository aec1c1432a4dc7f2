/**
 * Errors thrown by batchnorm-wasm. Every one is a {@link BatchNormError}, so
 * `catch (e) { if (e instanceof BatchNormError) ... }` catches all of them; the subclass
 * says what kind of mistake it was and the message says exactly what is wrong.
 *
 * A call that throws one of these has changed nothing: all checks run before any output
 * or running statistic is written.
 * @module
 */

/**
 * Base class of every error this package throws on bad input or misuse.
 *
 * Each class names itself with a string literal (`override name = "ShapeError"`), not
 * with `new.target.name`: minifiers rename classes, and a production bundle would then
 * print `pt: ...` instead of `ShapeError: ...` (and errors revived from a worker are
 * looked up by this name). test/errors.test.ts checks every exported class.
 */
export class BatchNormError extends Error {
  /** The class name as a literal, so it survives minification. */
  override name = "BatchNormError";
}

/** The shape is unusable: rank < 2, or a dimension that is not a positive integer. */
export class ShapeError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "ShapeError";
}

/** A tensor's length does not match the element count its shape implies. */
export class LengthMismatchError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "LengthMismatchError";
}

/** A per-channel parameter or statistic does not have one value per channel. */
export class ChannelMismatchError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "ChannelMismatchError";
}

/** Training needs more than one value per channel (PyTorch raises the same). */
export class TooFewValuesError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "TooFewValuesError";
}

/** An option is out of range or of the wrong kind (eps, momentum, layout, convention...). */
export class InvalidOptionError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "InvalidOptionError";
}

/** An argument is not a `Float32Array` or {@link WasmTensor}, or a required one is missing. */
export class InvalidArgumentError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "InvalidArgumentError";
}

/** The API was used before `await init()`, or a tensor was used after `free()`. */
export class StateError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "StateError";
}

/** What an {@link OutOfMemoryError} could not get, and what the memory had. */
export interface MemoryShortfall {
  /** Bytes the failed allocation asked for. */
  requestedBytes: number;
  /** The wasm memory's size when it failed. */
  memoryBytes: number;
  /** The most this build's memory can grow to (4 GiB for wasm32; 2 GiB for the shared
   * memory of `simd-threads`, as declared by its build). One allocation is also limited
   * to under 2 GiB (wasm32's `isize::MAX`). */
  maxMemoryBytes: number;
}

/**
 * Wasm memory cannot hold what a call needs: a {@link WasmTensor} allocation, or the
 * scratch a call with `Float32Array` arguments copies them into. Nothing was written and
 * the engine stays usable: free tensors you no longer need, or pass smaller pieces.
 * (`details` is present where the error was raised; an error revived from a worker has
 * only the message, which states the same numbers.)
 */
export class OutOfMemoryError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "OutOfMemoryError";
  /** The allocation that failed and the memory's state (when the allocator knew them). */
  readonly details?: MemoryShortfall;
  constructor(message: string, details?: MemoryShortfall) {
    super(message);
    this.details = details;
  }
}

/**
 * A worker died, was terminated, or was disposed before or during a call (workers,
 * process groups), or a thread-pool worker of the `simd-threads` build did not start.
 */
export class WorkerError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "WorkerError";
}
