/**
 * `LayerNorm` in the shape of PyTorch's `nn.LayerNorm`: normalises over the last
 * `normalizedShape.length` dims of the input, elementwise affine along them.
 * @module
 */
import { StateError } from "../engine/errors.js";
import type { Engine } from "../engine/loader.js";
import type { WasmTensor } from "../engine/tensor.js";
import { checkEps, checkOptionKeys, optionKeys, type TensorLike } from "../engine/validate.js";
import type { Output } from "./functional.js";
import { layerNorm, layerNormBackward, normalizedShapeOf } from "./norm-functional.js";
import { flag, NormModule } from "./norm-module.js";

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

/** Options of a module's `forward`. */
export interface NormForwardOptions {
  /** Where to write `y`. */
  out?: TensorLike;
}

/** Options of a module's `backward`. */
export interface NormBackwardOptions {
  /** Where to write `dx`. */
  out?: TensorLike;
}

const KEYS = optionKeys<LayerNormModuleOptions>({ eps: true, elementwiseAffine: true, bias: true, engine: true });
export const FORWARD_KEYS = optionKeys<NormForwardOptions>({ out: true });
export const BACKWARD_KEYS = optionKeys<NormBackwardOptions>({ out: true });

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
  /** The trailing dims normalised over. */
  readonly normalizedShape: readonly number[];
  readonly eps: number;
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
    this.live();
    checkOptionKeys("forward", opts, FORWARD_KEYS);
    // The functional call checks everything before the kept input is overwritten.
    const r = layerNorm(x, shape, this.normalizedShape, { weight: this.weightT, bias: this.biasT, eps: this.eps, out: opts.out, engine: this.engine });
    this.#saved = { x: this.keepInput(x), shape: [...shape], mean: r.mean, invStd: r.invStd };
    return r.y;
  }

  /** Gradient of the last `forward`'s output: returns `dx`, adds to `weightGrad` / `biasGrad`. */
  backward(dy: TensorLike, opts: NormBackwardOptions = {}): Output {
    this.live();
    checkOptionKeys("backward", opts, BACKWARD_KEYS);
    const s = this.#saved;
    if (!s) throw new StateError("backward() needs a forward() first");
    if (s.x.freed) throw new StateError("the input of the last forward() was freed before backward()");
    const g = layerNormBackward(dy, s.x, s.shape, this.normalizedShape, { weight: this.weightT, mean: s.mean, invStd: s.invStd, out: opts.out, engine: this.engine });
    this.accumulate(g.dWeight, g.dBias);
    return g.dx;
  }

  protected forgetSaved(): void {
    this.#saved = undefined;
  }
}
