/**
 * Training forward and backward when the output is a plain array: the reductions give
 * exactly the bits of the one-call path, then the elementwise pass streams chunk by
 * chunk into a cache-sized window and straight out to the caller's array
 * ({@link streamElementwise}). Compared with computing the whole output in scratch memory
 * and copying it out, the output crosses main memory once instead of three times.
 *
 * The reductions of plain arrays stream too: `moments_accumulate` (training forward) and
 * `grad_sums_accumulate` (backward) feed each chunk into running per-channel state in
 * the order the one-call `moments` and `grad_sums` kernels read the data, so the inputs
 * are read twice from the caller's arrays, as the resident path reads resident tensors
 * twice, and never copied whole. Those kernels combine fixed segments of the batch in
 * order (`reduction_segment_len`; the same bits on one thread or a pool of any size), so
 * the stream starts a fresh state for each segment and combines the segments in the
 * same order, on every build.
 *
 * The pieces are the data-parallel exports (`moments`, `normalize_f64_mean`,
 * `update_running`, `grad_sums`, `backward_apply`), which the whole-tensor kernels are
 * built from: `train_forward` is moments -> invStd -> running update -> normalise with
 * the f64 mean; `backward` is grad sums -> the dx pass with `count` values per channel.
 * @module
 */
import type { Chunk, Staging } from "../engine/staging.js";
import { atChannel as at, streamElementwise } from "../engine/staging.js";
import type { Dims, TensorLike } from "../engine/validate.js";


/** What the train-forward kernel returns (and the result type of batchNormTrain). */
export interface StreamedTrain {
  /** The output (the caller's `out`, or a new array). */
  y: Float32Array;
  /** Per-channel batch mean, rounded to f32 as the kernel saves it. */
  mean: Float32Array;
  /** Per-channel `1 / sqrt(biased variance + eps)`. */
  invStd: Float32Array;
}

/**
 * Training forward into a plain array (`out`, or a new one). Bit-identical to
 * `train_forward` on the same data: the same moments, `invStd = 1 / sqrt(m2 / n + eps)`
 * rounded once as the kernel does, the same running update and the same normalisation.
 */
export function trainStreamed(
  s: Staging, x: TensorLike, d: Dims,
  o: { weight?: TensorLike; bias?: TensorLike; runningMean?: TensorLike; runningVar?: TensorLike; z?: TensorLike; out?: Float32Array },
  k: { eps: number; momentum: number; convention: "pytorch" | "onnx"; relu: boolean },
): StreamedTrain {
  const g = s.engine.glue;
  const C = d.channels, count = d.perChannel;
  let st: Float64Array;
  if (x instanceof Float32Array) {
    // Two passes over the caller's array, as the resident path makes over a resident x:
    // the statistics streamed window by window, then the normalisation (below).
    st = streamedMoments(s, x, d);
  } else {
    const out = s.outputF64(2 * C);
    g.moments(s.input(x), d.outer, C, d.inner, out.ptr);
    st = out.result();
  }
  const stats = s.inputF64(st);
  const eps32 = Math.fround(k.eps); // the kernels take eps as f32
  const invStd = Float32Array.from(st.subarray(C), (m2) => 1 / Math.sqrt(m2 / count + eps32));
  const meanF64 = s.inputF64(st.subarray(0, C));
  const invP = s.input(invStd);
  const w = s.input(o.weight), b = s.input(o.bias);
  const y = o.out ?? new Float32Array(d.size);
  streamElementwise(s, d, [x, o.z], [y], (c, [xc, zc], [yc]) => {
    g.normalize_f64_mean(xc, yc, c.outer, c.channels, c.inner, at(w, c), at(b, c), at(meanF64, c, 8), at(invP, c), k.relu, zc);
  });
  // Running statistics last: everything that allocates (and could run out of memory) is
  // done, so a failed call leaves them as they were.
  if (o.runningMean !== undefined) {
    g.update_running(s.inout(o.runningMean), s.inout(o.runningVar), C, stats, count, k.momentum, k.convention === "onnx" ? 1 : 0);
  }
  s.commit();
  return { y, mean: Float32Array.from(st.subarray(0, C)), invStd };
}

/**
 * Per-channel `[mean.., m2..]` (f64) of a plain array, streamed through a window:
 * `moments_accumulate` merges each chunk's planes (or blocks of channels-last rows) into
 * a running `[count, mean, m2]` per channel of the current reduction segment, and
 * `moments_merge` adds each finished segment to the total, in the order the one-call
 * kernel merges them, so the result is the same bits.
 */
