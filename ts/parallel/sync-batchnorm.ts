/**
 * {@link SyncBatchNorm}: batch norm whose statistics span every rank of a process group,
 * as PyTorch's `nn.SyncBatchNorm`. Each worker holds a replica of the model and its own
 * slice of every batch (uneven slices are fine); only per-channel numbers cross:
 * - forward (training): every rank's per-channel (count, mean, M2) is all-gathered and
 *   merged exactly in rank order (Chan et al.), so every rank normalises with the
 *   statistics of the whole batch and updates identical running statistics (unbiased
 *   variance over the global count), equal to `BatchNorm` on the concatenated batch;
 * - backward: `sum(dy)` and `sum(dy * (x - mean))` are all-reduced, so `dx` is the
 *   whole batch's; `weightGrad`/`biasGrad` get this rank's share (as PyTorch: the
 *   gradient all-reduce of data-parallel training adds them up, see `allReduceGradients`);
 * - eval: no collective, the running statistics (as PyTorch);
 * - `activation: "relu"` (and a residual `z` in `forward`) fuse as on `BatchNorm`: the
 *   normalise pass writes the ReLU's bit mask, and both backward passes read it.
 *
 * Forward and backward are async (they wait for the other ranks). Parameters, running
 * statistics and gradients are {@link WasmTensor}s, as on `BatchNorm`.
 * @module
 */
import { ChannelMismatchError, InvalidOptionError, ShapeError, StateError, TooFewValuesError } from "../engine/errors.js";
import type { Engine } from "../engine/loader.js";
import { OwnedTensors } from "../engine/owned.js";
import { WasmTensor } from "../engine/tensor.js";
import { checkData, checkEps, checkNoAlias, checkOptionKeys, dimsOf, optionKeys, type TensorLike } from "../engine/validate.js";
import { BatchNorm, type BatchNormOptions, type StateDict } from "../layers/batchnorm.js";
import type { Activation } from "../layers/functional.js";
import { maskLengthOf } from "../layers/relu-mask.js";
import { stepMomentum, type LayerConfig } from "../layers/options.js";
import type { Communicator } from "./communicator.js";
import { invStdOf, mergeMoments, shardBackwardApply, shardGradSums, shardMoments, shardNormalize, updateRunning, type ShardMoments } from "./shard.js";

/** `BatchNorm`'s options, fused activation included; no renorm (yet): `renorm` is an unknown option here. */
type SyncBatchNormOptions = Omit<BatchNormOptions, "renorm">;

const OPTION_KEYS = optionKeys<SyncBatchNormOptions>({
  eps: true, momentum: true, affine: true, trackRunningStats: true, layout: true, convention: true, engine: true, activation: true,
});

/** Options of {@link SyncBatchNorm.forward}. */
export interface SyncForwardOptions {
  /** Residual input added before the activation: `y = act(BN(x) + z)`; `backward` then also gives its gradient ({@link SyncBatchNorm.residualGrad}). */
  z?: TensorLike;
  /** Where to write `y` (a `Float32Array` or `WasmTensor` of the input's size); `forward` then returns it. Without it, a new `Float32Array`. */
  out?: TensorLike;
}

/** Options of {@link SyncBatchNorm.backward}. */
export interface SyncBackwardOptions {
  /** Where to write `dx`; `backward` then returns it. Without it, a new `Float32Array`. */
  out?: TensorLike;
}

const FORWARD_KEYS = optionKeys<SyncForwardOptions>({ z: true, out: true });
const BACKWARD_KEYS = optionKeys<SyncBackwardOptions>({ out: true });

/** What backward needs from a synchronised forward. */
interface Saved {
  x: WasmTensor;
  shape: number[];
  mean: Float32Array;
  invStd: Float32Array;
  /** Values per channel over all ranks. */
  count: number;
  /** The fused ReLU's bit mask (module-owned), when the layer has one. */
  mask?: WasmTensor;
  /** Whether the forward had a residual `z`. */
  residual: boolean;
}

