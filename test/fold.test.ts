/**
 * foldBatchNorm against PyTorch's own fuse_linear_bn_eval / fuse_conv_bn_eval (recorded in
 * test/fixtures/fold_bn.json by make_fold_fixture.py) and an f64 reference; the weight
 * layouts (OIHW, channels-last OHWI, HWIO); module and state-dict sources; errors.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import {
  init, foldBatchNorm, BatchNorm1d, BatchNorm2d, batchNormEval,
  ChannelMismatchError, InvalidArgumentError, InvalidOptionError, StateError, type StateDict,
} from "../dist/index.js";
import { rng } from "./reference.js";

interface FoldCase {
  name: string;
  kind: "linear" | "conv";
  weight_shape: number[];
  weight: number[];
  bias: number[] | null;
  bn: { eps: number; running_mean: number[]; running_var: number[]; weight: number[] | null; bias: number[] | null };
  fused_weight: number[];
  fused_bias: number[];
}
const fixture = JSON.parse(readFileSync(new URL("./fixtures/fold_bn.json", import.meta.url), "utf8")) as {
  torch_version: string;
  cases: FoldCase[];
};

beforeAll(async () => {
  await init();
});

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const EPS32 = 2 ** -23;

/** The f64 reference: straight from the definition, per element. */
function refFold(c: FoldCase): { w: Float64Array; b: Float64Array; wScale: Float64Array; bScale: Float64Array } {
  const C = c.bn.running_mean.length;
  const per = c.weight.length / C;
  const w = new Float64Array(c.weight.length), wScale = new Float64Array(c.weight.length);
  const b = new Float64Array(C), bScale = new Float64Array(C);
  for (let o = 0; o < C; o++) {
    const s = (c.bn.weight ? c.bn.weight[o] : 1) / Math.sqrt(c.bn.running_var[o] + c.bn.eps);
    for (let i = o * per; i < (o + 1) * per; i++) {
      w[i] = c.weight[i] * s;
      wScale[i] = Math.abs(w[i]);
    }
    const t = ((c.bias ? c.bias[o] : 0) - c.bn.running_mean[o]) * s;
    const beta = c.bn.bias ? c.bn.bias[o] : 0;
    b[o] = t + beta;
    bScale[o] = Math.abs(t) + Math.abs(beta); // the size of the terms: cancellation is allowed for
  }
  return { w, b, wScale, bScale };
}

