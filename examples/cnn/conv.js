// The convolutional layers of the CNN example, in plain JS on Float32Arrays, NCHW layout
// (what BatchNorm2d takes). Example code, not part of batchnorm-wasm's API.
//
// A 3x3 convolution (stride 1, padding 1) is computed as im2col + matrix product: each
// image's input becomes a (Cin*9) x (H*W) matrix `cols` whose column p holds the 3x3
// neighbourhood of pixel p, so the output (Cout x H*W) is W (Cout x Cin*9) times cols.
// The products below run their inner loops over long contiguous rows, unrolled by four:
// the shape that lets a JIT keep the loop tight (and that a wasm SIMD version would use).

/** C[M x N] += A[M x K] * B[K x N] (row-major): rows of C gather scaled rows of B. */
export function matmulAdd(A, B, C, M, K, N, a0 = 0, b0 = 0, c0 = 0) {
  for (let m = 0; m < M; m++) {
    const cRow = c0 + m * N;
    for (let k = 0; k < K; k++) {
      const a = A[a0 + m * K + k];
      if (a === 0) continue;
      const bRow = b0 + k * N;
      let j = 0;
      for (; j + 4 <= N; j += 4) {
        C[cRow + j] += a * B[bRow + j];
        C[cRow + j + 1] += a * B[bRow + j + 1];
        C[cRow + j + 2] += a * B[bRow + j + 2];
        C[cRow + j + 3] += a * B[bRow + j + 3];
      }
      for (; j < N; j++) C[cRow + j] += a * B[bRow + j];
    }
  }
}

/** C[M x N] += A[M x K] * B[N x K]^T (row-major): dot products of rows. */
export function matmulAddBt(A, B, C, M, K, N, a0 = 0, b0 = 0) {
  for (let m = 0; m < M; m++) {
    const aRow = a0 + m * K;
    for (let n = 0; n < N; n++) {
      const bRow = b0 + n * K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, j = 0;
      for (; j + 4 <= K; j += 4) {
        s0 += A[aRow + j] * B[bRow + j];
        s1 += A[aRow + j + 1] * B[bRow + j + 1];
        s2 += A[aRow + j + 2] * B[bRow + j + 2];
        s3 += A[aRow + j + 3] * B[bRow + j + 3];
      }
      for (; j < K; j++) s0 += A[aRow + j] * B[bRow + j];
      C[m * N + n] += s0 + s1 + s2 + s3;
    }
  }
}

/**
 * cols[(c*9 + ky*3 + kx) * H*W + y*W + x] = x[c, y+ky-1, x+kx-1] (0 outside the image),
 * for one image of C channels starting at x[x0]. `add` runs the same loops backwards
 * (col2im): dx[...] += cols[...].
 */
function im2col(img, x0, cols, C, H, W, add = false) {
  const P = H * W;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < 3; ky++) {
      for (let kx = 0; kx < 3; kx++) {
        const row = (c * 9 + ky * 3 + kx) * P;
        const xFrom = Math.max(0, 1 - kx), xTo = Math.min(W, W + 1 - kx);
        for (let y = 0; y < H; y++) {
          const sy = y + ky - 1;
          if (sy < 0 || sy >= H) continue; // zero padding: cols was zeroed, dx gets nothing
          const src = x0 + c * P + sy * W + kx - 1, dst = row + y * W;
          if (add) for (let x = xFrom; x < xTo; x++) img[src + x] += cols[dst + x];
          else for (let x = xFrom; x < xTo; x++) cols[dst + x] = img[src + x];
        }
      }
    }
  }
}

/** 3x3 convolution, stride 1, padding 1: (N, Cin, H, W) -> (N, Cout, H, W). */
export class Conv3x3 {
  /** `bias`: false when a BatchNorm follows (its beta makes a bias redundant). */
  constructor(cin, cout, rng, { bias = true, inputGrad = true } = {}) {
    Object.assign(this, { cin, cout, inputGrad, K: cin * 9 });
    this.W = new Float32Array(cout * this.K);
    const std = Math.sqrt(2 / this.K); // He initialisation (ReLU follows)
    for (let i = 0; i < this.W.length; i++) this.W[i] = rng.normal() * std;
    this.gW = new Float32Array(this.W.length);
    this.b = bias ? new Float32Array(cout) : null;
    this.gb = bias ? new Float32Array(cout) : null;
  }

