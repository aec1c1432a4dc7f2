/**
 * {@link WasmTensor}: f32 data that lives in wasm memory, so kernels read and write it
 * without a copy.
 *
 * Ownership: whoever allocates a tensor owns it and frees it with `free()` (or a `using`
 * declaration, via `Symbol.dispose`). A FinalizationRegistry frees tensors that become
 * unreachable without `free()` as a safety net, but GC timing is unpredictable: free
 * large tensors explicitly.
 *
 * Views: `view` is a `Float32Array` over the tensor's bytes. Wasm memory can grow during
 * any call (growth replaces `memory.buffer`, which detaches old views of a non-shared
 * memory), so `view` is re-derived whenever the buffer changed: read `t.view` again after
 * a call instead of keeping an old one.
 * @module
 */
import { StateError, InvalidArgumentError } from "./errors.js";
import { getEngine, type Engine } from "./loader.js";
import { allocF32 } from "./memory.js";

interface Allocation {
  engine: Engine;
  ptr: number;
  length: number;
}

const registry = new FinalizationRegistry<Allocation>((a) => a.engine.glue.free_f32(a.ptr, a.length));

/**
 * f32 data resident in wasm memory: pass it to the kernels instead of a `Float32Array`
 * and they read and write it in place, with no copy in or out. Free it when done.
 *
 * @example
 * ```ts
 * await init();
 * using x = WasmTensor.from(data);            // freed at the end of the scope
 * const out = WasmTensor.alloc(x.length);
 * batchNormTrain(x, [32, 16, 28, 28], { out });
 * console.log(out.view[0]);                   // read through a fresh view
 * out.free();
 * ```
 */
export class WasmTensor {
  #alloc: Allocation | undefined;
  #view: Float32Array | undefined;

  private constructor(alloc: Allocation) {
    this.#alloc = alloc;
    registry.register(this, alloc, this);
  }

  /** A zero-filled tensor of `length` f32 values in wasm memory (of the build `init()`
   * loaded, unless another engine is given). Throws {@link ShapeError} when `length` f32s
   * exceed a 32-bit memory and {@link OutOfMemoryError} when the memory cannot grow enough. */
  static alloc(length: number, engine: Engine = getEngine()): WasmTensor {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`tensor length must be a non-negative integer, got ${String(length)}`);
    }
    return new WasmTensor({ engine, ptr: allocF32(engine, length, true), length });
  }

  /** A tensor holding a copy of `data`. */
  static from(data: ArrayLike<number>, engine: Engine = getEngine()): WasmTensor {
    const t = WasmTensor.alloc(data.length, engine);
    t.view.set(data);
    return t;
  }

  #live(): Allocation {
    if (!this.#alloc) throw new StateError("this WasmTensor was freed");
    return this.#alloc;
  }

  /** Byte offset in wasm memory (what the kernels take). */
  get ptr(): number {
    return this.#live().ptr;
  }

  /** Number of f32 values. */
  get length(): number {
    return this.#live().length;
  }

  /** True after `free()`. */
  get freed(): boolean {
    return this.#alloc === undefined;
  }

  /** The build whose memory holds this tensor. */
  get engine(): Engine {
    return this.#live().engine;
  }

  /** A `Float32Array` over the tensor, re-derived if wasm memory has grown. */
  get view(): Float32Array {
    const a = this.#live();
    const buffer = a.engine.memory.buffer;
    if (!this.#view || this.#view.buffer !== buffer) {
      this.#view = new Float32Array(buffer, a.ptr, a.length);
    }
    return this.#view;
  }

  /** A copy of the data in a plain `Float32Array`. */
  toArray(): Float32Array {
    return this.view.slice();
  }

  /** Whether the two tensors share any byte of memory. */
  overlaps(o: WasmTensor): boolean {
    const a = this.#live();
    const b = o.#live();
    return a.engine === b.engine && a.ptr < b.ptr + 4 * b.length && b.ptr < a.ptr + 4 * a.length && a.length > 0 && b.length > 0;
  }

  /** Frees the memory. Using the tensor afterwards throws {@link StateError}. Idempotent. */
  free(): void {
    const a = this.#alloc;
    if (!a) return;
    this.#alloc = undefined;
    this.#view = undefined;
    registry.unregister(this);
    a.engine.glue.free_f32(a.ptr, a.length);
  }

  /** Same as {@link free}, so a `using` declaration frees the tensor at the end of its scope. */
  [Symbol.dispose](): void {
    this.free();
  }
}
