/**
 * `GroupNorm` in the shape of PyTorch's `nn.GroupNorm` (Wu & He 2018): statistics per
 * sample over groups of `numChannels / numGroups` channels, affine per channel. Input
 * `(N, C, *)`, or channels-last `(N, *, C)` with `layout: "NHWC"`.
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError } from "../engine/errors.js";
import type { Engine } from "../engine/loader.js";
import type { WasmTensor } from "../engine/tensor.js";
import { checkEps, checkLayout, checkOptionKeys, optionKeys, type Layout, type TensorLike } from "../engine/validate.js";
import type { Output } from "./functional.js";
import { groupNorm, groupNormBackward } from "./norm-functional.js";
import { flag, NormModule, positiveInt, type NormBackwardOptions, type NormForwardOptions } from "./norm-module.js";

/** Options of {@link GroupNorm} (PyTorch's names and defaults). */
export interface GroupNormModuleOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Learnable per-channel `weight` and `bias`; default true. */
  affine?: boolean;
  /** Default `"NCHW"`. */
  layout?: Layout;
  /** The build to run on. */
  engine?: Engine;
}

const KEYS = optionKeys<GroupNormModuleOptions>({ eps: true, affine: true, layout: true, engine: true });

/** The channel count of `shape` in `layout`, checked against the module's. */
export function checkChannels(shape: readonly number[], layout: Layout, want: number, what: string): void {
  if (!Array.isArray(shape) || shape.length < 2) return; // the functional call names the shape error
  const c = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  if (c !== want) throw new ChannelMismatchError(`input has ${c} channels but the ${what} has ${want}`);
}

/**
 * Group normalisation, PyTorch's `nn.GroupNorm`.
 *
 * @example
 * const gn = new GroupNorm(32, 256);
 * const y = gn.forward(x, [16, 256, 28, 28]);
 * const dx = gn.backward(dy);
 */
export class GroupNorm extends NormModule {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "GroupNorm";
  /** Groups the channels are split into. */
  readonly numGroups: number;
  /** Channels of the input (a multiple of `numGroups`). */
  readonly numChannels: number;
  /** Added to the variance. */
  readonly eps: number;
  /** Whether the module has per-channel `weight` and `bias`. */
  readonly affine: boolean;
  /** Where the channel axis is. */
  readonly layout: Layout;
  #saved?: { x: WasmTensor; shape: number[]; mean: Float32Array; invStd: Float32Array };

  constructor(numGroups: number, numChannels: number, opts: GroupNormModuleOptions = {}) {
    checkOptionKeys("GroupNorm", opts, KEYS);
    positiveInt("numGroups", numGroups);
    positiveInt("numChannels", numChannels);
    if (numChannels % numGroups !== 0) throw new InvalidArgumentError("num_channels must be divisible by num_groups");
    const eps = checkEps(opts.eps);
    const affine = flag("affine", opts.affine, true);
    const layout = checkLayout(opts.layout);
    super({ paramLength: numChannels, weight: affine, bias: affine, running: false, runningLength: 0 }, opts.engine);
    this.numGroups = numGroups;
    this.numChannels = numChannels;
    this.eps = eps;
    this.affine = affine;
    this.layout = layout;
  }

  /** Normalises `x` of `shape` and keeps what `backward` needs. */
  forward(x: TensorLike, shape: readonly number[], opts: NormForwardOptions = {}): Output {
    this.beginForward(opts);
    checkChannels(shape, this.layout, this.numChannels, "module's numChannels");
    const r = groupNorm(x, shape, this.numGroups, {
      weight: this.weightT, bias: this.biasT, eps: this.eps, layout: this.layout, out: opts.out, engine: this.engine,
    });
    this.#saved = { x: this.keepInput(x), shape: [...shape], mean: r.mean, invStd: r.invStd };
    return r.y;
  }

  /** Gradient of the last `forward`'s output: returns `dx`, adds to `weightGrad` / `biasGrad`. */
  backward(dy: TensorLike, opts: NormBackwardOptions = {}): Output {
    const s = this.beginBackward(this.#saved, opts);
    const g = groupNormBackward(dy, s.x, s.shape, this.numGroups, {
      weight: this.weightT, mean: s.mean, invStd: s.invStd, layout: this.layout, out: opts.out, engine: this.engine,
    });
    this.accumulate(this.affine ? g.dWeight : undefined, this.affine ? g.dBias : undefined);
    return g.dx;
  }

  protected forgetSaved(): void {
    this.#saved = undefined;
  }
}
