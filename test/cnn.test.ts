/**
 * The CNN example's own layers (examples/cnn): the im2col convolution against a direct
 * 3x3 convolution, its gradients and max pooling's against finite differences, and the
 * whole network (with BatchNorm2d) against a directional finite difference of the loss.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { init } from "../dist/index.js";
// @ts-expect-error: plain-JS example code without types
import { Conv3x3, MaxPool2 } from "../examples/cnn/conv.js";
// @ts-expect-error: plain-JS example code without types
import { Cnn } from "../examples/cnn/model.js";
// @ts-expect-error: plain-JS example code without types
import { Rng, softmaxCrossEntropy } from "../examples/mnist/nn.js";
import { expectClose } from "./close.js";

beforeAll(async () => {
  await init();
});

const rng = new Rng(3);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** y[n, o, y, x] = b[o] + sum over c, ky, kx of W[o, c, ky, kx] * x[n, c, y+ky-1, x+kx-1], in f64. */
function directConv(x: Float32Array, W: Float32Array, b: Float32Array | null, [n, cin, h, w]: number[], cout: number): Float64Array {
  const y = new Float64Array(n * cout * h * w);
  for (let i = 0; i < n; i++) for (let o = 0; o < cout; o++) for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) {
    let s = b ? b[o] : 0;
    for (let c = 0; c < cin; c++) for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
      const sy = yy + ky - 1, sx = xx + kx - 1;
      if (sy >= 0 && sy < h && sx >= 0 && sx < w) s += W[((o * cin + c) * 3 + ky) * 3 + kx] * x[((i * cin + c) * h + sy) * w + sx];
    }
    y[((i * cout + o) * h + yy) * w + xx] = s;
  }
  return y;
}

describe("CNN example layers", () => {
  const shape = [2, 3, 5, 6];
  const cout = 4;

  it("the im2col convolution equals a direct convolution", () => {
    const conv = new Conv3x3(shape[1], cout, rng);
    conv.b.set(randn(cout));
    const x = randn(shape.reduce((a, b) => a * b));
    const { y, shape: out } = conv.forward(x, shape);
    expect(out).toEqual([2, cout, 5, 6]);
    expectClose("conv y", y, directConv(x, conv.W, conv.b, shape, cout), 1e-5, 1e-5);
  });

  it("convolution gradients (W, b, x) equal finite differences", () => {
    const conv = new Conv3x3(shape[1], cout, rng);
    const x = randn(shape.reduce((a, b) => a * b));
    const r = randn(2 * cout * 30); // loss = sum(y * r): linear, so central differences are exact up to rounding
    const loss = () => dot(conv.forward(x, shape).y, r);
    conv.forward(x, shape);
    conv.zeroGrad();
    const dx = conv.backward(r);
    const numeric = (a: Float32Array, i: number) => {
      const keep = a[i];
      a[i] = keep + 0.5; const up = loss();
      a[i] = keep - 0.5; const down = loss();
      a[i] = keep;
      return up - down;
    };
    for (const i of [0, 7, 40, 107]) expect(conv.gW[i]).toBeCloseTo(numeric(conv.W, i), 3);
    for (const i of [0, 3]) expect(conv.gb[i]).toBeCloseTo(numeric(conv.b, i), 3);
    for (const i of [0, 5, 29, 31, 100, 179]) expect(dx[i]).toBeCloseTo(numeric(x, i), 3);
  });

  it("max pooling passes each gradient to the maximum of its 2x2 window", () => {
    const pool = new MaxPool2();
    const x = Float32Array.from([1, 5, 2, 0, 3, 4, 9, 8]); // one 2x4 plane
    const { y, shape: out } = pool.forward(x, [1, 1, 2, 4]);
    expect(Array.from(y)).toEqual([5, 9]);
    expect(out).toEqual([1, 1, 1, 2]);
    expect(Array.from(pool.backward(Float32Array.from([10, 20])))).toEqual([0, 10, 0, 0, 0, 0, 20, 0]);
  });

  it("the whole network, with and without BatchNorm2d: each parameter's gradient along a random direction equals the loss's finite difference", () => {
    for (const bn of [true, false]) {
      const n = 4, size = 8;
      const net = new Cnn({ seed: 5, bn, channels: [3, 4], size });
      const x = Float32Array.from({ length: n * size * size }, () => rng.next());
      const labels = Uint8Array.from([1, 3, 7, 1]);
      const lossOf = () => (softmaxCrossEntropy(net.forward(x, n), labels, n, 10).lossSum as number) / n;
      net.step(x, labels, n, { lr: 0, momentum: 0 }); // gradients at w, w unchanged
      const params = net.params as { name: string; value: () => Float32Array; grad: () => Float32Array }[];
      expect(params.map((p) => p.name)).toEqual(bn ? ["W", "gamma", "beta", "W", "gamma", "beta", "W", "b"] : ["W", "b", "W", "b", "W", "b"]);
      for (const p of params) {
        const d = randn(p.value().length);
        const norm = Math.sqrt(dot(d, d));
        d.forEach((v, j) => (d[j] = v / norm)); // a unit direction
        const analytic = dot(p.grad(), d);
        // A small step (1e-3 in norm), so that no ReLU or max-pool switch is crossed; f32
        // rounding of the loss (about 2e-7) then bounds the difference's error near 1e-4.
        const eps = 1e-3;
        const move = (t: number) => { const w = p.value(); for (let j = 0; j < w.length; j++) w[j] += t * d[j]; };
        move(eps); const up = lossOf();
        move(-2 * eps); const down = lossOf();
        move(eps);
        expect(Math.abs((up - down) / (2 * eps) - analytic), `${bn ? "BN" : "plain"} ${p.name}`).toBeLessThan(5e-4 + 5e-3 * Math.abs(analytic));
      }
      net.dispose();
    }
  });
});
