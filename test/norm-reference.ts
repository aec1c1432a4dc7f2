/**
 * Independent float64 references of LayerNorm, RMSNorm and GroupNorm (InstanceNorm =
 * GroupNorm with one channel per group), written from the definitions with explicit
 * (row, column) and (n, c, s) indices and two-pass statistics; backward by the textbook
 * formula `dx = invstd * (g - mean(g) - xhat * mean(g * xhat))` with `g = dy * gamma`
 * (RMSNorm: no mean term, `xhat = x * invstd`).
 */

export interface RefNorm {
  y: Float64Array;
  /** One per statistic (row, or (n, g)). */
  mean: Float64Array;
  invStd: Float64Array;
}

export interface RefNormGrads {
  dx: Float64Array;
  dWeight: Float64Array;
  dBias: Float64Array;
}

/** Index sets: for each statistic, the element offsets it is taken over, and each element's parameter index. */
export interface Geometry {
  sets: number[][];
  param: (offset: number) => number;
  params: number;
}

export function rowGeometry(rows: number, len: number): Geometry {
  const sets = Array.from({ length: rows }, (_, r) => Array.from({ length: len }, (_, d) => r * len + d));
  return { sets, param: (o) => o % len, params: len };
}

/** `(N, C, S)` (`"NCHW"`) or `(N, S, C)` (`"NHWC"`) in `groups` groups. */
export function groupGeometry(n: number, c: number, s: number, groups: number, layout: "NCHW" | "NHWC"): Geometry {
  const off = (k: number, ch: number, sp: number) => (layout === "NCHW" ? (k * c + ch) * s + sp : (k * s + sp) * c + ch);
  const gs = c / groups;
  const sets: number[][] = [];
  for (let k = 0; k < n; k++) {
    for (let g = 0; g < groups; g++) {
      const set: number[] = [];
      for (let ch = g * gs; ch < (g + 1) * gs; ch++) for (let sp = 0; sp < s; sp++) set.push(off(k, ch, sp));
      sets.push(set);
    }
  }
  return { sets, param: (o) => (layout === "NCHW" ? Math.floor(o / s) % c : o % c), params: c };
}

/** Forward in f64; `rms`: no mean, the statistic is the mean square. */
export function refNorm(x: ArrayLike<number>, geo: Geometry, weight: ArrayLike<number> | undefined, bias: ArrayLike<number> | undefined, eps: number, rms = false): RefNorm {
  const y = new Float64Array(x.length);
  const mean = new Float64Array(geo.sets.length);
  const invStd = new Float64Array(geo.sets.length);
  geo.sets.forEach((set, i) => {
    let mu = 0;
    if (!rms) {
      for (const o of set) mu += x[o];
      mu /= set.length;
    }
    let v = 0;
    for (const o of set) v += (x[o] - mu) ** 2;
    v /= set.length;
    const is = 1 / Math.sqrt(v + eps);
    mean[i] = mu;
    invStd[i] = is;
    for (const o of set) {
      const p = geo.param(o);
      y[o] = (x[o] - mu) * is * (weight ? weight[p] : 1) + (bias ? bias[p] : 0);
    }
  });
  return { y, mean, invStd };
}

/** Backward in f64 from given statistics (the forward's saved ones). */
export function refNormBackward(
  dy: ArrayLike<number>, x: ArrayLike<number>, geo: Geometry, weight: ArrayLike<number> | undefined,
  mean: ArrayLike<number>, invStd: ArrayLike<number>, rms = false,
): RefNormGrads {
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(geo.params);
  const dBias = new Float64Array(geo.params);
  geo.sets.forEach((set, i) => {
    const m = set.length;
    let mg = 0;
    let mgx = 0;
    for (const o of set) {
      const p = geo.param(o);
      const g = dy[o] * (weight ? weight[p] : 1);
      const xhat = (x[o] - mean[i]) * invStd[i];
      mg += g / m;
      mgx += (g * xhat) / m;
      dWeight[p] += dy[o] * xhat;
      dBias[p] += dy[o];
    }
    if (rms) mg = 0;
    for (const o of set) {
      const g = dy[o] * (weight ? weight[geo.param(o)] : 1);
      const xhat = (x[o] - mean[i]) * invStd[i];
      dx[o] = invStd[i] * (g - mg - xhat * mgx);
    }
  });
  return { dx, dWeight, dBias };
}
