/**
 * Allocation in a build's wasm memory, with its limits checked before anything is
 * allocated and every failure named ({@link ShapeError}, {@link OutOfMemoryError}).
 * {@link WasmTensor} and the staging of `Float32Array` arguments both allocate here.
 * @module
 */
import { OutOfMemoryError, ShapeError } from "./errors.js";
import type { Engine } from "./loader.js";

/** wasm32 addresses 2^32 bytes: no f32 tensor of more than 2^30 elements fits at all. */
export const WASM32_BYTES = 2 ** 32;

/**
 * The most a build's memory can grow to. `simd-threads` declares a 2 GiB maximum for its
 * shared memory (`--max-memory=2147483648` in scripts/build-wasm.sh; shared memories must
 * declare one); the others may grow to the whole 32-bit space.
 */
export function maxMemoryBytes(engine: Engine): number {
  return engine.build === "simd-threads" ? 2 ** 31 : WASM32_BYTES;
}

/** Throws {@link ShapeError} when `length` f32s exceed what a 32-bit memory can address. */
export function checkFitsWasm32(what: string, length: number): void {
  if (length * 4 > WASM32_BYTES) {
    throw new ShapeError(`${what} of ${length} f32 values (${length * 4} bytes) does not fit in a 32-bit wasm memory (4 GiB)`);
  }
}

const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/**
 * Allocates `length` f32s (zeroed, or scratch that the caller fully writes first) and
 * returns the byte offset. The Rust side returns 0 instead of trapping when the memory
 * cannot grow enough, so a failure leaves the engine as it was.
 */
export function allocF32(engine: Engine, length: number, zeroed: boolean): number {
  checkFitsWasm32("a tensor", length);
  const ptr = zeroed ? engine.glue.alloc_f32(length) : engine.glue.alloc_f32_scratch(length);
  if (ptr !== 0) return ptr;
  const details = {
    requestedBytes: 4 * Math.max(length, 1),
    memoryBytes: engine.memory.buffer.byteLength,
    maxMemoryBytes: maxMemoryBytes(engine),
  };
  throw new OutOfMemoryError(
    `cannot allocate ${details.requestedBytes} bytes (${MiB(details.requestedBytes)}) in the ${engine.build} build's wasm memory: ` +
      `it holds ${MiB(details.memoryBytes)} and can grow to at most ${MiB(details.maxMemoryBytes)}, one allocation to under 2048 MiB. ` +
      "Free tensors you no longer need, or pass the data in smaller pieces.",
    details,
  );
}