/**
 * Batch norm over the whole batch of a process group (PyTorch's `nn.SyncBatchNorm`): each
 * rank passes its own rows; statistics and gradient sums are combined across ranks.
 * @example
 * const comm = await joinProcessGroup();
 * const bn = new SyncBatchNorm(64, comm, { momentum: 0.1 });
 * const y = await bn.forward(myRows, [myRows.length / (64 * 28 * 28), 64, 28, 28]);
 * const dx = await bn.backward(dy);
 * await allReduceGradients(comm, [bn.weightGrad!, bn.biasGrad!]);
 */
export class SyncBatchNorm {
  /** The rank's replica of the layer: parameters, statistics, gradients, eval mode. */
  readonly #bn: BatchNorm;
  readonly #config: LayerConfig;
  /** The layer's own scratch (the input copy and the ReLU's mask), freed by `dispose()`. */
  readonly #owned: OwnedTensors;
  #input?: WasmTensor;
  /** The fused ReLU's mask of the last synchronised forward. */
  #mask?: WasmTensor;
  /** Set by a synchronised forward; undefined after a local (eval) one. */
  #saved?: Saved;
  #residualGrad?: Float32Array;

  /**
   * @param comm this rank's communicator (`await joinProcessGroup()`)
   * @example
   * const comm = await joinProcessGroup();
   * const bn = new SyncBatchNorm(64, comm);
   * const y = await bn.forward(xShard, [rows, 64, 28, 28]);
   */
  constructor(numFeatures: number, readonly comm: Communicator, opts: SyncBatchNormOptions = {}) {
    checkOptionKeys("SyncBatchNorm", opts, OPTION_KEYS);
    this.#bn = new BatchNorm(numFeatures, opts);
    this.#owned = new OwnedTensors(this.#bn.engine);
    const b = this.#bn;
    this.#config = {
      numFeatures, eps: b.eps, momentum: b.momentum, affine: b.affine, trackRunningStats: b.trackRunningStats,
      layout: b.layout, convention: b.convention,
    };
  }

  /**
   * PyTorch's `convert_sync_batchnorm` for one layer: a SyncBatchNorm with `bn`'s options
   * and a copy of its state (parameters, running statistics, count, mode). `bn` is left
   * as it is (dispose it if it is no longer needed).
   */
  static from(bn: BatchNorm, comm: Communicator): SyncBatchNorm {
    if (bn.renorm !== undefined) throw new InvalidOptionError("SyncBatchNorm has no Batch Renormalization; this BatchNorm has renorm");
    const s = new SyncBatchNorm(bn.numFeatures, comm, {
      eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats,
      layout: bn.layout, convention: bn.convention, engine: bn.engine, activation: bn.activation,
    });
    s.loadStateDict(bn.stateDict());
    s.train(bn.training);
    return s;
  }

  /** Channels. */
  get numFeatures(): number { return this.#config.numFeatures; }
  /** Added to the variance. */
  get eps(): number { return this.#config.eps; }
  /** Running-statistics momentum (`null`: cumulative average). */
  get momentum(): number | null { return this.#config.momentum; }
  /** Whether there are a learnable `weight` and `bias`. */
  get affine(): boolean { return this.#config.affine; }
  /** Whether running statistics are kept. */
  get trackRunningStats(): boolean { return this.#config.trackRunningStats; }
  /** Where the channel axis is. */
  get layout(): LayerConfig["layout"] { return this.#config.layout; }
  /** Running-statistics convention. */
  get convention(): LayerConfig["convention"] { return this.#config.convention; }
  /** The wasm build this layer runs on. */
  get engine(): Engine { return this.#bn.engine; }
  /** The fused activation (`"none"` or `"relu"`). */
  get activation(): Activation { return this.#bn.activation; }
  /** The residual's gradient from the last `backward` after a forward with `z` (as `BatchNorm.residualGrad`). */
  get residualGrad(): Float32Array | undefined { return this.#residualGrad; }
  /** Training mode (synchronised statistics) or eval mode. */
  get training(): boolean { return this.#bn.training; }
  /** Training forward passes seen (the same on every rank). */
  get numBatchesTracked(): number { return this.#bn.numBatchesTracked; }
  /** Scale per channel (affine only). */
  get weight(): WasmTensor | undefined { return this.#bn.weight; }
  /** Shift per channel (affine only). */
  get bias(): WasmTensor | undefined { return this.#bn.bias; }
  /** Running mean of the whole batches (identical on every rank). */
  get runningMean(): WasmTensor | undefined { return this.#bn.runningMean; }
  /** Running (unbiased) variance of the whole batches (identical on every rank). */
  get runningVar(): WasmTensor | undefined { return this.#bn.runningVar; }
  /** This rank's share of the weight gradient (all-reduce with sum for the batch's). */
  get weightGrad(): WasmTensor | undefined { return this.#bn.weightGrad; }
  /** This rank's share of the bias gradient. */
  get biasGrad(): WasmTensor | undefined { return this.#bn.biasGrad; }

  /** Training mode (statistics synchronised over the group) or eval mode. Returns `this`. */
  train(mode = true): this {
    this.#bn.train(mode);
    return this;
  }

  /** Eval mode: running statistics, no collectives. Returns `this`. */
  eval(): this {
    return this.train(false);
  }

  /**
   * Normalises this rank's slice `x` of the batch (then adds `z` and applies the fused
   * activation). In training mode every rank of the group must call it (with its own
   * slice; any number of rows, the same channels). With `out`, `y` is written there (no
   * allocation per step) and `out` is returned; otherwise a new `Float32Array`.
   */
  forward<T extends TensorLike>(x: TensorLike, shape: readonly number[], opts: SyncForwardOptions & { out: T }): Promise<T>;
  forward(x: TensorLike, shape: readonly number[], opts?: SyncForwardOptions): Promise<Float32Array>;
  async forward(x: TensorLike, shape: readonly number[], opts: SyncForwardOptions = {}): Promise<TensorLike> {
    checkOptionKeys("forward", opts, FORWARD_KEYS);
    const bn = this.#bn;
    if (!bn.training) {
      this.#saved = undefined;
      this.#residualGrad = undefined;
      const y = bn.forward(x, shape, { z: opts.z, out: opts.out });
      return opts.out ?? (y instanceof WasmTensor ? y.toArray() : y);
    }
    if (bn.disposed) throw new StateError("this SyncBatchNorm was disposed");
    if (!Array.isArray(shape)) throw new ShapeError("shape must be an array of integers");
    const dims = dimsOf(shape, this.layout);
    if (dims.channels !== this.numFeatures) {
      throw new ChannelMismatchError(`input has ${dims.channels} channels but the module has numFeatures = ${this.numFeatures}`);
    }
    checkData("x", x, shape, dims);
    if (opts.z !== undefined) checkData("z", opts.z, shape, dims);
    if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
    checkNoAlias("out", opts.out, { x, z: opts.z, weight: bn.weight, bias: bn.bias, runningMean: bn.runningMean, runningVar: bn.runningVar });
    checkEps(this.eps, true);
    const engine = this.engine;
    const C = this.numFeatures;
    const mine = shardMoments(engine, x, shape, this.layout);
    const packed = new Float64Array(1 + 2 * C);
    packed[0] = mine.count;
    packed.set(mine.mean, 1);
    packed.set(mine.m2, 1 + C);
    const parts: ShardMoments[] = (await this.comm.allGather(packed)).map((p) => ({
      count: p[0], mean: p.subarray(1, 1 + C), m2: p.subarray(1 + C),
    }));
    const merged = mergeMoments(parts);
    if (merged.count < 2) {
      throw new TooFewValuesError(`expected more than 1 value per channel when training, got ${merged.count} over the ${this.comm.worldSize} rank(s)`);
    }
    const invStd = invStdOf(merged, this.eps);
    const xs = this.#keep(x);
    const relu = this.activation === "relu";
    const mask = relu ? this.#keptMask(maskLengthOf(dims)) : undefined;
    const y = shardNormalize(engine, xs, shape, this.layout, {
      weight: bn.weight, bias: bn.bias, mean: merged.mean, invStd, relu, z: opts.z, outMask: mask, out: opts.out,
    });
    if (this.trackRunningStats) {
      updateRunning(engine, bn.runningMean!, bn.runningVar!, merged, stepMomentum(this.#config, bn.numBatchesTracked), this.convention);
      bn.numBatchesTracked += 1;
    }
    this.#saved = { x: xs, shape: [...shape], mean: Float32Array.from(merged.mean), invStd, count: merged.count, mask, residual: opts.z !== undefined };
    this.#residualGrad = undefined;
    return y;
  }

  /** Module-owned memory for the fused ReLU's mask of `size` elements. */
  #keptMask(size: number): WasmTensor {
    this.#mask = this.#owned.sized(this.#mask, size);
    return this.#mask;
  }

  /** The input as a resident tensor (a module-owned copy of a Float32Array). */
  #keep(x: TensorLike): WasmTensor {
    if (x instanceof WasmTensor) return x;
    this.#input = this.#owned.sized(this.#input, x.length);
    this.#input.view.set(x);
    return this.#input;
  }

  /**
   * Gradient of the last forward: returns this rank's `dx` (of the whole batch's loss)
   * and adds this rank's share to `weightGrad`/`biasGrad`. After a training forward every
   * rank must call it. With `out`, `dx` is written there and `out` is returned.
   */
  backward<T extends TensorLike>(dy: TensorLike, opts: SyncBackwardOptions & { out: T }): Promise<T>;
  backward(dy: TensorLike, opts?: SyncBackwardOptions): Promise<Float32Array>;
  async backward(dy: TensorLike, opts: SyncBackwardOptions = {}): Promise<TensorLike> {
    checkOptionKeys("backward", opts, BACKWARD_KEYS);
    const s = this.#saved;
    if (!s) {
      const dx = this.#bn.backward(dy, { out: opts.out });
      const dz = this.#bn.residualGrad;
      this.#residualGrad = dz instanceof WasmTensor ? dz.toArray() : dz;
      return opts.out ?? (dx instanceof WasmTensor ? dx.toArray() : dx);
    }
    if (this.#bn.disposed) throw new StateError("this SyncBatchNorm was disposed");
    if (s.x.freed) throw new StateError("the input of the last forward() was freed before backward()");
    const dims = dimsOf(s.shape, this.layout);
    checkData("dy", dy, s.shape, dims);
    if (opts.out !== undefined) checkData("out", opts.out, s.shape, dims);
    checkNoAlias("out", opts.out, { dy, x: s.x, weight: this.#bn.weight, mask: s.mask });
    const engine = this.engine;
    const C = this.numFeatures;
    const local = shardGradSums(engine, dy, s.x, s.shape, this.layout, s.mean, s.mask);
    const total = new Float64Array(2 * C);
    total.set(local.sumDy);
    total.set(local.sumDyXmu, C);
    await this.comm.allReduce(total);
    const sums = { sumDy: total.subarray(0, C), sumDyXmu: total.subarray(C) };
    // The residual's gradient: the ReLU's gradient, written by the dx pass (without a
    // ReLU it is dy itself).
    const dz = s.residual && s.mask ? new Float32Array(dy.length) : undefined;
    const dx = shardBackwardApply(engine, dy, s.x, s.shape, this.layout, {
      weight: this.#bn.weight, mean: s.mean, invStd: s.invStd, sums, count: s.count, mask: s.mask, outZ: dz, out: opts.out,
    });
    this.#residualGrad = s.residual ? (dz ?? (dy instanceof WasmTensor ? dy.toArray() : dy.slice())) : undefined;
    if (this.affine) {
      const wg = this.#bn.weightGrad!.view;
      const bg = this.#bn.biasGrad!.view;
      for (let c = 0; c < C; c++) {
        wg[c] += local.sumDyXmu[c] * s.invStd[c];
        bg[c] += local.sumDy[c];
      }
    }
    return dx;
  }

  /** Sets `weightGrad` and `biasGrad` to zero. */
  zeroGrad(): void {
    this.#bn.zeroGrad();
  }

  /** A copy of the state, with PyTorch's names (the same on every rank). */
  stateDict(): StateDict {
    return this.#bn.stateDict();
  }

  /** Loads a state dict (checked in full first, as `BatchNorm.loadStateDict`); load the same one on every rank. */
  loadStateDict(sd: StateDict, opts: { strict?: boolean } = {}): void {
    this.#bn.loadStateDict(sd, opts);
  }

  /** Frees the layer's wasm buffers. Idempotent. */
  dispose(): void {
    this.#owned.freeAll();
    this.#input = undefined;
    this.#mask = undefined;
    this.#saved = undefined;
    this.#bn.dispose();
  }

  /** `using bn = new SyncBatchNorm(...)` disposes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
