/**
 * Moving arguments in and out of wasm memory for one kernel call.
 *
 * A {@link WasmTensor} passes through by pointer (zero copy). A `Float32Array` is copied
 * into a scratch allocation, and outputs are copied back out afterwards. `release()`
 * frees every scratch allocation, whatever happened.
 * @module
 */
import { InvalidArgumentError } from "./errors.js";
import type { Engine } from "./loader.js";
import { allocF32 } from "./memory.js";
import { WasmTensor } from "./tensor.js";
import type { TensorLike } from "./validate.js";

export class Staging {
  readonly #scratch: Array<[number, number]> = [];
  readonly #copyBack: Array<() => void> = [];

  constructor(readonly engine: Engine) {}

  #alloc(length: number): number {
    // Not zeroed: every scratch buffer is fully written (copied in, or a kernel output)
    // before anything reads it.
    const ptr = allocF32(this.engine, length, false); // OutOfMemoryError before any write
    this.#scratch.push([ptr, length]);
    return ptr;
  }

  /** A view of wasm memory, fresh (memory may have grown since any earlier view). */
  heap(ptr: number, length: number): Float32Array {
    return new Float32Array(this.engine.memory.buffer, ptr, length);
  }

  #resident(t: WasmTensor): number {
    if (t.engine !== this.engine) throw new InvalidArgumentError("this WasmTensor belongs to another wasm build");
    return t.ptr;
  }

  /** Pointer to read `t` from; 0 when absent. */
  input(t: TensorLike | undefined): number {
    if (t === undefined) return 0;
    if (t instanceof WasmTensor) return this.#resident(t);
    const ptr = this.#alloc(t.length);
    this.heap(ptr, t.length).set(t);
    return ptr;
  }

  /** Pointer to a tensor that the kernel reads and updates in place (running stats). */
  inout(t: TensorLike | undefined): number {
    if (t === undefined || t instanceof WasmTensor) return this.input(t);
    const ptr = this.input(t);
    this.#copyBack.push(() => t.set(this.heap(ptr, t.length)));
    return ptr;
  }

  /**
   * Pointer for the kernel to write `length` values to: `out` itself when resident,
   * otherwise scratch whose contents `result()` delivers (into `out` when given).
   */
  output(length: number, out?: TensorLike): { ptr: number; result: () => Float32Array | WasmTensor } {
    if (out instanceof WasmTensor) return { ptr: this.#resident(out), result: () => out };
    const ptr = this.#alloc(length);
    return {
      ptr,
      result: () => {
        const src = this.heap(ptr, length);
        if (out) {
          out.set(src);
          return out;
        }
        return src.slice();
      },
    };
  }

  /** Pointer to `values` as f64 in scratch memory (0 when absent). */
  inputF64(values: Float64Array | undefined): number {
    if (values === undefined) return 0;
    const ptr = this.#alloc(2 * values.length);
    new Float64Array(this.engine.memory.buffer, ptr, values.length).set(values);
    return ptr;
  }

  /** Scratch for the kernel to write `length` f64s to, and a reader for them. */
  outputF64(length: number): { ptr: number; result: () => Float64Array } {
    const ptr = this.#alloc(2 * length);
    return { ptr, result: () => new Float64Array(this.engine.memory.buffer, ptr, length).slice() };
  }

  /** Copies in-place-updated arrays back to their owners (after a successful kernel). */
  commit(): void {
    for (const f of this.#copyBack) f();
  }

  release(): void {
    for (const [ptr, len] of this.#scratch) this.engine.glue.free_f32(ptr, len);
    this.#scratch.length = 0;
  }
}
