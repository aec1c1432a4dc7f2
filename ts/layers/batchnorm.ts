/**
 * `BatchNorm` modules in the shape of PyTorch's `nn.BatchNorm1d/2d/3d`: parameters,
 * running statistics, train/eval modes, forward/backward with gradient accumulation, and
 * state dicts with PyTorch's names.
 *
 * Buffer ownership: every tensor property (`weight`, `bias`, `runningMean`, `runningVar`,
 * `weightGrad`, `biasGrad`) is a {@link WasmTensor} owned by the module. Read or write it
 * through `.view` (re-read `.view` after any call: wasm memory may have grown), never
 * `free()` it; `dispose()` frees them all. A module that is dropped without `dispose()`
 * is freed by the tensors' FinalizationRegistry once it is garbage collected.
 *
 * The input of `forward` is kept for `backward`: a `Float32Array` input is copied into
 * module-owned wasm memory (so the caller may reuse the array); a `WasmTensor` input is
 * kept by reference, so do not modify or free it before `backward`. With
 * `activation: "relu"` the module keeps the ReLU's 1-bit mask (`y > 0`, written by the
 * forward's normalisation pass, 1/32 of the output's bytes) in module-owned memory for
 * the backward; the output itself is not kept.
 * @module
 */
import { ChannelMismatchError, ShapeError, StateError } from "../engine/errors.js";
import { resolveLayerOptions, stepMomentum, type LayerConfig, type LayerOptions } from "./options.js";
import { checkStateDict, makeStateDict, stateFromSafetensors, stateKeysOf, stateToSafetensors, type StateDict } from "./state.js";
import { batchNormBackwardOn, batchNormEvalOn, batchNormTrainOn, checkActivation, type Activation, type Output } from "./functional.js";
import { batchRenormBackward, batchRenormTrain, checkRenorm, type RenormBounds } from "./renorm.js";
import { InvalidOptionError } from "../engine/errors.js";
import { getEngine, type Engine } from "../engine/loader.js";
import { WasmTensor } from "../engine/tensor.js";
import { OwnedTensors } from "../engine/owned.js";
import { engineForPlain } from "../engine/staging.js";
import { maskLengthOf } from "./relu-mask.js";
import { checkData, checkEps, checkNoAlias, checkOptionKeys, checkTrainable, dimsOf, optionKeys, type Convention, type Layout, type TensorLike } from "../engine/validate.js";

/** Options of the {@link BatchNorm} modules' constructors (PyTorch's keyword arguments, plus `layout`, `convention`, `engine`). */
export interface BatchNormOptions extends LayerOptions {
  /** The build to run on (default: the one `init()` loaded). */
  engine?: Engine;
  /**
   * `"relu"`: the module is BN followed by a ReLU, fused into the same passes forward and
   * backward (`forward`'s `z` adds a residual before it). Default `"none"`.
   */
  activation?: Activation;
  /**
   * Batch Renormalization (Ioffe 2017): training outputs corrected towards the running
   * statistics by r and d, clipped to `[1/rMax, rMax]` and `[-dMax, dMax]` (see
   * {@link batchRenormTrain}). Needs `trackRunningStats`, the `"pytorch"` convention and no
   * activation. The bounds can change between steps (`module.renorm = schedule(step)`, see
   * {@link renormSchedule}). Default: none (plain batch norm).
   */
  renorm?: RenormBounds;
}

/** Options of {@link BatchNorm.forward}. */
export interface ForwardOptions {
  /** Where to write `y`. */
  out?: TensorLike;
  /** Residual input added before the activation: `y = act(BN(x) + z)`; `backward` then also gives its gradient. */
  z?: TensorLike;
}

/** Options of {@link BatchNorm.backward}. */
export interface ModuleBackwardOptions {
  /** Where to write `dx`. */
  out?: TensorLike;
  /** Where to write `dz` when the forward had a residual `z` (see {@link BatchNorm.residualGrad}). */
  outZ?: TensorLike;
}

const MODULE_KEYS = optionKeys<BatchNormOptions>({
  eps: true, momentum: true, affine: true, trackRunningStats: true, layout: true, convention: true, engine: true, activation: true, renorm: true,
});
const FORWARD_KEYS = optionKeys<ForwardOptions>({ out: true, z: true });
const BACKWARD_KEYS = optionKeys<ModuleBackwardOptions>({ out: true, outZ: true });

