/**
 * Backward against finite differences of the scalar loss L = sum(w * y), with y the
 * training-mode forward: central differences in f64 through the reference forward
 * (tight), and through the wasm forward itself in f32 (loose, but end to end).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { init, batchNormTrain, batchNormBackward, type Layout } from "../dist/index.js";
import { refTrain, rng } from "./reference.js";
import { expectClose } from "./close.js";

beforeAll(async () => {
  await init();
});

const cases: [number[], Layout][] = [
  [[3, 2, 2], "NCHW"],
  [[2, 3, 5], "NCHW"],
  [[4, 3], "NCHW"],
  [[2, 2, 3], "NHWC"],
  [[3, 2, 2, 2], "NHWC"],
];

describe.each(cases)("shape %j %s", (shape, layout) => {
  const size = shape.reduce((a, b) => a * b, 1);
  const C = layout === "NCHW" ? shape[1] : shape[shape.length - 1];
  const r = rng(11);
  const x = r.normals(size, 0.5, 1.5);
  const w = r.normals(size); // dL/dy
  const gamma = r.normals(C, 1, 0.3);
  const beta = r.normals(C);
  const eps = 1e-3;

  const lossRef = (xs: Float64Array, g: Float64Array, b: Float64Array) =>
    refTrain(xs, shape, layout, eps, { weight: g, bias: b }).y.reduce((acc, yi, i) => acc + w[i] * yi, 0);
  const lossWasm = (xs: Float32Array, g: Float32Array, b: Float32Array) =>
    (batchNormTrain(xs, shape, { weight: g, bias: b, eps, layout }).y as Float32Array).reduce((acc, yi, i) => acc + w[i] * yi, 0);

  /** Central differences of `loss` w.r.t. each entry of the three arguments. */
  function numeric<A extends Float32Array | Float64Array>(loss: (a: A, b: A, c: A) => number, args: [A, A, A], h: number) {
    return args.map((arr, k) =>
      Float64Array.from(arr, (_, i) => {
        const plus = args.map((a) => a.slice()) as [A, A, A];
        const minus = args.map((a) => a.slice()) as [A, A, A];
        plus[k][i] += h;
        minus[k][i] -= h;
        return (loss(...plus) - loss(...minus)) / (2 * h);
      }),
    );
  }

  it("matches f64 finite differences of the reference forward", () => {
    const { mean, invStd } = batchNormTrain(x, shape, { weight: gamma, bias: beta, eps, layout });
    const got = batchNormBackward(w, x, shape, { weight: gamma, mean, invStd, layout });
    const [dx, dg, db] = numeric(lossRef, [Float64Array.from(x), Float64Array.from(gamma), Float64Array.from(beta)], 1e-6);
    expectClose("dx", got.dx as Float32Array, dx, 1e-4, 1e-3);
    expectClose("dWeight", got.dWeight, dg, 1e-4, 1e-3);
    expectClose("dBias", got.dBias, db, 1e-4, 1e-3);
  });

  it("matches f32 finite differences of the wasm forward", () => {
    const { mean, invStd } = batchNormTrain(x, shape, { weight: gamma, bias: beta, eps, layout });
    const got = batchNormBackward(w, x, shape, { weight: gamma, mean, invStd, layout });
    const [dx, dg, db] = numeric(lossWasm, [x, gamma, beta], 1e-2);
    expectClose("dx", got.dx as Float32Array, dx, 5e-3, 2e-2);
    expectClose("dWeight", got.dWeight, dg, 5e-3, 2e-2);
    expectClose("dBias", got.dBias, db, 5e-3, 2e-2);
    // Non-trivial: the gradient through the batch statistics is not dy * gamma * invStd.
    const naive = Float64Array.from(w, (g, i) => g * gamma[layout === "NCHW" ? Math.floor(i / (size / shape[0] / C)) % C : i % C] * invStd[0]);
    expect(naive.some((v, i) => Math.abs(v - dx[i]) > 0.05)).toBe(true);
  });
});
