/**
 * The wasm buffers a module owns, freed together by its `dispose()`.
 * @module
 */
import type { Engine } from "./loader.js";
import { WasmTensor } from "./tensor.js";

/** A module's owned `WasmTensor`s: parameters, statistics, and scratch that is resized on demand. */
export class OwnedTensors {
  #all: WasmTensor[] = [];

  constructor(readonly engine: Engine) {}

  /** Takes ownership of `t` (freed by {@link freeAll}); returns it. */
  own(t: WasmTensor): WasmTensor {
    this.#all.push(t);
    return t;
  }

  /**
   * `current` when it holds `length` elements, else a new owned tensor of that length that
   * replaces it. The new one is allocated before `current` is freed, so an
   * OutOfMemoryError leaves `current` (and whatever it holds) as it was.
   */
  sized(current: WasmTensor | undefined, length: number): WasmTensor {
    if (current && current.length === length) return current;
    const fresh = WasmTensor.alloc(length, this.engine);
    if (current) {
      this.#all = this.#all.filter((t) => t !== current);
      current.free();
    }
    return this.own(fresh);
  }

  /** Frees every owned tensor. */
  freeAll(): void {
    for (const t of this.#all) t.free();
    this.#all = [];
  }
}