/** |got - want| <= ulps * eps32 * scale, element by element (NaN fails). */
function expectUlps(what: string, got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, ulps: number) {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const tol = ulps * EPS32 * Math.max(Math.abs(scale[i]), Number.MIN_VALUE);
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tolerance ${tol})`);
    }
  }
}

const stateDictOf = (c: FoldCase): StateDict => ({
  running_mean: f32(c.bn.running_mean),
  running_var: f32(c.bn.running_var),
  ...(c.bn.weight ? { weight: f32(c.bn.weight), bias: f32(c.bn.bias!) } : {}),
});

/** OIHW (out first, then in, then kernel dims) to channels-last OHWI or to HWIO. */
function permute(c: FoldCase, w: ArrayLike<number>, to: "OHWI" | "HWIO"): Float32Array {
  const [O, I, ...k] = c.weight_shape;
  const K = k.reduce((a, b) => a * b, 1);
  const out = new Float32Array(w.length);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      for (let s = 0; s < K; s++) {
        const src = (o * I + i) * K + s;
        out[to === "OHWI" ? (o * K + s) * I + i : (s * I + i) * O + o] = w[src];
      }
    }
  }
  return out;
}

describe.each(fixture.cases.map((c) => [c.name, c] as const))(`PyTorch ${fixture.torch_version} fuse_*_bn_eval: %s`, (_n, c) => {
  const ref = refFold(c);
  const bias = c.bias ? f32(c.bias) : undefined;

  it("from a state dict: PyTorch's folded weight and bias, and the f64 reference", () => {
    const r = foldBatchNorm(f32(c.weight), stateDictOf(c), { bias, eps: c.bn.eps });
    // PyTorch rounds rsqrt, gamma * rsqrt and the product in f32; we round once.
    expectUlps("weight vs PyTorch", r.weight, c.fused_weight, ref.wScale, 3);
    expectUlps("bias vs PyTorch", r.bias, c.fused_bias, ref.bScale, 4);
    expectUlps("weight vs f64", r.weight, ref.w, ref.wScale, 0.5 + 1e-9);
    expectUlps("bias vs f64", r.bias, ref.b, ref.bScale, 1);
  });

  it("from a module in eval mode: the same numbers", () => {
    const C = c.bn.running_mean.length;
    using bn = new BatchNorm1d(C, { eps: c.bn.eps, affine: c.bn.weight !== null });
    bn.loadStateDict({ ...stateDictOf(c), num_batches_tracked: 0n });
    const fromDict = foldBatchNorm(f32(c.weight), stateDictOf(c), { bias, eps: c.bn.eps });
    const fromModule = foldBatchNorm(f32(c.weight), bn.eval(), { bias });
    expect(fromModule).toEqual(fromDict);
  });

  if (c.kind === "conv") {
    it("channels-last OHWI and out-last HWIO weights fold to the permuted OIHW result", () => {
      const oihw = foldBatchNorm(f32(c.weight), stateDictOf(c), { bias, eps: c.bn.eps });
      for (const layout of ["OHWI", "HWIO"] as const) {
        const r = foldBatchNorm(permute(c, c.weight, layout), stateDictOf(c), { bias, eps: c.bn.eps, layout });
        expect(r.weight, layout).toEqual(permute(c, oihw.weight, layout));
        expect(r.bias, layout).toEqual(oihw.bias);
      }
    });
  }
});

describe("foldBatchNorm", () => {
  it("a folded Linear equals Linear then batchNormEval (f64 reference of the composition)", () => {
    const r = rng(7);
    const [N, I, O] = [6, 5, 4];
    const w = f32(Array.from({ length: O * I }, () => r.normal()));
    const b = f32(Array.from({ length: O }, () => r.normal()));
    const sd: StateDict = {
      running_mean: f32(Array.from({ length: O }, () => r.normal() * 3)),
      running_var: f32(Array.from({ length: O }, () => 0.1 + r.uniform() * 3)),
      weight: f32(Array.from({ length: O }, () => r.normal())),
      bias: f32(Array.from({ length: O }, () => r.normal())),
    };
    const x = f32(Array.from({ length: N * I }, () => r.normal()));
    const lin = (W: ArrayLike<number>, B: ArrayLike<number>) => {
      const y = new Float32Array(N * O);
      for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) {
        let s = B[o];
        for (let i = 0; i < I; i++) s += W[o * I + i] * x[n * I + i];
        y[n * O + o] = s;
      }
      return y;
    };
    const f = foldBatchNorm(w, sd, { bias: b });
    const want = batchNormEval(lin(w, b), [N, O], {
      runningMean: sd.running_mean!, runningVar: sd.running_var!, weight: sd.weight, bias: sd.bias,
    }) as Float32Array;
    const got = lin(f.weight, f.bias);
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-4 * (1 + Math.abs(want[i])));
  });

  it("rejects bad input with named errors", () => {
    const sd: StateDict = { running_mean: new Float32Array(3), running_var: new Float32Array(3).fill(1) };
    expect(() => foldBatchNorm(new Float32Array(10), sd)).toThrow(ChannelMismatchError);
    expect(() => foldBatchNorm(new Float32Array(0), sd)).toThrow(ChannelMismatchError);
    expect(() => foldBatchNorm(new Float32Array(6), sd, { bias: new Float32Array(2) })).toThrow(ChannelMismatchError);
    expect(() => foldBatchNorm(new Float32Array(6), { running_mean: new Float32Array(3) })).toThrow(InvalidArgumentError);
    expect(() => foldBatchNorm(new Float32Array(6), { ...sd, weight: new Float32Array(2) })).toThrow(ChannelMismatchError);
    expect(() => foldBatchNorm([1, 2, 3] as unknown as Float32Array, sd)).toThrow(InvalidArgumentError);
    expect(() => foldBatchNorm(new Float32Array(6), sd, { eps: -1 })).toThrow(InvalidOptionError);
    expect(() => foldBatchNorm(new Float32Array(6), sd, { layout: "IOHW" as "OIHW" })).toThrow(InvalidOptionError);
    using bn = new BatchNorm2d(3);
    expect(() => foldBatchNorm(new Float32Array(6), bn)).toThrow(StateError); // training mode
    expect(() => foldBatchNorm(new Float32Array(6), bn.eval(), { eps: 1e-3 })).toThrow(InvalidOptionError);
    using noStats = new BatchNorm2d(3, { trackRunningStats: false });
    expect(() => foldBatchNorm(new Float32Array(6), noStats.eval())).toThrow(StateError);
  });
});
