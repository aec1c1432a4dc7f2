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

/**
 * The engine to run an elementwise call on: `engine.unshared` (see {@link Engine}) when
 * every tensor-sized argument in `data` is a plain array (or absent), else `engine`
 * itself (a resident tensor must be read where it lives).
 */
export function engineForPlain(engine: Engine, data: readonly (TensorLike | undefined)[]): Engine {
  return engine.unshared !== undefined && !data.some((t) => t instanceof WasmTensor) ? engine.unshared : engine;
}

/** A per-channel argument as something any engine can read: resident ones copied out. */
export function portable(t: TensorLike | undefined): TensorLike | undefined {
  return t instanceof WasmTensor ? t.toArray() : t;
}

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

  /** Scratch for `length` f32s, freed by `release()`; not zeroed. */
  scratch(length: number): number {
    return this.#alloc(length);
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

/**
 * Elements per staging window of the streaming path: 256 Ki f32 = 1 MiB. The windows
 * were 128 KiB (so that an input, an output and a residual's window stayed in a 1 MiB L2
 * between the copy in, the kernel and the copy out), but the copies, not the kernels,
 * are most of a plain-array call, and fewer, larger copies are the cheaper: on the 2-core
 * AMD EPYC (glibc's `memmove` with `rep movsb`) copying a 25.7 MB tensor out of
 * 128 KiB windows into a JavaScript array took 2.7 ms against 1.4-1.7 ms out of 1 MiB
 * ones, and the kernels on windows in L2/L3 add less than that saves. Measured through
 * the library (paired, one process): plain eval, training forward and backward 0.75-0.95x
 * the time on 2-51 MB tensors, and 0.75-0.90x on a 512 KiB one, which now takes the
 * one-call path (docs/performance.md, session 17).
 */
export const STREAM_WINDOW = 1 << 18;

/** One piece of a tensor as the kernels see it: its element range and its own dims. */
export interface Chunk {
  /** First element in the whole tensor. */
  start: number;
  /** Elements in the chunk (`outer * channels * inner`). */
  length: number;
  /** The chunk's dims as the kernels see them: outer units, channels, inner run. */
  outer: number;
  /** Channels in the chunk (from `channel0`). */
  channels: number;
  /** Elements per channel plane (1 for channels-last rows). */
  inner: number;
  /** The chunk's first channel (per-channel parameters are read from there). */
  channel0: number;
  /** Whether the chunk is the last of its segment (see {@link chunksOf}). */
  segmentEnd: boolean;
}

/**
 * A per-channel vector's pointer (0 = absent, kept 0) moved to a chunk's first channel
 * (`bytes` per value: 4 for f32, 8 for f64).
 */
export const atChannel = (ptr: number, c: Chunk, bytes = 4): number => (ptr === 0 ? 0 : ptr + bytes * c.channel0);

/**
 * Cuts a tensor of `outer x channels x inner` into contiguous chunks of about `window`
 * elements that are each a valid tensor for the kernels: whole outer units (samples of
 * `channels * inner`, or channels-last rows) when they fit, otherwise runs of whole
 * channel planes within one sample (with `channel0` telling which). A plane larger than
 * the window is one chunk. With `unitMultiple` > 0, chunks are always whole outer units,
 * a multiple of `unitMultiple` of them (at least that many, whatever the window), but for
 * a segment's last chunk: the blocks of rows that a channels-last reduction works in.
 * With `segment`, no chunk crosses a multiple of `segment` outer units, and the last
 * chunk before each (and the tensor's last) has `segmentEnd`: the reductions' segments
 * (`reduction_segment_len`), which a stream finishes one by one.
 */
export function* chunksOf(d: { outer: number; channels: number; inner: number }, window = STREAM_WINDOW, unitMultiple = 0, segment = d.outer): Generator<Chunk> {
  const unit = d.channels * d.inner;
  const whole = unit <= window || unitMultiple > 0;
  const fit = Math.max(1, Math.floor(window / unit));
  const per = unitMultiple > 0 ? Math.max(1, Math.floor(fit / unitMultiple)) * unitMultiple : fit;
  const planes = Math.max(1, Math.floor(window / d.inner));
  for (let s0 = 0; s0 < d.outer; s0 += Math.max(1, segment)) {
    const s1 = Math.min(d.outer, s0 + Math.max(1, segment));
    if (whole) {
      for (let o = s0; o < s1; o += per) {
        const outer = Math.min(per, s1 - o);
        yield { start: o * unit, length: outer * unit, outer, channels: d.channels, inner: d.inner, channel0: 0, segmentEnd: o + outer === s1 };
      }
      continue;
    }
    for (let o = s0; o < s1; o++) {
      for (let c = 0; c < d.channels; c += planes) {
        const channels = Math.min(planes, d.channels - c);
        const segmentEnd = o === s1 - 1 && c + channels === d.channels;
        yield { start: (o * d.channels + c) * d.inner, length: channels * d.inner, outer: 1, channels, inner: d.inner, channel0: c, segmentEnd };
      }
    }
  }
}

/**
 * Runs an elementwise kernel over plain arrays through cache-sized windows in wasm
 * memory: for each chunk, copy each plain input's piece in, run `kernel` on the windows,
 * copy each output's piece out. Each element crosses main memory about twice (read from
 * the caller's array, written to the caller's output) instead of six times through
 * whole-tensor scratch copies. Results are those of one whole-tensor call, bit for bit:
 * the kernel is elementwise, and every chunk is a valid tensor with its own channel offset.
 * An input may also be a resident tensor or a pointer to a whole tensor already in wasm
 * memory (read in place at the chunk's offset); absent inputs and outputs pass 0. A
 * reduction streams the same way, with no outputs (and `unitMultiple` and `segment` as
 * in {@link chunksOf}: it works in blocks of rows, and in segments).
 *
 * The loop is lean on purpose: at memory speed a window takes tens of microseconds (a
 * few with the 128 KiB windows this was written for), so per-window JavaScript (views,
 * arrays, closures) shows. The window views are made once and remade only if the memory
 * was replaced (a grown non-shared memory detaches its old buffer), and `kernel` gets the
 * same two pointer arrays every time, rewritten in place.
 */
export function streamElementwise(
  s: Staging,
  d: { outer: number; channels: number; inner: number },
  inputs: readonly (TensorLike | number | undefined)[],
  outputs: readonly (Float32Array | undefined)[],
  kernel: (c: Chunk, inPtrs: number[], outPtrs: number[]) => void,
  unitMultiple = 0,
  segment = d.outer,
): void {
  // Resident inputs are read in place: their base pointers, or 0 for plain and absent ones.
  const bases = inputs.map((t) => (typeof t === "number" ? t : t instanceof WasmTensor ? s.input(t) : 0));
  // Chunks of those come from main memory, and must look it to the kernels: they take
  // channels-last rows four at a time in data of at most `cached_elems()` elements (the
  // windows, in L2 or L3), and four rows read from main memory run about 2x slower (see
  // `passes::rows_together` in the crate). So chunks with an input read in place are
  // larger than that.
  const window = bases.some((b) => b !== 0) ? Math.max(STREAM_WINDOW, 2 * s.engine.glue.cached_elems()) : STREAM_WINDOW;
  const chunks = () => chunksOf(d, window, unitMultiple, segment);
  const longest = chunks().next().value!.length; // the first chunk is the longest
  const inWins = inputs.map((t) => (t instanceof Float32Array ? s.scratch(longest) : 0));
  const outWins = outputs.map((t) => (t === undefined ? 0 : s.scratch(longest)));
  const memory = s.engine.memory;
  let buffer: ArrayBufferLike | undefined;
  let inViews: (Float32Array | undefined)[] = [];
  let outViews: (Float32Array | undefined)[] = [];
  // Before every copy: the kernel may allocate, and so grow the memory.
  const fresh = () => {
    if (memory.buffer === buffer) return;
    buffer = memory.buffer;
    inViews = inWins.map((p) => (p === 0 ? undefined : new Float32Array(buffer!, p, longest)));
    outViews = outWins.map((p) => (p === 0 ? undefined : new Float32Array(buffer!, p, longest)));
  };
  const inPtrs = inputs.map(() => 0);
  for (const c of chunks()) {
    fresh();
    const end = c.start + c.length;
    for (let i = 0; i < inputs.length; i++) {
      const t = inputs[i];
      if (t instanceof Float32Array) {
        inViews[i]!.set(t.subarray(c.start, end));
        inPtrs[i] = inWins[i];
      } else {
        inPtrs[i] = bases[i] === 0 ? 0 : bases[i] + 4 * c.start;
      }
    }
    kernel(c, inPtrs, outWins);
    fresh();
    for (let i = 0; i < outputs.length; i++) {
      const v = outViews[i];
      if (v !== undefined) outputs[i]!.set(c.length === longest ? v : v.subarray(0, c.length), c.start);
    }
  }
}
