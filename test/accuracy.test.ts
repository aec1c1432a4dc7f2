/**
 * Large mean against small spread: x = 1e4 + N(0, 0.1). A single-pass E[x^2] - E[x]^2 in
 * f32 returns rounding noise for the variance here; the kernels must not.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createEngine, supportedBuilds, batchNormTrainOn, type Engine } from "../dist/index.js";
import { refTrain, refStats, rng } from "./reference.js";
import { expectClose } from "./close.js";

const builds = await supportedBuilds();

/** What a naive single-pass f32 variance gives, to show the test can fail. */
function naiveF32Var(x: Float32Array): number {
  let s = Math.fround(0);
  let s2 = Math.fround(0);
  for (const v of x) {
    s = Math.fround(s + v);
    s2 = Math.fround(s2 + Math.fround(v * v));
  }
  const m = Math.fround(s / x.length);
  return Math.fround(Math.fround(s2 / x.length) - Math.fround(m * m));
}

describe.each(builds)("build %s", (build) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
  });

  it.each([
    [[8, 4, 32, 32], "NCHW", 1e4, 0.1],
    [[8, 32, 32, 4], "NHWC", 1e4, 0.1],
    [[64, 3], "NCHW", 1e6, 1],
  ] as const)("shape %j %s, mean %d, std %d", (shape, layout, mean, std) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = rng(3).normals(size, mean, std);
    const got = batchNormTrainOn(engine, x, shape, { layout });
    const want = refTrain(x, shape, layout, 1e-5, {});
    // invStd to 1e-4 relative means the variance is right to ~2e-4.
    expectClose("invStd", got.invStd, want.invStd, 0, 1e-4);
    expectClose("mean", got.mean, want.mean, 0, 1e-7);
    // Outputs are O(1): exact to f32 rounding, not to the f32 rounding of the mean.
    expectClose("y", got.y as Float32Array, want.y, 2e-5, 1e-5);
  });

  it("the check above is one a naive single-pass f32 variance fails", () => {
    const x = rng(3).normals(4096, 1e4, 0.1);
    const exact = refStats(x, [4096, 1], "NCHW").varBiased[0];
    const naive = naiveF32Var(x);
    expect(Math.abs(naive - exact) / exact).toBeGreaterThan(0.5);
  });
});
