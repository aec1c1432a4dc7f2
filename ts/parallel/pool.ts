/**
 * {@link BatchNormPool}: data-parallel batch norm over N workers with exact global
 * statistics, as PyTorch's SyncBatchNorm does across GPUs.
 *
 * The batch is split along its first axis into N shards (uneven when N does not divide
 * it). Forward: every worker computes its shard's per-channel (count, mean, M2); the pool
 * merges them exactly with Chan et al.'s formula; every worker normalises its shard with
 * the global statistics. Backward: every worker computes `sum(dy)` and `sum(dy * (x - mean))`
 * on its shard; the pool adds them; every worker computes its `dx`. The result equals
 * single-process batch norm on the whole batch to float32 rounding, running statistics
 * included.
 *
 * The parameters, running statistics and gradients live here, on the calling thread
 * (plain `Float32Array`s, owned by the pool); workers hold only their shard between
 * forward and backward. A call that fails (a worker crashed or was terminated) rejects
 * with {@link WorkerError} and changes no state; the pool replaces dead workers before its
 * next call. After `dispose()` every call rejects at once.
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError, InvalidOptionError, StateError } from "../engine/errors.js";
import type { InitOptions, InitResult } from "../engine/loader.js";
import type { BatchNormOptions } from "../layers/batchnorm.js";
import { checkStateDict, makeStateDict, type StateDict } from "../layers/state.js";
import { WorkerHandle, WorkerError, isShared, send } from "./remote.js";
import { addGradSums, invStdOf, mergeMoments, type ShardGradSums, type ShardMoments } from "./shard.js";
import { resolveLayerOptions, stepMomentum, type LayerConfig } from "../layers/options.js";
import { checkData, checkTrainable, dimsOf, type Convention, type Layout } from "../engine/validate.js";

export interface PoolOptions extends Omit<BatchNormOptions, "engine"> {
  /** Number of workers (default 2). */
  workers?: number;
  /** What each worker loads (default: the best build; `threads` is per worker). */
  init?: InitOptions;
}

/** One worker's slice of the batch: elements `[start, start + len)`, `rows` along axis 0. */
interface Shard {
  start: number;
  len: number;
  rows: number;
}

interface Saved {
  shards: Shard[];
  count: number;
  mean: Float32Array;
  invStd: Float32Array;
  batchStats: boolean;
  size: number;
}

export class BatchNormPool {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly layout: Layout;
  readonly convention: Convention;
  training = true;
  numBatchesTracked = 0;
  /** Parameters, statistics and gradients: owned by the pool, on this thread. */
  readonly weight?: Float32Array;
  readonly bias?: Float32Array;
  readonly runningMean?: Float32Array;
  readonly runningVar?: Float32Array;
  readonly weightGrad?: Float32Array;
  readonly biasGrad?: Float32Array;

  readonly #config: LayerConfig;
  #workers: WorkerHandle[];
  #initOpts: InitOptions;
  #healing?: Promise<void>;
  #saved?: Saved;
  #disposed = false;
  /** What each worker loaded. */
  readonly info: InitResult;

  private constructor(cfg: LayerConfig, opts: PoolOptions, workers: WorkerHandle[], info: InitResult) {
    const numFeatures = cfg.numFeatures;
    ({ numFeatures: this.numFeatures, eps: this.eps, momentum: this.momentum, affine: this.affine } = cfg);
    ({ trackRunningStats: this.trackRunningStats, layout: this.layout, convention: this.convention } = cfg);
    this.#config = cfg;
    if (this.affine) {
      this.weight = new Float32Array(numFeatures).fill(1);
      this.bias = new Float32Array(numFeatures);
      this.weightGrad = new Float32Array(numFeatures);
      this.biasGrad = new Float32Array(numFeatures);
    }
    if (this.trackRunningStats) {
      this.runningMean = new Float32Array(numFeatures);
      this.runningVar = new Float32Array(numFeatures).fill(1);
    }
    this.#workers = workers;
    this.#initOpts = opts.init ?? {};
    this.info = info;
  }

