/**
 * What the LayerNorm, RMSNorm, GroupNorm and InstanceNorm modules share: owned wasm
 * buffers (parameters, gradients, running statistics, the kept input), train/eval, state
 * dicts with PyTorch's keys, safetensors, dispose. Buffer ownership is the same as
 * {@link BatchNorm}'s: every tensor property is owned by the module (read and write it
 * through `.view`, never `free()` it); a `Float32Array` input of `forward` is copied into
 * module-owned memory for `backward`, a `WasmTensor` input is kept by reference.
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError, StateError } from "../engine/errors.js";
import { getEngine, type Engine } from "../engine/loader.js";
import { WasmTensor } from "../engine/tensor.js";
import { OwnedTensors } from "../engine/owned.js";
import { checkOptionKeys, optionKeys, type TensorLike } from "../engine/validate.js";
import { stateFromSafetensors, stateToSafetensors } from "./state.js";

/** Options of a normalisation module's `forward`. */
export interface NormForwardOptions {
  /** Where to write `y`. */
  out?: TensorLike;
}

/** Options of a normalisation module's `backward`. */
export interface NormBackwardOptions {
  /** Where to write `dx`. */
  out?: TensorLike;
}

const FORWARD_KEYS = optionKeys<NormForwardOptions>({ out: true });
const BACKWARD_KEYS = optionKeys<NormBackwardOptions>({ out: true });

/** A state dict with PyTorch's keys (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`). */
export type NormStateDict = Record<string, Float32Array | bigint>;

/** Which buffers a module has, and how long each vector is. */
export interface NormBuffers {
  /** Length of `weight` / `bias` (features or channels). */
  paramLength: number;
  /** Has a learnable `weight`. */
  weight: boolean;
  /** Has a learnable `bias`. */
  bias: boolean;
  /** Has running statistics (InstanceNorm with `trackRunningStats`). */
  running: boolean;
  /** Length of the running statistics. */
  runningLength: number;
}

/** What every module keeps from `forward` for `backward`. */
export interface SavedInput {
  /** The input (the caller's `WasmTensor`, or the module's copy). */
  x: WasmTensor;
}

/** Base class of the normalisation modules (not constructed directly). */
export abstract class NormModule {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static readonly layerName: string = "NormModule";
  /** The build the module's buffers live in. */
  readonly engine: Engine;
  /** Training mode (InstanceNorm: batch statistics and running-stat updates). */
  training = true;
  /** Training forward passes that updated running statistics (PyTorch's `num_batches_tracked`). */
  numBatchesTracked = 0;

  /** Which buffers the module has. */
  protected readonly buffers: NormBuffers;
  /** gamma, owned (see the `weight` getter). */
  protected weightT?: WasmTensor;
  /** beta, owned. */
  protected biasT?: WasmTensor;
  /** Accumulated gradient of gamma, owned. */
  protected weightGradT?: WasmTensor;
  /** Accumulated gradient of beta, owned. */
  protected biasGradT?: WasmTensor;
  /** Running mean, owned. */
  protected runningMeanT?: WasmTensor;
  /** Running variance, owned. */
  protected runningVarT?: WasmTensor;
  readonly #owned: OwnedTensors;
  #inputCopy?: WasmTensor;
  #disposed = false;

  protected constructor(buffers: NormBuffers, engine: Engine | undefined) {
    this.buffers = buffers;
    this.engine = engine ?? getEngine();
    this.#owned = new OwnedTensors(this.engine);
    const n = buffers.paramLength;
    if (buffers.weight) {
      this.weightT = this.#own(WasmTensor.from(new Float32Array(n).fill(1), this.engine));
      this.weightGradT = this.#own(WasmTensor.alloc(n, this.engine));
    }
    if (buffers.bias) {
      this.biasT = this.#own(WasmTensor.alloc(n, this.engine));
      this.biasGradT = this.#own(WasmTensor.alloc(n, this.engine));
    }
    if (buffers.running) {
      this.runningMeanT = this.#own(WasmTensor.alloc(buffers.runningLength, this.engine));
      this.runningVarT = this.#own(WasmTensor.from(new Float32Array(buffers.runningLength).fill(1), this.engine));
    }
  }