  /** `x`: n images of (cin, h, w). Keeps the im2col matrices for backward. */
  forward(x, [n, , h, w]) {
    const { cin, cout, K, W, b } = this;
    const P = h * w;
    this.shape = [n, cin, h, w];
    this.cols = new Float32Array(n * K * P);
    const y = new Float32Array(n * cout * P);
    for (let i = 0; i < n; i++) {
      im2col(x, i * cin * P, this.cols.subarray(i * K * P, (i + 1) * K * P), cin, h, w);
      if (b) for (let c = 0; c < cout; c++) y.fill(b[c], (i * cout + c) * P, (i * cout + c + 1) * P);
      matmulAdd(W, this.cols, y, cout, K, P, 0, i * K * P, i * cout * P);
    }
    return { y, shape: [n, cout, h, w] };
  }

  /** Accumulates gW (and gb); returns dx, or null for the first layer. */
  backward(dy) {
    const { cin, cout, K, W, gW, gb, cols } = this;
    const [n, , h, w] = this.shape;
    const P = h * w;
    for (let i = 0; i < n; i++) {
      matmulAddBt(dy, cols, gW, cout, P, K, i * cout * P, i * K * P); // gW += dy_i cols_i^T
      if (gb) for (let c = 0; c < cout; c++) for (let p = 0; p < P; p++) gb[c] += dy[(i * cout + c) * P + p];
    }
    if (!this.inputGrad) return null;
    const Wt = new Float32Array(K * cout); // W^T, so dcols = W^T dy is another matmulAdd
    for (let c = 0; c < cout; c++) for (let k = 0; k < K; k++) Wt[k * cout + c] = W[c * K + k];
    const dx = new Float32Array(n * cin * P);
    const dcols = new Float32Array(K * P);
    for (let i = 0; i < n; i++) {
      dcols.fill(0);
      matmulAdd(Wt, dy, dcols, K, cout, P, 0, i * cout * P, 0);
      im2col(dx, i * cin * P, dcols, cin, h, w, true);
    }
    return dx;
  }

  params() {
    const p = [{ name: "W", value: () => this.W, grad: () => this.gW }];
    if (this.b) p.push({ name: "b", value: () => this.b, grad: () => this.gb });
    return p;
  }

  zeroGrad() {
    this.gW.fill(0);
    this.gb?.fill(0);
  }
}

/** 2x2 max pooling, stride 2: (N, C, H, W) -> (N, C, H/2, W/2) (H and W even). */
export class MaxPool2 {
  forward(x, [n, c, h, w]) {
    const oh = h >> 1, ow = w >> 1, planes = n * c;
    const y = new Float32Array(planes * oh * ow);
    this.argmax = new Int32Array(y.length); // where each output came from, for backward
    this.inputLength = x.length;
    for (let p = 0, o = 0; p < planes; p++) {
      const base = p * h * w;
      for (let yy = 0; yy < oh; yy++) {
        for (let xx = 0; xx < ow; xx++, o++) {
          const i0 = base + 2 * yy * w + 2 * xx;
          let best = i0;
          if (x[i0 + 1] > x[best]) best = i0 + 1;
          if (x[i0 + w] > x[best]) best = i0 + w;
          if (x[i0 + w + 1] > x[best]) best = i0 + w + 1;
          y[o] = x[best];
          this.argmax[o] = best;
        }
      }
    }
    return { y, shape: [n, c, oh, ow] };
  }

  backward(dy) {
    const dx = new Float32Array(this.inputLength);
    for (let o = 0; o < dy.length; o++) dx[this.argmax[o]] += dy[o];
    return dx;
  }
}