interface Saved {
  x: WasmTensor;
  shape: number[];
  mean: WasmTensor;
  invStd: WasmTensor;
  /** true: batch statistics (gradients flow through them); false: running statistics. */
  batchStats: boolean;
  /** The ReLU's bit mask, kept for its backward (with `activation: "relu"`). */
  mask?: WasmTensor;
  /** The forward had a residual `z`. */
  residual: boolean;
  /** Batch Renormalization's r and d of the forward (constants in backward). */
  renorm?: { r: Float32Array; d: Float32Array };
}

/**
 * A batch-normalisation layer of any rank >= 2 (PyTorch's `_BatchNorm`); use
 * {@link BatchNorm1d}, {@link BatchNorm2d} or {@link BatchNorm3d} for the rank checks.
 *
 * @example
 * ```ts
 * await init();
 * const bn = new BatchNorm2d(16);                 // weight 1, bias 0, running stats 0 / 1
 * const y = bn.forward(x, [32, 16, 28, 28]);      // training mode: batch statistics
 * const dx = bn.backward(dy);                     // accumulates weightGrad / biasGrad
 * // ... optimiser step on bn.weight!.view and bn.bias!.view, then bn.zeroGrad()
 * bn.eval();
 * const yEval = bn.forward(xTest, [1, 16, 28, 28]); // running statistics
 * bn.dispose();
 * ```
 */
