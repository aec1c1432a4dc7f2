/**
 * An independent float64 Batch Normalization, written from the definitions (Ioffe &
 * Szegedy 2015; PyTorch's and ONNX's running-statistics rules) with plain loops. It shares
 * no code with the kernels: the channel of each element is derived here from the shape.
 */
export type Layout = "NCHW" | "NHWC";

/** Channel of every flat index. */
export function channelOf(shape: readonly number[], layout: Layout): { C: number; ch: Int32Array } {
  const size = shape.reduce((a, b) => a * b, 1);
  const C = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  const ch = new Int32Array(size);
  for (let i = 0; i < size; i++) ch[i] = layout === "NCHW" ? Math.floor(i / inner) % C : i % C;
  return { C, ch };
}

export interface RefStats {
  count: number;
  mean: Float64Array;
  /** Biased (population) variance. */
  varBiased: Float64Array;
}

export function refStats(x: ArrayLike<number>, shape: readonly number[], layout: Layout): RefStats {
  const { C, ch } = channelOf(shape, layout);
  const count = x.length / C;
  const mean = new Float64Array(C);
  for (let i = 0; i < x.length; i++) mean[ch[i]] += x[i];
  for (let c = 0; c < C; c++) mean[c] /= count;
  const varBiased = new Float64Array(C);
  for (let i = 0; i < x.length; i++) varBiased[ch[i]] += (x[i] - mean[ch[i]]) ** 2;
  for (let c = 0; c < C; c++) varBiased[c] /= count;
  return { count, mean, varBiased };
}

export interface Affine {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
}

/** y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel. */
export function refNormalize(
  x: ArrayLike<number>, shape: readonly number[], layout: Layout,
  mean: ArrayLike<number>, variance: ArrayLike<number>, eps: number, a: Affine,
): Float64Array {
  const { ch } = channelOf(shape, layout);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = ch[i];
    const g = a.weight ? a.weight[c] : 1;
    const b = a.bias ? a.bias[c] : 0;
    y[i] = ((x[i] - mean[c]) / Math.sqrt(variance[c] + eps)) * g + b;
  }
  return y;
}

export function refTrain(x: ArrayLike<number>, shape: readonly number[], layout: Layout, eps: number, a: Affine) {
  const s = refStats(x, shape, layout);
  const y = refNormalize(x, shape, layout, s.mean, s.varBiased, eps, a);
  const invStd = s.varBiased.map((v) => 1 / Math.sqrt(v + eps));
  return { ...s, y, invStd };
}

/** Running statistics after one training step. */
export function refRunning(
  rm: ArrayLike<number>, rv: ArrayLike<number>, s: RefStats, momentum: number, convention: "pytorch" | "onnx",
): { mean: Float64Array; var: Float64Array } {
  const C = s.mean.length;
  const mean = new Float64Array(C);
  const vr = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    if (convention === "pytorch") {
      const unbiased = (s.varBiased[c] * s.count) / (s.count - 1);
      mean[c] = (1 - momentum) * rm[c] + momentum * s.mean[c];
      vr[c] = (1 - momentum) * rv[c] + momentum * unbiased;
    } else {
      mean[c] = momentum * rm[c] + (1 - momentum) * s.mean[c];
      vr[c] = momentum * rv[c] + (1 - momentum) * s.varBiased[c];
    }
  }
  return { mean, var: vr };
}

/** Training-mode gradients: the textbook formula, m values per channel. */
export function refBackward(
  dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], layout: Layout,
  mean: ArrayLike<number>, invStd: ArrayLike<number>, weight?: ArrayLike<number>,
) {
  const { C, ch } = channelOf(shape, layout);
  const m = x.length / C;
  const dBias = new Float64Array(C);
  const dWeight = new Float64Array(C);
  for (let i = 0; i < x.length; i++) {
    const c = ch[i];
    dBias[c] += dy[i];
    dWeight[c] += dy[i] * (x[i] - mean[c]) * invStd[c];
  }
  const dx = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = ch[i];
    const g = weight ? weight[c] : 1;
    const xhat = (x[i] - mean[c]) * invStd[c];
    dx[i] = ((g * invStd[c]) / m) * (m * dy[i] - dBias[c] - xhat * dWeight[c]);
  }
  return { dx, dWeight, dBias };
}

/** Deterministic data: splitmix32 + Box-Muller. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return {
    uniform: next,
    normal,
    normals(n: number, mean = 0, std = 1): Float32Array {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = mean + std * normal();
      return a;
    },
  };
}

/**
 * Max of |got - want| / (abs + rel * |want|); <= 1 means within tolerance. A non-finite
 * value on either side is infinitely wrong (ratio Infinity), unless both sides hold the
 * same non-finite value (NaN and NaN, or the same infinity): then the reference itself
 * says the result is not finite there. The first index of the worst ratio is reported.
 */
export function worst(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, rel: number): { ratio: number; at: number } {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  let ratio = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    let r: number;
    if (Number.isFinite(g) && Number.isFinite(w)) {
      const d = Math.abs(g - w);
      r = d === 0 ? 0 : d / (abs + rel * Math.abs(w)); // exact equality passes a zero tolerance
    } else {
      r = Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w)) ? 0 : Infinity;
    }
    if (r > ratio) {
      ratio = r;
      at = i;
    }
  }
  return { ratio, at };
}

/**
 * The mask's layout, written out independently of the library: each unit (a plane when
 * channels-first with spatial size > 1, else a row of C) starts a 32-bit word; bit i of
 * unit u is set iff y > 0. Returns the first disagreement, or null.
 */
export function maskProblem(mask: Float32Array, y: Float32Array, shape: readonly number[], layout: Layout): string | null {
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  const unit = inner > 1 ? inner : channelOf(shape, layout).C;
  const wpu = Math.ceil(unit / 32);
  const words = new Uint32Array(mask.buffer, mask.byteOffset, mask.length);
  if (words.length !== (y.length / unit) * wpu) return `mask has ${words.length} words, want ${(y.length / unit) * wpu}`;
  for (let u = 0; u < y.length / unit; u++) {
    for (let i = 0; i < wpu * 32; i++) {
      const got = ((words[u * wpu + (i >> 5)] >>> (i & 31)) & 1) === 1;
      const want = i < unit && y[u * unit + i] > 0;
      if (got !== want) return `unit ${u} element ${i}: bit ${got}, y ${y[u * unit + i]}`;
    }
  }
  return null;
}
