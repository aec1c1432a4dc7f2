// Plain JavaScript batch norm: the "no library" peer, and (with its float64
// accumulators) the reference that the smoke checks compare every contender to.
// Layout-generic through (outer, channels, inner): NCHW has inner = H*W, NHWC inner = 1.

/** (outer, channels, inner) of a shape, like the library's dimsOf. */
export function dimsOf(shape, layout) {
  const size = shape.reduce((a, b) => a * b, 1);
  const channels = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  return { outer: size / (channels * inner), channels, inner, size, perChannel: size / channels };
}

/** y = x * scale[c] + shift[c], the elementwise pass shared by eval and train. */
function affine(x, y, d, scale, shift) {
  const { outer, channels: C, inner } = d;
  if (inner === 1) {
    for (let o = 0, i = 0; o < outer; o++) for (let c = 0; c < C; c++, i++) y[i] = x[i] * scale[c] + shift[c];
    return;
  }
  for (let o = 0, i = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const s = scale[c], t = shift[c];
      for (const end = i + inner; i < end; i++) y[i] = x[i] * s + t;
    }
  }
}

export function evalForward(x, y, d, w, b, rm, rv, eps) {
  const C = d.channels;
  const scale = new Float64Array(C), shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (w ? w[c] : 1) / Math.sqrt(rv[c] + eps);
    shift[c] = (b ? b[c] : 0) - rm[c] * scale[c];
  }
  affine(x, y, d, scale, shift);
}

/** Per-channel sum and sum of squares of x (float64 accumulators, one pass). */
function sumsX(x, d) {
  const { outer, channels: C, inner } = d;
  const s = new Float64Array(C), ss = new Float64Array(C);
  if (inner === 1) {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++, i++) { const v = x[i]; s[c] += v; ss[c] += v * v; }
    }
  } else {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++) {
        let t = 0, tt = 0;
        for (const end = i + inner; i < end; i++) { const v = x[i]; t += v; tt += v * v; }
        s[c] += t; ss[c] += tt;
      }
    }
  }
  return [s, ss];
}

/** Per-channel sum(dy) and sum(dy * (x - mean)). */
function sumsBackward(dy, x, mean, d) {
  const { outer, channels: C, inner } = d;
  const s = new Float64Array(C), sx = new Float64Array(C);
  if (inner === 1) {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++, i++) { const g = dy[i]; s[c] += g; sx[c] += g * (x[i] - mean[c]); }
    }
  } else {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++) {
        const m = mean[c];
        let t = 0, tx = 0;
        for (const end = i + inner; i < end; i++) { const g = dy[i]; t += g; tx += g * (x[i] - m); }
        s[c] += t; sx[c] += tx;
      }
    }
  }
  return [s, sx];
}

/**
 * Training forward: batch mean and biased variance (one pass of float64 sums),
 * normalise, update running stats.
 * convention "pytorch": new = (1-m) old + m batch (unbiased var); "onnx": new = m old + (1-m) batch (biased).
 */
export function trainForward(x, y, d, w, b, rm, rv, momentum, eps, convention = "pytorch") {
  const C = d.channels, M = d.perChannel;
  const [s, ss] = sumsX(x, d);
  const mean = new Float32Array(C), invStd = new Float32Array(C);
  const scale = new Float64Array(C), shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const mu = s[c] / M;
    const varB = Math.max(ss[c] / M - mu * mu, 0);
    const is = 1 / Math.sqrt(varB + eps);
    mean[c] = mu; invStd[c] = is;
    scale[c] = (w ? w[c] : 1) * is;
    shift[c] = (b ? b[c] : 0) - mu * scale[c];
    if (rm) {
      if (convention === "onnx") {
        rm[c] = momentum * rm[c] + (1 - momentum) * mu;
        rv[c] = momentum * rv[c] + (1 - momentum) * varB;
      } else {
        rm[c] = (1 - momentum) * rm[c] + momentum * mu;
        rv[c] = (1 - momentum) * rv[c] + momentum * varB * (M / (M - 1));
      }
    }
  }
  affine(x, y, d, scale, shift);
  return { mean, invStd };
}

/** Backward (training mode): one reduction pass over dy and x, one elementwise pass. */
export function backward(dy, x, dx, d, w, mean, invStd) {
  const { outer, channels: C, inner } = d;
  const M = d.perChannel;
  const [sdy, sdyxm] = sumsBackward(dy, x, mean, d);
  const dW = new Float32Array(C), dB = new Float32Array(C);
  const k = new Float64Array(C), a = new Float64Array(C), bb = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const is = invStd[c];
    dB[c] = sdy[c];
    dW[c] = sdyxm[c] * is;
    // dx = w*is*(dy - sdy/M - xhat * sdyxhat/M), xhat = (x-mean)*is
    const g = (w ? w[c] : 1) * is;
    k[c] = g;
    a[c] = (sdyxm[c] * is * is) / M; // coefficient of (x - mean)
    bb[c] = sdy[c] / M;
  }
  if (inner === 1) {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++, i++) dx[i] = k[c] * (dy[i] - bb[c] - (x[i] - mean[c]) * a[c]);
    }
  } else {
    for (let o = 0, i = 0; o < outer; o++) {
      for (let c = 0; c < C; c++) {
        const kc = k[c], ac = a[c], bc = bb[c], mc = mean[c];
        for (const end = i + inner; i < end; i++) dx[i] = kc * (dy[i] - bc - (x[i] - mc) * ac);
      }
    }
  }
  return { dW, dB };
}
