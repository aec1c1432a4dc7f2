/** The simd builds really use f32x4 in every kernel; the scalar build uses no SIMD at all. */
import { expect, it } from "vitest";
// @ts-expect-error plain ES module script without types
import { report } from "../scripts/simd-report.mjs";

const r = report() as {
  perFunction: { function: string; f32x4: number }[];
  shipped: Record<string, { f32x4: number; v128: number }>;
};

it("each hot kernel function of the simd build has f32x4 arithmetic", () => {
  const count = (name: string) => r.perFunction.filter((f) => f.function.includes(name)).reduce((a, f) => a + f.f32x4, 0);
  // The normalise pass's loops live in `affine::run`'s per-task closure (one per flag set,
  // outlined since the bit mask's flag), not inlined into affine_per_channel.
  for (const kernel of ["moments::moments", "affine::run", "backward::grad_sums", "backward::dx_apply"]) {
    expect(count(kernel), kernel).toBeGreaterThanOrEqual(8);
  }
});

it("shipped simd builds contain f32x4 code and the scalar build none", () => {
  expect(r.shipped.simd.f32x4).toBeGreaterThan(100);
  expect(r.shipped["simd-threads"].f32x4).toBeGreaterThan(100);
  expect(r.shipped.scalar).toEqual({ f32x4: 0, v128: 0 });
});