  /** Starts `opts.workers` workers (default 2) and loads a wasm build in each. */
  static async create(numFeatures: number, opts: PoolOptions = {}): Promise<BatchNormPool> {
    const cfg = resolveLayerOptions(numFeatures, opts); // fail before starting workers
    const n = opts.workers ?? 2;
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidOptionError(`workers must be a positive integer, got ${String(n)}`);
    const started = await Promise.all(Array.from({ length: n }, () => WorkerHandle.spawn(opts.init ?? {})));
    return new BatchNormPool(cfg, opts, started.map((s) => s.handle), started[0].info);
  }

  get size(): number {
    return this.#workers.length;
  }

  /** Replaces dead workers; runs before every call. */
  async #ready(): Promise<WorkerHandle[]> {
    if (this.#disposed) throw new StateError("this BatchNormPool was disposed");
    if (this.#workers.some((w) => w.dead)) {
      this.#healing ??= (async () => {
        this.#workers = await Promise.all(this.#workers.map(async (w) => (w.dead ? (await WorkerHandle.spawn(this.#initOpts)).handle : w)));
      })().finally(() => (this.#healing = undefined));
      await this.#healing;
      if (this.#disposed) throw new StateError("this BatchNormPool was disposed");
    }
    return this.#workers;
  }

  /** Runs `f` on each shard's worker; on any failure, forgets the forward state and rethrows. */
  async #each<T>(workers: WorkerHandle[], f: (w: WorkerHandle, i: number) => Promise<T>): Promise<T[]> {
    try {
      return await Promise.all(workers.map(f));
    } catch (e) {
      this.#saved = undefined; // shards may be gone; backward must follow a new forward
      throw e;
    }
  }

