/**
 * `InstanceNorm1d/2d/3d` in the shape of PyTorch's (Ulyanov et al. 2016): statistics per
 * sample and channel; with `trackRunningStats`, running statistics as PyTorch (the batch
 * average of each instance's mean and unbiased variance) used in eval mode.
 * @module
 */
import { InvalidOptionError, ShapeError } from "../engine/errors.js";
import type { Engine } from "../engine/loader.js";
import type { WasmTensor } from "../engine/tensor.js";
import { checkEps, checkLayout, checkOptionKeys, optionKeys, type Layout, type TensorLike } from "../engine/validate.js";
import type { Output } from "./functional.js";
import { instanceNorm, instanceNormBackward } from "./norm-functional.js";
import { flag, NormModule, positiveInt, type NormBackwardOptions, type NormForwardOptions } from "./norm-module.js";
import { checkChannels } from "./groupnorm.js";

/** Options of the InstanceNorm modules (PyTorch's names and defaults). */
export interface InstanceNormModuleOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Running-statistics momentum in [0, 1], or `null` for a cumulative average; default 0.1. */
  momentum?: number | null;
  /** Learnable per-channel `weight` and `bias`; default false. */
  affine?: boolean;
  /** Keep running statistics (used in eval mode); default false. */
  trackRunningStats?: boolean;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** The build to run on. */
  engine?: Engine;
}

const KEYS = optionKeys<InstanceNormModuleOptions>({ eps: true, momentum: true, affine: true, trackRunningStats: true, layout: true, engine: true });

/**
 * Instance normalisation on batched input of any rank >= 3 (see the 1d/2d/3d classes, which
 * also take unbatched input as PyTorch's do).
 */
export class InstanceNorm extends NormModule {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "InstanceNorm";
  /** Channels of the input. */
  readonly numFeatures: number;
  /** Added to the variance. */
  readonly eps: number;
  /** Running-statistics momentum, or `null` for a cumulative average. */
  readonly momentum: number | null;
  /** Whether the module has per-channel `weight` and `bias`. */
  readonly affine: boolean;
  /** Whether running statistics are kept (and used in eval mode). */
  readonly trackRunningStats: boolean;
  /** Where the channel axis is. */
  readonly layout: Layout;
  #saved?: { x: WasmTensor; shape: number[]; mean: Float32Array; invStd: Float32Array; inputStats: boolean };

  constructor(numFeatures: number, opts: InstanceNormModuleOptions = {}) {
    checkOptionKeys((new.target as typeof InstanceNorm).layerName, opts, KEYS);
    positiveInt("numFeatures", numFeatures);
    const eps = checkEps(opts.eps);
    const momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    if (momentum !== null && !(typeof momentum === "number" && momentum >= 0 && momentum <= 1)) {
      throw new InvalidOptionError(`momentum must be a number in [0, 1] or null, got ${String(momentum)}`);
    }
    const affine = flag("affine", opts.affine, false);
    const track = flag("trackRunningStats", opts.trackRunningStats, false);
    const layout = checkLayout(opts.layout);
    super({ paramLength: numFeatures, weight: affine, bias: affine, running: track, runningLength: numFeatures }, opts.engine);
    this.numFeatures = numFeatures;
    this.eps = eps;
    this.momentum = momentum;
    this.affine = affine;
    this.trackRunningStats = track;
    this.layout = layout;
  }

  /**
   * The batched shape of an input: the concrete classes check the rank and give unbatched
   * input (no N dim) a batch of 1, as PyTorch's `unsqueeze(0)`.
   */
  protected batchedShape(shape: readonly number[]): readonly number[] {
    return shape;
  }

  /** Normalises `x` of `shape` and keeps what `backward` needs. */
  forward(x: TensorLike, shape: readonly number[], opts: NormForwardOptions = {}): Output {
    this.beginForward(opts);
    if (!Array.isArray(shape)) throw new ShapeError("shape must be an array of integers");
    shape = this.batchedShape(shape);
    checkChannels(shape, this.layout, this.numFeatures, "module's numFeatures");
    const inputStats = this.training || !this.trackRunningStats;
    const update = this.training && this.trackRunningStats;
    const momentum = this.momentum ?? 1 / (this.numBatchesTracked + 1);
    const r = instanceNorm(x, shape, {
      weight: this.weightT, bias: this.biasT, eps: this.eps, layout: this.layout, out: opts.out, engine: this.engine,
      useInputStats: inputStats, momentum,
      runningMean: update || !inputStats ? this.runningMeanT : undefined,
      runningVar: update || !inputStats ? this.runningVarT : undefined,
    });
    if (update) this.numBatchesTracked += 1;
    this.#saved = { x: this.keepInput(x), shape: [...shape], mean: r.mean, invStd: r.invStd, inputStats };
    return r.y;
  }

  /** Gradient of the last `forward`'s output: returns `dx`, adds to `weightGrad` / `biasGrad`. */
  backward(dy: TensorLike, opts: NormBackwardOptions = {}): Output {
    const s = this.beginBackward(this.#saved, opts);
    const g = instanceNormBackward(dy, s.x, s.shape, {
      weight: this.weightT, mean: s.mean, invStd: s.invStd, layout: this.layout, out: opts.out, engine: this.engine, useInputStats: s.inputStats,
    });
    this.accumulate(g.dWeight, g.dBias);
    return g.dx;
  }

  protected forgetSaved(): void {
    this.#saved = undefined;
  }
}

/** `shape` as batched input of `rank` dims: unbatched input (`rank - 1` dims) gets N = 1. */
function batched(name: string, rank: number, shape: readonly number[]): readonly number[] {
  if (shape.length === rank) return shape;
  if (shape.length === rank - 1) return [1, ...shape];
  throw new ShapeError(`${name}: expected ${rank - 1}D or ${rank}D input (got ${shape.length}D input)`);
}

/** Input `(N, C, L)` or unbatched `(C, L)`; channels-last `(N, L, C)` or `(L, C)`. */
export class InstanceNorm1d extends InstanceNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "InstanceNorm1d";
  protected override batchedShape(shape: readonly number[]): readonly number[] {
    return batched("InstanceNorm1d", 3, shape);
  }
}

/** Input `(N, C, H, W)` or unbatched `(C, H, W)`; channels-last `(N, H, W, C)` or `(H, W, C)`. */
export class InstanceNorm2d extends InstanceNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "InstanceNorm2d";
  protected override batchedShape(shape: readonly number[]): readonly number[] {
    return batched("InstanceNorm2d", 4, shape);
  }
}

/** Input `(N, C, D, H, W)` or unbatched `(C, D, H, W)`; channels-last `(N, D, H, W, C)` or `(D, H, W, C)`. */
export class InstanceNorm3d extends InstanceNorm {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "InstanceNorm3d";
  protected override batchedShape(shape: readonly number[]): readonly number[] {
    return batched("InstanceNorm3d", 5, shape);
  }
}