function streamedMoments(s: Staging, x: Float32Array, d: Dims): Float64Array {
  const g = s.engine.glue;
  const C = d.channels;
  const total = s.inputF64(new Float64Array(3 * C)); // all zero: no values yet
  const segment = s.inputF64(new Float64Array(3 * C));
  const blockRows = d.inner === 1 ? g.moment_block_rows(C) : 0;
  streamElementwise(s, d, [x], [], (c, [xc]) => {
    g.moments_accumulate(xc, c.outer, c.channels, c.inner, at(segment, c, 24));
    if (c.segmentEnd) {
      g.moments_merge(total, segment, C);
      new Float64Array(s.engine.memory.buffer, segment, 3 * C).fill(0);
    }
  }, blockRows, g.reduction_segment_len(d.outer, C, d.inner));
  const acc = new Float64Array(s.engine.memory.buffer, total, 3 * C);
  const st = new Float64Array(2 * C);
  for (let c = 0; c < C; c++) {
    st[c] = acc[3 * c + 1];
    st[C + c] = acc[3 * c + 2];
  }
  return st;
}

/**
 * Per-channel `[sum_dy.., sum_dy_xmu..]` (f64) of plain (or resident) `dy`, `x` and the
 * ReLU gate `y`, streamed through windows: `grad_sums_accumulate` feeds each chunk into a
 * running per-channel state of the current reduction segment in the order the one-call
 * `grad_sums` kernel reads the data, and each finished segment's sums are added to the
 * total in order, as that kernel adds them, so the result is the same bits.
 */
function streamedGradSums(s: Staging, dy: TensorLike, x: TensorLike, y: TensorLike | undefined, meanP: number, d: Dims): Float64Array {
  const g = s.engine.glue;
  const C = d.channels, slots = g.grad_sums_state_len();
  const state = s.inputF64(new Float64Array(slots * C)); // all zero: nothing fed yet
  const part = s.outputF64(2 * C);
  const total = new Float64Array(2 * C);
  const blockRows = d.inner === 1 ? g.moment_block_rows(C) : 0;
  streamElementwise(s, d, [dy, x, y], [], (c, [dyc, xc, yc]) => {
    g.grad_sums_accumulate(dyc, xc, c.outer, c.channels, c.inner, at(meanP, c), at(state, c, 8 * slots), yc);
    if (c.segmentEnd) {
      g.grad_sums_finish(state, d.outer, C, d.inner, meanP, part.ptr);
      const sums = new Float64Array(s.engine.memory.buffer, part.ptr, 2 * C);
      for (let i = 0; i < 2 * C; i++) total[i] += sums[i];
      new Float64Array(s.engine.memory.buffer, state, slots * C).fill(0);
    }
  }, blockRows, g.reduction_segment_len(d.outer, C, d.inner));
  return total;
}

/**
 * Training-mode backward into plain arrays (`dx`, and `dz` through a fused ReLU with a
 * residual). Bit-identical to `backward`: the same gradient sums, the same dx pass with
 * `count` values per channel, and `dWeight = sum(dy * xmu) * invStd`, `dBias = sum(dy)`
 * rounded once as the kernel does.
 */
export function backwardStreamed(
  s: Staging, dy: TensorLike, x: TensorLike, d: Dims,
  o: { weight?: TensorLike; mean: TensorLike; invStd: TensorLike; y?: TensorLike; out?: Float32Array; dz?: Float32Array },
): { dx: Float32Array; dWeight: Float32Array; dBias: Float32Array } {
  const g = s.engine.glue;
  const C = d.channels;
  const meanP = s.input(o.mean), invP = s.input(o.invStd), w = s.input(o.weight);
  let sm: Float64Array;
  if ([dy, x, o.y].some((t) => t instanceof Float32Array)) {
    // Two passes over the caller's arrays, as the resident path makes: the sums streamed
    // window by window, then the dx pass (below).
    sm = streamedGradSums(s, dy, x, o.y, meanP, d);
  } else {
    const sums = s.outputF64(2 * C);
    g.grad_sums(s.input(dy), s.input(x), d.outer, C, d.inner, meanP, sums.ptr, s.input(o.y));
    sm = sums.result();
  }
  // The dx pass reads [sum_dy.., sum_dy_xmu..] of its chunk's channels: one copy per
  // distinct channel run (a single one when chunks are whole samples or rows).
  const sumsAt = new Map<number, number>();
  const sumsFor = (c: Chunk) => {
    let p = sumsAt.get(c.channel0);
    if (p === undefined) {
      const part = new Float64Array(2 * c.channels);
      part.set(sm.subarray(c.channel0, c.channel0 + c.channels));
      part.set(sm.subarray(C + c.channel0, C + c.channel0 + c.channels), c.channels);
      p = s.inputF64(part);
      sumsAt.set(c.channel0, p);
    }
    return p;
  };
  const dx = o.out ?? new Float32Array(d.size);
  streamElementwise(s, d, [dy, x, o.y], [dx, o.dz], (c, [dyc, xc, yc], [dxc, dzc]) => {
    g.backward_apply(dyc, xc, dxc, c.outer, c.channels, c.inner, at(w, c), at(meanP, c), at(invP, c), sumsFor(c), d.perChannel, yc, dzc);
  });
  const inv = o.invStd instanceof Float32Array ? o.invStd : o.invStd.view;
  return {
    dx,
    dWeight: Float32Array.from(sm.subarray(C), (v, c) => v * inv[c]),
    dBias: Float32Array.from(sm.subarray(0, C)),
  };
}