  train(mode = true): this {
    this.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Forward over the whole batch, split across the workers. */
  async forward(x: Float32Array, shape: number[]): Promise<Float32Array> {
    const all = await this.#ready();
    const dims = dimsOf(shape, this.layout);
    checkData("x", x, shape, dims);
    if (dims.channels !== this.numFeatures) throw new ChannelMismatchError(`input has ${dims.channels} channels but the pool has numFeatures = ${this.numFeatures}`);
    const batchStats = this.training || !this.trackRunningStats;
    const updateRunning = this.training && this.trackRunningStats;
    if (batchStats) checkTrainable(shape, dims);

    // Shards along the first axis: sizes differ by at most one.
    const N = shape[0];
    const k = Math.min(all.length, N);
    const workers = all.slice(0, k);
    const shards = splitBatch(N, k, dims.size / N);
    const parts: ShardMoments[] = await this.#each(workers, (w, i) =>
      w.call((api) => api.shardMoments(send(shardData(x, shards[i]), true), [shards[i].rows, ...shape.slice(1)], this.layout)),
    );
    let mean: Float64Array;
    let invStd: Float32Array;
    let merged: ShardMoments | undefined;
    if (batchStats) {
      merged = mergeMoments(parts);
      mean = merged.mean;
      invStd = invStdOf(merged, this.eps);
    } else {
      mean = Float64Array.from(this.runningMean!);
      invStd = Float32Array.from(this.runningVar!, (v) => 1 / Math.sqrt(v + this.eps));
    }
    const ys = await this.#each(workers, (w) =>
      w.call((api) => api.shardNormalize({ weight: this.weight, bias: this.bias, mean, invStd })),
    );
    if (updateRunning) {
      const momentum = stepMomentum(this.#config, this.numBatchesTracked);
      const r = await this.#each([workers[0]], (w) =>
        w.call((api) => api.updateRunning(this.runningMean!.slice(), this.runningVar!.slice(), merged!, momentum, this.convention)),
      );
      this.runningMean!.set(r[0].rm);
      this.runningVar!.set(r[0].rv);
      this.numBatchesTracked += 1;
    }
    const y = new Float32Array(dims.size);
    ys.forEach((part, i) => y.set(part, shards[i].start));
    this.#saved = { shards, count: dims.perChannel, mean: Float32Array.from(mean), invStd, batchStats, size: dims.size };
    return y;
  }

  /** Backward of the last forward: returns `dx`, accumulates `weightGrad`/`biasGrad`. */
  async backward(dy: Float32Array): Promise<Float32Array> {
    const all = await this.#ready();
    const s = this.#saved;
    if (!s) throw new StateError("backward() needs a successful forward() first");
    if (!(dy instanceof Float32Array) || dy.length !== s.size) {
      throw new InvalidArgumentError(`dy must be a Float32Array of ${s.size} elements`);
    }
    const workers = all.slice(0, s.shards.length);
    const parts: ShardGradSums[] = await this.#each(workers, (w, i) => w.call((api) => api.shardGradSums(send(shardData(dy, s.shards[i]), true))));
    const total = addGradSums(parts);
    // Eval-mode statistics are constants: dx = dy * weight * invStd (zero sums in the fold).
    const sums = s.batchStats ? total : { sumDy: new Float64Array(this.numFeatures), sumDyXmu: new Float64Array(this.numFeatures) };
    const dxs = await this.#each(workers, (w) => w.call((api) => api.shardBackwardApply({ weight: this.weight, sums, count: s.count })));
    if (this.affine) {
      for (let c = 0; c < this.numFeatures; c++) {
        this.weightGrad![c] += total.sumDyXmu[c] * s.invStd[c];
        this.biasGrad![c] += total.sumDy[c];
      }
    }
    const dx = new Float32Array(s.size);
    dxs.forEach((part, i) => dx.set(part, s.shards[i].start));
    return dx;
  }

  zeroGrad(): void {
    this.weightGrad?.fill(0);
    this.biasGrad?.fill(0);
  }

  /** A copy of the state, with PyTorch's names. */
  stateDict(): StateDict {
    return makeStateDict(this.#config, this);
  }

  /** Loads a state dict, checked in full first (as `BatchNorm.loadStateDict`). */
  loadStateDict(sd: StateDict, { strict = true }: { strict?: boolean } = {}): void {
    if (this.#disposed) throw new StateError("this BatchNormPool was disposed");
    checkStateDict(sd, this.#config, strict, "pool");
    if (sd.weight && this.weight) this.weight.set(sd.weight);
    if (sd.bias && this.bias) this.bias.set(sd.bias);
    if (sd.running_mean && this.runningMean) this.runningMean.set(sd.running_mean);
    if (sd.running_var && this.runningVar) this.runningVar.set(sd.running_var);
    if (sd.num_batches_tracked !== undefined && this.trackRunningStats) this.numBatchesTracked = Number(sd.num_batches_tracked);
  }

  /** Terminates every worker; later calls reject with StateError at once. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const w of this.#workers) w.terminate("the pool was disposed");
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** For tests and fault drills: terminates worker `i` as if it had died. */
  killWorker(i: number): void {
    this.#workers[i]?.terminate(`worker ${i} was killed`);
  }
}

/** `n` rows of `per` elements over `k` shards whose row counts differ by at most one. */
function splitBatch(n: number, k: number, per: number): Shard[] {
  const shards: Shard[] = [];
  let row = 0;
  for (let i = 0; i < k; i++) {
    const rows = Math.floor(n / k) + (i < n % k ? 1 : 0);
    shards.push({ start: row * per, len: rows * per, rows });
    row += rows;
  }
  return shards;
}

/** A shard's data: a view when `a` is shared (the worker reads it in place), otherwise a
 * copy whose buffer can be transferred. */
function shardData(a: Float32Array, s: Shard): Float32Array {
  return isShared(a) ? a.subarray(s.start, s.start + s.len) : a.slice(s.start, s.start + s.len);
}

export { WorkerError };
