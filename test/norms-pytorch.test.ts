/**
 * The LayerNorm, RMSNorm, GroupNorm and InstanceNorm1d/2d/3d modules against PyTorch's
 * own (recorded by test/fixtures/make_norms_fixture.py into pytorch_norms.json): outputs,
 * input gradients, parameter gradients and running statistics, step by step, on every
 * build (the threads build with a low parallel threshold so its pool runs).
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEngine, supportedBuilds, setParallelThreshold, parallelThreshold,
  LayerNorm, RMSNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, type Engine, type NormModule, type Layout,
} from "../dist/index.js";
import { expectClose } from "./close.js";
import { groupGeometry, refNorm, rowGeometry, type Geometry } from "./norm-reference.js";

interface NormStep {
  training: boolean;
  shape: number[];
  x: number[];
  dy: number[];
  y: number[];
  dx: number[];
  dweight: number[] | null;
  dbias: number[] | null;
  running_mean?: number[];
  running_var?: number[];
}

interface NormCase {
  kind: string;
  args: (number | number[])[];
  kwargs: Record<string, number | boolean>;
  layout: Layout;
  offset: number;
  /** Input without the N dim (InstanceNorm only). */
  unbatched: boolean;
  weight: number[] | null;
  bias: number[] | null;
  steps: NormStep[];
}

const fixture = JSON.parse(readFileSync(new URL("./fixtures/pytorch_norms.json", import.meta.url), "utf8")) as { torch_version: string; cases: NormCase[] };
const builds = await supportedBuilds();
const engines = new Map<string, Engine>();

beforeAll(async () => {
  for (const b of builds) engines.set(b, await createEngine(b));
});

const threads = () => engines.get("simd-threads");
let savedThreshold = 0;
beforeAll(() => {
  const t = threads();
  if (t) {
    savedThreshold = parallelThreshold(t);
    setParallelThreshold(64, t);
  }
});
afterAll(() => {
  const t = threads();
  if (t) setParallelThreshold(savedThreshold, t);
});

/** PyTorch's constructor call in this package's terms. */
function make(c: NormCase, engine: Engine): NormModule & { forward: LayerNorm["forward"]; backward: LayerNorm["backward"] } {
  const kw = c.kwargs;
  switch (c.kind) {
    case "LayerNorm":
      return new LayerNorm(c.args[0] as number[], { eps: kw.eps as number | undefined, elementwiseAffine: kw.elementwise_affine as boolean | undefined, bias: kw.bias as boolean | undefined, engine });
    case "RMSNorm":
      return new RMSNorm(c.args[0] as number[], { eps: kw.eps as number | undefined, elementwiseAffine: kw.elementwise_affine as boolean | undefined, engine });
    case "GroupNorm":
      return new GroupNorm(c.args[0] as number, c.args[1] as number, { eps: kw.eps as number | undefined, affine: kw.affine as boolean | undefined, layout: c.layout, engine });
    default: {
      const Cls = { InstanceNorm1d, InstanceNorm2d, InstanceNorm3d }[c.kind]!;
      return new Cls(c.args[0] as number, {
        eps: kw.eps as number | undefined, momentum: kw.momentum as number | undefined, affine: kw.affine as boolean | undefined,
        trackRunningStats: kw.track_running_stats as boolean | undefined, layout: c.layout, engine,
      });
    }
  }
}

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

/** The f64 reference output of a case's (training) step. */
function refOf(c: NormCase, s: NormStep): Float64Array {
  const size = s.shape.reduce((a, b) => a * b, 1);
  let geo: Geometry;
  let rms = false;
  let eps = (c.kwargs.eps as number | undefined) ?? 1e-5;
  if (c.kind === "LayerNorm" || c.kind === "RMSNorm") {
    const len = (c.args[0] as number[]).reduce((a, b) => a * b, 1);
    geo = rowGeometry(size / len, len);
    rms = c.kind === "RMSNorm";
    if (rms && c.kwargs.eps === undefined) eps = 2 ** -23;
  } else {
    const shape = c.unbatched ? [1, ...s.shape] : s.shape;
    const C = c.layout === "NCHW" ? shape[1] : shape[shape.length - 1];
    const groups = c.kind === "GroupNorm" ? (c.args[0] as number) : C;
    geo = groupGeometry(shape[0], C, size / (shape[0] * C), groups, c.layout);
  }
  return refNorm(f32(s.x), geo, c.weight ?? undefined, c.bias ?? undefined, eps, rms).y;
}

