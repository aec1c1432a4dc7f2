/**
 * `RMSNorm` in the shape of PyTorch's `nn.RMSNorm`: `y = x / sqrt(mean(x^2) + eps) * weight`
 * over the last `normalizedShape.length` dims (Zhang & Sennrich 2019).
 * @module
 */
import type { Engine } from "../engine/loader.js";
import type { WasmTensor } from "../engine/tensor.js";
import { checkEps, checkOptionKeys, optionKeys, type TensorLike } from "../engine/validate.js";
import type { Output } from "./functional.js";
import { F32_EPS, normalizedShapeOf, rmsNorm, rmsNormBackward } from "./norm-functional.js";
import { flag, NormModule, type NormBackwardOptions, type NormForwardOptions } from "./norm-module.js";

/** Options of {@link RMSNorm} (PyTorch's names and defaults). */
export interface RMSNormOptions {
  /** Added to the mean square; `null` (default): `torch.finfo(float32).eps`. */
  eps?: number | null;
  /** Learnable `weight`; default true. */
  elementwiseAffine?: boolean;
  /** The build to run on. */
  engine?: Engine;
}

const KEYS = optionKeys<RMSNormOptions>({ eps: true, elementwiseAffine: true, engine: true });

/**
 * Root-mean-square normalisation, PyTorch's `nn.RMSNorm`.
 *
 * @example
 * const norm = new RMSNorm(512);
 * const y = norm.forward(x, [8, 512]);
 * const dx = norm.backward(dy);
 */
export class RMSNorm extends NormModule {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "RMSNorm";
  /** The trailing dims normalised over. */
  readonly normalizedShape: readonly number[];
  /** As given (`null`: f32 machine epsilon at run time). */
  readonly eps: number | null;
  /** Whether the module has a learnable `weight`. */
  readonly elementwiseAffine: boolean;
  #saved?: { x: WasmTensor; shape: number[]; invStd: Float32Array };

  constructor(normalizedShape: number | readonly number[], opts: RMSNormOptions = {}) {
    checkOptionKeys("RMSNorm", opts, KEYS);
    const ns = normalizedShapeOf(normalizedShape);
    const eps = opts.eps === undefined || opts.eps === null ? null : checkEps(opts.eps);
    const affine = flag("elementwiseAffine", opts.elementwiseAffine, true);
    super({ paramLength: ns.reduce((a, b) => a * b, 1), weight: affine, bias: false, running: false, runningLength: 0 }, opts.engine);
    this.normalizedShape = ns;
    this.eps = eps;
    this.elementwiseAffine = affine;
  }

  /** Normalises `x` of `shape` (`[*, ...normalizedShape]`) and keeps what `backward` needs. */
  forward(x: TensorLike, shape: readonly number[], opts: NormForwardOptions = {}): Output {
    this.beginForward(opts);
    const r = rmsNorm(x, shape, this.normalizedShape, { weight: this.weightT, eps: this.eps ?? F32_EPS, out: opts.out, engine: this.engine });
    this.#saved = { x: this.keepInput(x), shape: [...shape], invStd: r.invStd };
    return r.y;
  }

  /** Gradient of the last `forward`'s output: returns `dx`, adds to `weightGrad`. */
  backward(dy: TensorLike, opts: NormBackwardOptions = {}): Output {
    const s = this.beginBackward(this.#saved, opts);
    const g = rmsNormBackward(dy, s.x, s.shape, this.normalizedShape, { weight: this.weightT, invStd: s.invStd, out: opts.out, engine: this.engine });
    this.accumulate(g.dWeight, undefined);
    return g.dx;
  }

  protected forgetSaved(): void {
    this.#saved = undefined;
  }
}