  #own(t: WasmTensor): WasmTensor {
    return this.#owned.own(t);
  }

  /** Throws {@link StateError} once disposed. */
  protected live(): void {
    if (this.#disposed) throw new StateError(`this ${(this.constructor as typeof NormModule).layerName} module was disposed`);
  }

  /** gamma (undefined without an affine weight). */
  get weight(): WasmTensor | undefined { this.live(); return this.weightT; }
  /** beta (undefined without a bias). */
  get bias(): WasmTensor | undefined { this.live(); return this.biasT; }
  /** Accumulated gradient of `weight` (summed over `backward` calls until `zeroGrad`). */
  get weightGrad(): WasmTensor | undefined { this.live(); return this.weightGradT; }
  /** Accumulated gradient of `bias`. */
  get biasGrad(): WasmTensor | undefined { this.live(); return this.biasGradT; }
  /** Running mean (InstanceNorm with `trackRunningStats`). */
  get runningMean(): WasmTensor | undefined { this.live(); return this.runningMeanT; }
  /** Running variance (InstanceNorm with `trackRunningStats`). */
  get runningVar(): WasmTensor | undefined { this.live(); return this.runningVarT; }
  /** Whether `dispose()` was called. */
  get disposed(): boolean { return this.#disposed; }

  /** Training mode (or eval with `mode = false`). Returns `this`. */
  train(mode = true): this {
    this.live();
    this.training = mode;
    return this;
  }

  /** Eval mode. Returns `this`. */
  eval(): this {
    return this.train(false);
  }

  /** The checks every `forward` starts with. */
  protected beginForward(opts: NormForwardOptions): void {
    this.live();
    checkOptionKeys("forward", opts, FORWARD_KEYS);
  }

  /** The checks every `backward` starts with; returns what the last forward saved. */
  protected beginBackward<T extends SavedInput>(saved: T | undefined, opts: NormBackwardOptions): T {
    this.live();
    checkOptionKeys("backward", opts, BACKWARD_KEYS);
    if (!saved) throw new StateError("backward() needs a forward() first");
    if (saved.x.freed) throw new StateError("the input of the last forward() was freed before backward()");
    return saved;
  }

  /** The (validated) input as a resident tensor: the caller's `WasmTensor`, or a module-owned copy. */
  protected keepInput(x: TensorLike): WasmTensor {
    if (x instanceof WasmTensor) return x;
    this.#inputCopy = this.#owned.sized(this.#inputCopy, x.length); // OutOfMemoryError here changes nothing
    this.#inputCopy.view.set(x);
    return this.#inputCopy;
  }

  /** Adds parameter gradients of one backward to `weightGrad` / `biasGrad`. */
  protected accumulate(dWeight: Float32Array | undefined, dBias: Float32Array | undefined): void {
    if (this.weightGradT && dWeight) {
      const g = this.weightGradT.view;
      for (let i = 0; i < g.length; i++) g[i] += dWeight[i];
    }
    if (this.biasGradT && dBias) {
      const g = this.biasGradT.view;
      for (let i = 0; i < g.length; i++) g[i] += dBias[i];
    }
  }

  /** Sets `weightGrad` and `biasGrad` to zero. */
  zeroGrad(): void {
    this.live();
    this.weightGradT?.view.fill(0);
    this.biasGradT?.view.fill(0);
  }

  /** The keys of this module's state dict, in PyTorch's order. */
  stateKeys(): string[] {
    const k: string[] = [];
    if (this.buffers.weight) k.push("weight");
    if (this.buffers.bias) k.push("bias");
    if (this.buffers.running) k.push("running_mean", "running_var", "num_batches_tracked");
    return k;
  }

  #vectors(): Record<string, WasmTensor | undefined> {
    return { weight: this.weightT, bias: this.biasT, running_mean: this.runningMeanT, running_var: this.runningVarT };
  }

  /** A copy of the state, with PyTorch's names. */
  stateDict(): NormStateDict {
    this.live();
    const sd: NormStateDict = {};
    const v = this.#vectors();
    for (const k of this.stateKeys()) sd[k] = k === "num_batches_tracked" ? BigInt(this.numBatchesTracked) : v[k]!.view.slice();
    return sd;
  }

  /**
   * Loads a state dict: everything is checked first (with `strict`, the default: no
   * missing and no unexpected keys; always: the right lengths), then copied in.
   */
  loadStateDict(sd: NormStateDict, opts: { strict?: boolean } = {}): void {
    checkOptionKeys("loadStateDict", opts, ["strict"]);
    const { strict = true } = opts;
    this.live();
    if (sd === null || typeof sd !== "object") throw new InvalidArgumentError("state dict must be an object");
    const expected = this.stateKeys();
    const given = Object.keys(sd).filter((k) => sd[k] !== undefined);
    if (strict) {
      const missing = expected.filter((k) => !given.includes(k));
      const unexpected = given.filter((k) => !expected.includes(k));
      if (missing.length || unexpected.length) {
        throw new InvalidArgumentError(`state dict does not match the module: missing [${missing.join(", ")}], unexpected [${unexpected.join(", ")}]`);
      }
    }
    const v = this.#vectors();
    for (const k of expected) {
      const val = sd[k];
      if (val === undefined) continue;
      if (k === "num_batches_tracked") {
        if (typeof val !== "bigint" || val < 0n) throw new InvalidArgumentError(`state dict "num_batches_tracked" must be a non-negative bigint`);
        continue;
      }
      if (!(val instanceof Float32Array)) throw new InvalidArgumentError(`state dict "${k}" must be a Float32Array`);
      if (val.length !== v[k]!.length) throw new ChannelMismatchError(`state dict "${k}" has ${val.length} values, the module's has ${v[k]!.length}`);
    }
    for (const k of expected) {
      const val = sd[k];
      if (val === undefined) continue;
      if (typeof val === "bigint") this.numBatchesTracked = Number(val);
      else v[k]!.view.set(val);
    }
  }

  /** The state as a safetensors file; `prefix` (e.g. `"ln1."`) is put before each name. */
  toSafetensors(prefix = "", metadata?: Record<string, string>): Uint8Array {
    return stateToSafetensors(this.stateDict(), this.stateKeys(), prefix, metadata);
  }

  /** Loads the entries named `prefix + key` of a safetensors file (validated in full first). */
  loadSafetensors(bytes: Uint8Array, opts: { prefix?: string; strict?: boolean } = {}): void {
    checkOptionKeys("loadSafetensors", opts, ["prefix", "strict"]);
    const { prefix = "", strict = true } = opts;
    this.loadStateDict(stateFromSafetensors(bytes, this.stateKeys(), prefix) as NormStateDict, { strict });
  }

  /** Frees every wasm buffer of the module. Idempotent; later calls throw {@link StateError}. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#owned.freeAll();
    this.forgetSaved();
  }

  /** Drops what the last forward kept for backward. */
  protected abstract forgetSaved(): void;

  /** `dispose()`, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** `true` unless given; a boolean otherwise. */
export function flag(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw new InvalidArgumentError(`${name} must be a boolean, got ${String(v)}`);
  return v;
}

/** A positive integer argument. */
export function positiveInt(name: string, v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(v)}`);
  return v as number;
}