describe.each(builds)(`PyTorch ${fixture.torch_version} normalisation layers, build %s`, (build) => {
  it.each(fixture.cases.map((c, i) => [`${i}: ${c.kind}(${JSON.stringify(c.args)}, ${JSON.stringify(c.kwargs)}) ${c.layout}${c.offset ? " offset " + c.offset : ""}`, c] as const))(
    "%s",
    (_name, c) => {
      using m = make(c, engines.get(build)!);
      if (c.weight) m.weight!.view.set(c.weight);
      if (c.bias) m.bias!.view.set(c.bias);
      expect(m.stateKeys().includes("weight")).toBe(c.weight !== null);
      expect(m.stateKeys().includes("bias")).toBe(c.bias !== null);
      for (const [k, s] of c.steps.entries()) {
        const ctx = `step ${k}`;
        m.train(s.training);
        m.zeroGrad();
        const y = m.forward(f32(s.x), s.shape) as Float32Array;
        // Outputs of O(1) (of O(|weight| + |bias|) with affine): absolute tolerance on that scale.
        // With a 1e4 offset, PyTorch's own f32 result carries ~1e-3 of rounding (its fold
        // x * rstd - mean * rstd cancels); ours subtracts the mean first.
        const atol = c.offset ? 2e-3 : 2e-5;
        expectClose(`${ctx} y`, y, s.y, atol, 1e-4);
        if (c.offset && s.training) {
          // Ours is within 2e-5 of the f64 result on the same f32 inputs; PyTorch's centred
          // layers are not (RMSNorm subtracts no mean, so nothing cancels there).
          const want = refOf(c, s);
          expectClose(`${ctx} y vs f64`, y, want, 2e-5, 1e-4);
          let worstTorch = 0;
          for (let i = 0; i < want.length; i++) worstTorch = Math.max(worstTorch, Math.abs(s.y[i] - want[i]));
          if (c.kind !== "RMSNorm") expect(worstTorch).toBeGreaterThan(2e-4);
        }
        const dx = m.backward(f32(s.dy)) as Float32Array;
        expectClose(`${ctx} dx`, dx, s.dx, c.offset ? 2e-3 : 5e-5, 1e-3);
        if (s.dweight) expectClose(`${ctx} dweight`, m.weightGrad!.view, s.dweight, c.offset ? 2e-2 : 1e-4, 1e-4);
        if (s.dbias) expectClose(`${ctx} dbias`, m.biasGrad!.view, s.dbias, 1e-4, 1e-4);
        if (s.running_mean) {
          expectClose(`${ctx} running_mean`, m.runningMean!.view, s.running_mean, 1e-6, 1e-5);
          expectClose(`${ctx} running_var`, m.runningVar!.view, s.running_var!, 1e-6, 1e-5);
        }
      }
    },
  );
});

it("the fixture has every layer, both layouts, affine on and off, offsets and running statistics", () => {
  const kinds = new Set(fixture.cases.map((c) => c.kind));
  expect([...kinds].sort()).toEqual(["GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "RMSNorm"]);
  expect(fixture.cases.some((c) => c.layout === "NHWC" && c.kind === "GroupNorm")).toBe(true);
  expect(fixture.cases.some((c) => c.layout === "NHWC" && c.kind.startsWith("Instance"))).toBe(true);
  expect(fixture.cases.filter((c) => c.offset === 1e4).length).toBeGreaterThanOrEqual(4);
  expect(fixture.cases.some((c) => c.steps.some((s) => s.running_mean) && c.steps.some((s) => !s.training))).toBe(true);
  const unbatched = fixture.cases.filter((c) => c.unbatched);
  expect(unbatched.map((c) => c.kind).sort()).toEqual(["InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"]);
  expect(unbatched.some((c) => c.layout === "NHWC") && unbatched.some((c) => c.steps.some((s) => s.running_mean))).toBe(true);
});
