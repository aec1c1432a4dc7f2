/**
 * The training step cut at its reductions, for data-parallel ("SyncBN") training: each
 * worker runs the shard functions on its slice of the batch; whoever coordinates merges
 * the partial results exactly (Chan et al. for moments, plain sums for gradients) and
 * hands the global values back. PyTorch's SyncBatchNorm does the same across GPUs.
 *
 * These trust their caller (the pool validates the whole batch once); they are exported
 * for people who build their own coordination.
 * @module
 */
import type { Engine } from "../engine/loader.js";
import { Staging } from "../engine/staging.js";
import { dimsOf, type Convention, type Layout, type TensorLike } from "../engine/validate.js";
import { maskLengthOf } from "../layers/relu-mask.js";

/** Per-channel count, mean and M2 (sum of squared deviations) of a shard. */
export interface ShardMoments {
  /** Values per channel. */
  count: number;
  /** Per-channel mean. */
  mean: Float64Array;
  /** Per-channel sum of squared deviations from the mean. */
  m2: Float64Array;
}

/** The {@link ShardMoments} of one shard, computed by the kernels in f64. */
export function shardMoments(engine: Engine, x: TensorLike, shape: readonly number[], layout: Layout): ShardMoments {
  const d = dimsOf(shape, layout);
  const s = new Staging(engine);
  try {
    const out = s.outputF64(2 * d.channels);
    engine.glue.moments(s.input(x), d.outer, d.channels, d.inner, out.ptr);
    const r = out.result();
    return { count: d.perChannel, mean: r.slice(0, d.channels), m2: r.slice(d.channels) };
  } finally {
    s.release();
  }
}

/** Chan, Golub & LeVeque's exact merge of moments over disjoint shards (uneven is fine). */
export function mergeMoments(parts: readonly ShardMoments[]): ShardMoments {
  const C = parts[0].mean.length;
  const acc: ShardMoments = { count: 0, mean: new Float64Array(C), m2: new Float64Array(C) };
  for (const p of parts) {
    if (p.count === 0) continue;
    const n = acc.count + p.count;
    for (let c = 0; c < C; c++) {
      const delta = p.mean[c] - acc.mean[c];
      acc.mean[c] += delta * (p.count / n);
      acc.m2[c] += p.m2[c] + delta * delta * ((acc.count * p.count) / n);
    }
    acc.count = n;
  }
  return acc;
}

/**
 * `y = (x - mean) * invStd * weight + bias` with global statistics (f64 mean); with
 * `relu`, `y = relu(that + z)` (`z` optional), writing the ReLU's bit mask to `outMask`
 * when given (`reluMaskLength` elements), as the fused forward does.
 */
export function shardNormalize(
  engine: Engine, x: TensorLike, shape: readonly number[], layout: Layout,
  p: {
    weight?: TensorLike; bias?: TensorLike; mean: Float64Array; invStd: Float32Array; out?: TensorLike;
    relu?: boolean; z?: TensorLike; outMask?: TensorLike;
  },
) {
  const d = dimsOf(shape, layout);
  const s = new Staging(engine);
  try {
    const y = s.output(d.size, p.out);
    const mask = p.outMask === undefined ? undefined : s.output(maskLengthOf(d), p.outMask);
    engine.glue.normalize_f64_mean(
      s.input(x), y.ptr, d.outer, d.channels, d.inner, s.input(p.weight), s.input(p.bias), s.inputF64(p.mean), s.input(p.invStd),
      p.relu ?? false, s.input(p.z), mask?.ptr ?? 0,
    );
    mask?.result();
    return y.result();
  } finally {
    s.release();
  }
}

/** Per-channel `sum(dy)` and `sum(dy * (x - mean))` of a shard, against the global mean. */
export interface ShardGradSums {
  /** Per-channel `sum(dy)`. */
  sumDy: Float64Array;
  /** Per-channel `sum(dy * (x - mean))`. */
  sumDyXmu: Float64Array;
}