export class BatchNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static readonly layerName: string = "BatchNorm";
  /** Channels (C). */
  readonly numFeatures: number;
  /** Added to the variance before the square root. */
  readonly eps: number;
  /** Running-statistics momentum, or `null` for a cumulative moving average. */
  readonly momentum: number | null;
  /** Whether the layer has learnable `weight` and `bias`. */
  readonly affine: boolean;
  /** Whether the layer keeps running statistics. */
  readonly trackRunningStats: boolean;
  /** Where the channel axis is: `"NCHW"` (second) or `"NHWC"` (last). */
  readonly layout: Layout;
  /** How running statistics are updated: `"pytorch"` or `"onnx"` (see {@link TrainOptions.convention}). */
  readonly convention: Convention;
  /** The fused activation (`"none"` or `"relu"`). */
  readonly activation: Activation;
  /** The build whose memory holds the module's tensors. */
  readonly engine: Engine;
  /** Training mode (batch statistics, running statistics updated) or eval mode. */
  training = true;
  /** Training forward passes seen (PyTorch's `num_batches_tracked`). */
  numBatchesTracked = 0;

  readonly #config: LayerConfig;
  readonly #owned: OwnedTensors;
  #weight?: WasmTensor;
  #bias?: WasmTensor;
  #runningMean?: WasmTensor;
  #runningVar?: WasmTensor;
  #weightGrad?: WasmTensor;
  #biasGrad?: WasmTensor;
  #savedMean: WasmTensor;
  #savedInvStd: WasmTensor;
  #inputCopy?: WasmTensor; // reused between steps while the size stays the same
  #maskCopy?: WasmTensor; // likewise, for the kept mask of a fused ReLU
  // The same two in the threads build's unshared companion (see #callEngine).
  #unshared?: { owned: OwnedTensors; input?: WasmTensor; mask?: WasmTensor };
  #saved?: Saved;
  #residualGrad?: Output;
  #renorm?: RenormBounds;
  #disposed = false;

  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    checkOptionKeys((new.target as typeof BatchNorm).layerName, opts, MODULE_KEYS);
    const cfg = resolveLayerOptions(numFeatures, opts);
    ({ numFeatures: this.numFeatures, eps: this.eps, momentum: this.momentum, affine: this.affine } = cfg);
    ({ trackRunningStats: this.trackRunningStats, layout: this.layout, convention: this.convention } = cfg);
    this.#config = cfg;
    this.activation = checkActivation(opts.activation);
    if (opts.renorm !== undefined) this.#renorm = this.#checkRenorm(opts.renorm);
    this.engine = opts.engine ?? getEngine();
    this.#owned = new OwnedTensors(this.engine);
    const C = numFeatures;
    if (this.affine) {
      this.#weight = this.#own(WasmTensor.from(new Float32Array(C).fill(1), this.engine));
      this.#bias = this.#own(WasmTensor.alloc(C, this.engine));
      this.#weightGrad = this.#own(WasmTensor.alloc(C, this.engine));
      this.#biasGrad = this.#own(WasmTensor.alloc(C, this.engine));
    }
    if (this.trackRunningStats) {
      this.#runningMean = this.#own(WasmTensor.alloc(C, this.engine));
      this.#runningVar = this.#own(WasmTensor.from(new Float32Array(C).fill(1), this.engine));
    }
    this.#savedMean = this.#own(WasmTensor.alloc(C, this.engine));
    this.#savedInvStd = this.#own(WasmTensor.alloc(C, this.engine));
  }

  #own(t: WasmTensor): WasmTensor {
    return this.#owned.own(t);
  }

  #live(): void {
    if (this.#disposed) throw new StateError("this BatchNorm module was disposed");
  }

  /** gamma, one per channel (undefined unless `affine`). */
  get weight(): WasmTensor | undefined { this.#live(); return this.#weight; }
  /** beta, one per channel (undefined unless `affine`). */
  get bias(): WasmTensor | undefined { this.#live(); return this.#bias; }
  /** Running mean (undefined unless `trackRunningStats`). */
  get runningMean(): WasmTensor | undefined { this.#live(); return this.#runningMean; }
  /** Running variance (undefined unless `trackRunningStats`). */
  get runningVar(): WasmTensor | undefined { this.#live(); return this.#runningVar; }
  /** Accumulated gradient of `weight` (summed over `backward` calls until `zeroGrad`). */
  get weightGrad(): WasmTensor | undefined { this.#live(); return this.#weightGrad; }
  /** Accumulated gradient of `bias`. */
  get biasGrad(): WasmTensor | undefined { this.#live(); return this.#biasGrad; }
  /** Gradient of the last forward's residual `z`, set by `backward` (undefined when it had none). */
  get residualGrad(): Output | undefined { this.#live(); return this.#residualGrad; }
  /** True after `dispose()`. */
  get disposed(): boolean { return this.#disposed; }

  /** Training mode: batch statistics, running statistics updated. Returns `this`. */
  train(mode = true): this {
    this.#live();
    this.training = mode;
    return this;
  }

  /** Eval mode: running statistics (batch statistics if `trackRunningStats` is false). */
  eval(): this {
    return this.train(false);
  }

  /** Batch Renormalization's bounds, or undefined (plain batch norm); settable between steps. */
  get renorm(): RenormBounds | undefined {
    return this.#renorm === undefined ? undefined : { ...this.#renorm };
  }

  /** Sets the bounds for the next training steps (undefined: plain batch norm); checked as in the constructor. */
  set renorm(b: RenormBounds | undefined) {
    this.#live();
    this.#renorm = b === undefined ? undefined : this.#checkRenorm(b);
  }

  #checkRenorm(b: unknown): RenormBounds {
    const bounds = checkRenorm(b);
    if (!this.trackRunningStats) throw new InvalidOptionError("renorm needs trackRunningStats: r and d are relative to the running statistics");
    if (this.convention !== "pytorch") throw new InvalidOptionError('renorm uses the "pytorch" convention of the running statistics');
    if (this.activation !== "none") throw new InvalidOptionError("renorm has no fused activation");
    return bounds;
  }

  /** Rank check of the concrete classes (BatchNorm1d/2d/3d); any rank >= 2 here. */
  protected checkRank(shape: readonly number[]): void {
    void shape;
  }

  /** Normalises `x` (then adds `z` and applies the activation) and keeps what `backward` needs. */
  forward(x: TensorLike, shape: readonly number[], opts: ForwardOptions = {}): Output {
    this.#live();
    checkOptionKeys("forward", opts, FORWARD_KEYS);
    if (!Array.isArray(shape)) throw new ShapeError("shape must be an array of integers");
    this.checkRank(shape);
    const dims = dimsOf(shape, this.layout);
    if (dims.channels !== this.numFeatures) {
      throw new ChannelMismatchError(`input has ${dims.channels} channels but the module has numFeatures = ${this.numFeatures}`);
    }
    const useBatchStats = this.training || !this.trackRunningStats;
    const updateRunning = this.training && this.trackRunningStats;
    // Everything that can reject the call is checked before the input copy is
    // overwritten, so a rejected forward leaves the last one's saved state intact.
    checkData("x", x, shape, dims);
    if (opts.out !== undefined) checkData("out", opts.out, shape, dims);
    if (opts.z !== undefined) checkData("z", opts.z, shape, dims);
    checkNoAlias("out", opts.out, { x, z: opts.z, ...this.#ownedByName() });
    if (useBatchStats) {
      checkTrainable(shape, dims);
      checkEps(this.eps, true);
    }
    const engine = this.#callEngine(x, opts);
    // A fused ReLU's backward needs its mask: the forward writes it to memory the module keeps.
    const mask = this.activation === "relu" ? this.#keptMask(maskLengthOf(dims), engine) : undefined;
    const common = {
      weight: this.#on(engine, this.#weight), bias: this.#on(engine, this.#bias), eps: this.eps, layout: this.layout,
      out: opts.out, activation: this.activation, z: opts.z, outMask: mask,
    };
    const xs = this.#keepInput(x, engine);
    try {
      return this.#normalize(xs, shape, common, useBatchStats, updateRunning, opts);
    } catch (e) {
      // Only running out of memory for scratch gets here (everything else was checked):
      // the module's input copy may already hold the new x, so the last forward's saved
      // state no longer matches it. Drop it rather than let backward() mix the two.
      if (xs !== x) this.#saved = undefined;
      throw e;
    }
  }

  #normalize(
    xs: WasmTensor, shape: readonly number[],
    common: { weight?: TensorLike; bias?: TensorLike; eps: number; layout: Layout; out?: TensorLike; activation: Activation; z?: TensorLike; outMask?: WasmTensor },
    useBatchStats: boolean, updateRunning: boolean, opts: ForwardOptions,
  ): Output {
    const e = xs.engine;
    let y: Output;
    let renorm: Saved["renorm"];
    if (useBatchStats && updateRunning && this.#renorm) {
      const r = batchRenormTrain(xs, shape, {
        weight: this.#weight, bias: this.#bias, eps: common.eps, layout: common.layout, out: common.out, engine: this.engine,
        runningMean: this.#runningMean!, runningVar: this.#runningVar!, momentum: stepMomentum(this.#config, this.numBatchesTracked), ...this.#renorm,
      });
      this.numBatchesTracked += 1;
      this.#savedMean.view.set(r.mean);
      this.#savedInvStd.view.set(r.invStd);
      renorm = { r: r.r, d: r.d };
      y = r.y;
    } else if (useBatchStats) {
      const momentum = updateRunning ? stepMomentum(this.#config, this.numBatchesTracked) : 0;
      const r = batchNormTrainOn(e, xs, shape, {
        ...common,
        convention: this.convention,
        momentum,
        runningMean: updateRunning ? this.#on(e, this.#runningMean) : undefined,
        runningVar: updateRunning ? this.#on(e, this.#runningVar) : undefined,
      });
      if (updateRunning) this.numBatchesTracked += 1;
      this.#savedMean.view.set(r.mean);
      this.#savedInvStd.view.set(r.invStd);
      y = r.y;
    } else {
      y = batchNormEvalOn(e, xs, shape, { ...common, runningMean: this.#on(e, this.#runningMean!), runningVar: this.#on(e, this.#runningVar!) });
      this.#savedMean.view.set(this.#runningMean!.view);
      const rv = this.#runningVar!.view;
      this.#savedInvStd.view.set(rv.map((v) => 1 / Math.sqrt(v + this.eps)));
    }
    this.#saved = {
      x: xs, shape: [...shape], mean: this.#savedMean, invStd: this.#savedInvStd, batchStats: useBatchStats,
      mask: common.outMask, residual: opts.z !== undefined, renorm,
    };
    this.#residualGrad = undefined;
    return y;
  }

  /** Module-owned memory for a kept ReLU mask of `size` elements, in `engine`. */
  #keptMask(size: number, engine: Engine): WasmTensor {
    // OutOfMemoryError here changes nothing.
    if (engine !== this.engine) {
      const u = this.#unsharedCopies(engine);
      return (u.mask = u.owned.sized(u.mask, size));
    }
    this.#maskCopy = this.#owned.sized(this.#maskCopy, size);
    return this.#maskCopy;
  }

  /**
   * The engine a forward runs on: the threads build's unshared `simd` companion when `x`
   * and every other tensor-sized argument are plain arrays (V8 copies into and out of shared
   * memory several times slower; the results are the same bits, see docs/builds.md), else
   * the module's engine. Batch Renormalization stays on the module's engine.
   */
  #callEngine(x: TensorLike, opts: ForwardOptions): Engine {
    return this.#renorm === undefined ? engineForPlain(this.engine, [x, opts.z, opts.out]) : this.engine;
  }

  #unsharedCopies(engine: Engine): { owned: OwnedTensors; input?: WasmTensor; mask?: WasmTensor } {
    return (this.#unshared ??= { owned: new OwnedTensors(engine) });
  }

  /** `t` for a call on `engine`: a tensor of another engine is read through its view there. */
  #on<T extends TensorLike | undefined>(engine: Engine, t: T): T | Float32Array {
    return t instanceof WasmTensor && t.engine !== engine ? t.view : t;
  }

  #ownedByName(): Record<string, WasmTensor | undefined> {
    return { weight: this.#weight, bias: this.#bias, runningMean: this.#runningMean, runningVar: this.#runningVar };
  }

  /** The (validated) input as a resident tensor: the caller's WasmTensor, or a module-owned copy in `engine`. */
  #keepInput(x: TensorLike, engine: Engine): WasmTensor {
    if (x instanceof WasmTensor) return x;
    let copy: WasmTensor;
    // OutOfMemoryError here changes nothing.
    if (engine !== this.engine) {
      const u = this.#unsharedCopies(engine);
      copy = u.input = u.owned.sized(u.input, x.length);
    } else {
      copy = this.#inputCopy = this.#owned.sized(this.#inputCopy, x.length);
    }
    copy.view.set(x);
    return copy;
  }

  /**
   * Gradient of the last `forward`'s output: returns `dx` and adds `dWeight`/`dBias` to
   * `weightGrad`/`biasGrad`. Through the fused ReLU when the module has one; when the
   * forward had a residual `z`, its gradient goes to `outZ` and {@link residualGrad}.
   */
  backward(dy: TensorLike, opts: ModuleBackwardOptions = {}): Output {
    this.#live();
    checkOptionKeys("backward", opts, BACKWARD_KEYS);
    const s = this.#saved;
    if (!s) throw new StateError("backward() needs a forward() first");
    if (s.x.freed) throw new StateError("the input of the last forward() was freed before backward()");
    const r = s.renorm
      ? batchRenormBackward(dy, s.x, s.shape, {
        weight: this.#weight, mean: s.mean.view.slice(), invStd: s.invStd.view.slice(), ...s.renorm, layout: this.layout, out: opts.out, engine: this.engine,
      })
      : this.#backwardOn(s.x.engine, dy, s, opts);
    this.#residualGrad = (r as { dz?: Output }).dz;
    if (this.affine) {
      const wg = this.#weightGrad!.view;
      const bg = this.#biasGrad!.view;
      for (let c = 0; c < this.numFeatures; c++) {
        wg[c] += r.dWeight[c];
        bg[c] += r.dBias[c];
      }
    }
    return r.dx;
  }

  /**
   * The backward of a forward that ran on `e` (the unshared companion when its input was a
   * plain array): the module's tensors, and the caller's resident ones, are read (and
   * `out`/`outZ` written) through their views there, and the caller's own tensors returned.
   */
  #backwardOn(e: Engine, dy: TensorLike, s: Saved, opts: ModuleBackwardOptions): { dx: Output; dz?: Output; dWeight: Float32Array; dBias: Float32Array } {
    const r = batchNormBackwardOn(e, this.#on(e, dy), s.x, s.shape, {
      weight: this.#on(e, this.#weight), mean: this.#on(e, s.mean), invStd: this.#on(e, s.invStd), layout: this.layout, training: s.batchStats,
      out: this.#on(e, opts.out), activation: this.activation, mask: s.mask, residual: s.residual, outZ: this.#on(e, opts.outZ),
    });
    return { ...r, dx: opts.out ?? r.dx, dz: r.dz === undefined ? undefined : (opts.outZ ?? r.dz) };
  }

  /** Sets `weightGrad` and `biasGrad` to zero. */
  zeroGrad(): void {
    this.#live();
    this.#weightGrad?.view.fill(0);
    this.#biasGrad?.view.fill(0);
  }

  /** A copy of the state, with PyTorch's names. */
  stateDict(): StateDict {
    this.#live();
    return makeStateDict(this.#config, {
      weight: this.#weight?.view, bias: this.#bias?.view, runningMean: this.#runningMean?.view,
      runningVar: this.#runningVar?.view, numBatchesTracked: this.numBatchesTracked,
    });
  }

  /** The keys this module's state dict has. */
  stateKeys(): (keyof StateDict)[] {
    return stateKeysOf(this.#config);
  }

  /**
   * Loads a state dict. Everything is checked first (with `strict`, the default: no missing
   * and no unexpected keys; always: one value per channel), then copied in.
   */
  loadStateDict(sd: StateDict, opts: { strict?: boolean } = {}): void {
    checkOptionKeys("loadStateDict", opts, ["strict"]);
    const { strict = true } = opts;
    this.#live();
    checkStateDict(sd, this.#config, strict, "module");
    if (sd.weight && this.#weight) this.#weight.view.set(sd.weight);
    if (sd.bias && this.#bias) this.#bias.view.set(sd.bias);
    if (sd.running_mean && this.#runningMean) this.#runningMean.view.set(sd.running_mean);
    if (sd.running_var && this.#runningVar) this.#runningVar.view.set(sd.running_var);
    if (sd.num_batches_tracked !== undefined && this.trackRunningStats) this.numBatchesTracked = Number(sd.num_batches_tracked);
  }

  /** The state as a safetensors file; `prefix` (e.g. `"bn1."`) is put before each name. */
  toSafetensors(prefix = "", metadata?: Record<string, string>): Uint8Array {
    return stateToSafetensors(this.stateDict(), this.stateKeys(), prefix, metadata);
  }

  /**
   * Loads the entries named `prefix + key` from a safetensors file (F32 or F64 floats; I64
   * `num_batches_tracked`). The file is validated in full before anything is loaded.
   * Other tensors in the file (other layers) are ignored; a missing entry is an error
   * when `strict` (default).
   */
  loadSafetensors(bytes: Uint8Array, opts: { prefix?: string; strict?: boolean } = {}): void {
    checkOptionKeys("loadSafetensors", opts, ["prefix", "strict"]);
    const { prefix = "", strict = true } = opts;
    this.loadStateDict(stateFromSafetensors(bytes, this.stateKeys(), prefix, this.numFeatures) as StateDict, { strict });
  }

  /** Frees every wasm buffer of the module. Idempotent; later calls throw StateError. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#owned.freeAll();
    this.#unshared?.owned.freeAll();
    this.#saved = undefined;
  }

  /** Same as {@link dispose}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkRankOf(name: string, ranks: number[], what: string, shape: readonly number[]): void {
  if (!ranks.includes(shape.length)) throw new ShapeError(`${name}: expected ${what} input (got ${shape.length}D input)`);
}

/** Input (N, C) or (N, C, L); channels-last (N, C) or (N, L, C). */
export class BatchNorm1d extends BatchNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "BatchNorm1d";
  protected override checkRank(shape: readonly number[]): void {
    checkRankOf("BatchNorm1d", [2, 3], "2D or 3D", shape);
  }
}

/** Input (N, C, H, W); channels-last (N, H, W, C). */
export class BatchNorm2d extends BatchNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "BatchNorm2d";
  protected override checkRank(shape: readonly number[]): void {
    checkRankOf("BatchNorm2d", [4], "4D", shape);
  }
}

/** Input (N, C, D, H, W); channels-last (N, D, H, W, C). */
export class BatchNorm3d extends BatchNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "BatchNorm3d";
  protected override checkRank(shape: readonly number[]): void {
    checkRankOf("BatchNorm3d", [5], "5D", shape);
  }
}

export type { StateDict };
