/**
 * `LayerNorm` in the shape of PyTorch's `nn.LayerNorm`: normalises over the last
 * `normalizedShape.length` dims of the input, elementwise affine along them.
 * @module
 */
import type { Engine } from "../engine/loader.js";
import type { WasmTensor } from "../engine/tensor.js";
import { checkEps, checkOptionKeys, optionKeys, type TensorLike } from "../engine/validate.js";
import type { Output } from "./functional.js";
import { layerNorm, layerNormBackward, normalizedShapeOf } from "./norm-functional.js";
import { flag, NormModule, type NormBackwardOptions, type NormForwardOptions } from "./norm-module.js";

/** Options of {@link LayerNorm} (PyTorch's names and defaults). */
export interface LayerNormModuleOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Learnable `weight` (and `bias` unless `bias: false`); default true. */
  elementwiseAffine?: boolean;
  /** Learnable `bias` (with `elementwiseAffine`); default true. */
  bias?: boolean;
  /** The build to run on (default: the one `init()` loaded). */
  engine?: Engine;
}

const KEYS = optionKeys<LayerNormModuleOptions>({ eps: true, elementwiseAffine: true, bias: true, engine: true });

interface Saved {
  x: WasmTensor;
  shape: number[];
  mean: Float32Array;
  invStd: Float32Array;
}

/**
 * Layer normalisation (Ba et al. 2016), PyTorch's `nn.LayerNorm`.
 *
 * @example
 * const ln = new LayerNorm(768);
 * const y = ln.forward(x, [batch, tokens, 768]);
 * const dx = ln.backward(dy); // ln.weightGrad, ln.biasGrad accumulate
 */
export class LayerNorm extends NormModule {
  /** The class's name as a literal (error messages; minifiers rename classes). */
  static override readonly layerName: string = "LayerNorm";
  /** The trailing dims normalised over. */
  readonly normalizedShape: readonly number[];
  /** Added to the variance. */
  readonly eps: number;
  /** Whether the module has a learnable `weight` (and `bias`). */
  readonly elementwiseAffine: boolean;
  #saved?: Saved;

  constructor(normalizedShape: number | readonly number[], opts: LayerNormModuleOptions = {}) {
    checkOptionKeys("LayerNorm", opts, KEYS);
    const ns = normalizedShapeOf(normalizedShape);
    const eps = checkEps(opts.eps);
    const affine = flag("elementwiseAffine", opts.elementwiseAffine, true);
    const bias = flag("bias", opts.bias, true);
    const len = ns.reduce((a, b) => a * b, 1);
    super({ paramLength: len, weight: affine, bias: affine && bias, running: false, runningLength: 0 }, opts.engine);
    this.normalizedShape = ns;
    this.eps = eps;
    this.elementwiseAffine = affine;
  }

  /** Normalises `x` of `shape` (`[*, ...normalizedShape]`) and keeps what `backward` needs. */
  forward(x: TensorLike, shape: readonly number[], opts: NormForwardOptions = {}): Output {
    this.beginForward(opts);
    // The functional call checks everything before the kept input is overwritten.
    const r = layerNorm(x, shape, this.normalizedShape, { weight: this.weightT, bias: this.biasT, eps: this.eps, out: opts.out, engine: this.engine });
    this.#saved = { x: this.keepInput(x), shape: [...shape], mean: r.mean, invStd: r.invStd };
    return r.y;
  }

  /** Gradient of the last `forward`'s output: returns `dx`, adds to `weightGrad` / `biasGrad`. */
  backward(dy: TensorLike, opts: NormBackwardOptions = {}): Output {
    const s = this.beginBackward(this.#saved, opts);
    const g = layerNormBackward(dy, s.x, s.shape, this.normalizedShape, { weight: this.weightT, mean: s.mean, invStd: s.invStd, out: opts.out, engine: this.engine });
    this.accumulate(g.dWeight, g.dBias);
    return g.dx;
  }

  protected forgetSaved(): void {
    this.#saved = undefined;
  }
}