/**
 * The {@link ShardGradSums} of one shard, computed by the kernels in f64; through a fused
 * ReLU when `mask` (the forward's bit mask) is given.
 */
export function shardGradSums(
  engine: Engine, dy: TensorLike, x: TensorLike, shape: readonly number[], layout: Layout, mean: Float32Array, mask?: TensorLike,
): ShardGradSums {
  const d = dimsOf(shape, layout);
  const s = new Staging(engine);
  try {
    const out = s.outputF64(2 * d.channels);
    engine.glue.grad_sums(s.input(dy), s.input(x), d.outer, d.channels, d.inner, s.input(mean), out.ptr, 0, s.input(mask));
    const r = out.result();
    return { sumDy: r.slice(0, d.channels), sumDyXmu: r.slice(d.channels) };
  } finally {
    s.release();
  }
}

/** The sums over all shards (elementwise addition of the parts). */
export function addGradSums(parts: readonly ShardGradSums[]): ShardGradSums {
  const C = parts[0].sumDy.length;
  const acc = { sumDy: new Float64Array(C), sumDyXmu: new Float64Array(C) };
  for (const p of parts) {
    for (let c = 0; c < C; c++) {
      acc.sumDy[c] += p.sumDy[c];
      acc.sumDyXmu[c] += p.sumDyXmu[c];
    }
  }
  return acc;
}

/**
 * `dx` of a shard from the global sums over `count` values per channel; through a fused
 * ReLU when `mask` is given, then also writing the ReLU's gradient (the residual's `dz`)
 * to `outZ` when given.
 */
export function shardBackwardApply(
  engine: Engine, dy: TensorLike, x: TensorLike, shape: readonly number[], layout: Layout,
  p: { weight?: TensorLike; mean: Float32Array; invStd: Float32Array; sums: ShardGradSums; count: number; out?: TensorLike; mask?: TensorLike; outZ?: TensorLike },
) {
  const d = dimsOf(shape, layout);
  const s = new Staging(engine);
  try {
    const dx = s.output(d.size, p.out);
    const dz = p.outZ === undefined ? undefined : s.output(d.size, p.outZ);
    const sums = new Float64Array(2 * d.channels);
    sums.set(p.sums.sumDy);
    sums.set(p.sums.sumDyXmu, d.channels);
    engine.glue.backward_apply(
      s.input(dy), s.input(x), dx.ptr, d.outer, d.channels, d.inner,
      s.input(p.weight), s.input(p.mean), s.input(p.invStd), s.inputF64(sums), p.count, 0, dz?.ptr ?? 0, s.input(p.mask),
    );
    dz?.result();
    return dx.result();
  } finally {
    s.release();
  }
}

/** Running statistics update from merged batch moments (the kernels' own formula). */
export function updateRunning(
  engine: Engine, runningMean: TensorLike, runningVar: TensorLike, m: ShardMoments, momentum: number, convention: Convention,
): void {
  const C = m.mean.length;
  const s = new Staging(engine);
  try {
    const stats = new Float64Array(2 * C);
    stats.set(m.mean);
    stats.set(m.m2, C);
    engine.glue.update_running(s.inout(runningMean), s.inout(runningVar), C, s.inputF64(stats), m.count, momentum, convention === "onnx" ? 1 : 0);
    s.commit();
  } finally {
    s.release();
  }
}

/** `1 / sqrt(M2 / count + eps)` per channel, in f64, rounded once. */
export function invStdOf(m: ShardMoments, eps: number): Float32Array {
  // A loop, not Float32Array.from(m.m2, fn): that walks an iterator and allocated more
  // than everything else a SyncBatchNorm step does (a sampling heap profile of the MNIST
  // example: ~16 of its ~90 KB per step).
  const out = new Float32Array(m.m2.length);
  for (let c = 0; c < out.length; c++) out[c] = 1 / Math.sqrt(m.m2[c] / m.count + eps);
  return out;
}
