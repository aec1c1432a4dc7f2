/**
 * Every wasm build this machine supports (Node supports all three) against the ONNX
 * conformance data and, with fast-check, against the float64 reference in reference.ts.
 */
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  createEngine, supportedBuilds, setParallelThreshold, parallelThreshold, batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn, WasmTensor, reluMaskLength,
  type Engine, type BuildName, type Layout, type Convention,
} from "../dist/index.js";
import { loadConformance } from "./conformance.js";
import { refBackward, refNormalize, refRunning, refTrain, rng, channelOf, maskProblem } from "./reference.js";
import { expectClose } from "./close.js";

const builds = await supportedBuilds();
const cases = loadConformance();
const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

it("Node supports all three builds, so none is silently skipped", () => {
  expect(builds).toEqual(["scalar", "simd", "simd-threads"]);
});

it("finds the conformance cases", () => {
  expect(cases.length).toBeGreaterThanOrEqual(9);
  expect(cases.some((c) => c.training)).toBe(true);
});

interface Case {
  shape: number[];
  layout: Layout;
  affine: boolean;
  convention: Convention;
  momentum: number;
  eps: number;
  seed: number;
  offset: number;
  scale: number;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    rank: fc.integer({ min: 2, max: 5 }),
    dims: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 5, maxLength: 5 }),
    layout: fc.constantFrom<Layout>("NCHW", "NHWC"),
    affine: fc.boolean(),
    convention: fc.constantFrom<Convention>("pytorch", "onnx"),
    momentum: fc.double({ min: 0, max: 1, noNaN: true }),
    eps: fc.constantFrom(1e-5, 1e-3, 0.1),
    seed: fc.integer(),
    offset: fc.constantFrom(0, 3, -50),
    scale: fc.constantFrom(1, 0.1, 20),
  })
  .map(({ rank, dims, ...rest }) => ({ shape: dims.slice(0, rank), ...rest }))
  .filter((c) => {
    const C = c.layout === "NCHW" ? c.shape[1] : c.shape[c.shape.length - 1];
    return c.shape.reduce((a, b) => a * b, 1) / C >= 2; // training needs 2 values per channel
  });

/**
 * Cases above the 65,536-element parallel threshold the suite sets (70k-160k elements), so
 * simd-threads runs them on its rayon pool with work split across tasks (MIN_TASK_ELEMS is
 * 8,192); always with weight and bias and a non-default eps.
 */
const poolCaseArb: fc.Arbitrary<Case> = fc
  .record({
    rank: fc.integer({ min: 2, max: 5 }),
    channels: fc.integer({ min: 1, max: 40 }),
    spatial: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 3, maxLength: 3 }),
    target: fc.integer({ min: 70_000, max: 160_000 }),
    layout: fc.constantFrom<Layout>("NCHW", "NHWC"),
    convention: fc.constantFrom<Convention>("pytorch", "onnx"),
    momentum: fc.double({ min: 0, max: 1, noNaN: true }),
    eps: fc.constantFrom(1e-3, 0.1, 2e-5),
    seed: fc.integer(),
    offset: fc.constantFrom(0, 3, -50),
    scale: fc.constantFrom(1, 0.1, 20),
  })
  .map(({ rank, channels, spatial, target, layout, ...rest }) => {
    const sp = spatial.slice(0, rank - 2);
    const n = Math.ceil(target / (channels * sp.reduce((a, b) => a * b, 1)));
    const shape = layout === "NCHW" ? [n, channels, ...sp] : [n, ...sp, channels];
    return { shape, layout, affine: true, ...rest };
  });

function dataFor(c: Case) {
  const r = rng(c.seed);
  const size = c.shape.reduce((a, b) => a * b, 1);
  const C = channelOf(c.shape, c.layout).C;
  return {
    x: r.normals(size, c.offset, c.scale),
    dy: r.normals(size),
    weight: c.affine ? r.normals(C, 1, 0.5) : undefined,
    bias: c.affine ? r.normals(C, 0, 0.5) : undefined,
    rm: r.normals(C),
    rv: Float32Array.from(r.normals(C), (v) => 0.5 + Math.abs(v)),
  };
}

describe.each(builds)("build %s", (build: BuildName) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
    expect(engine.build).toBe(build);
    expect(parallelThreshold(engine)).toBe(1 << 20);
    setParallelThreshold(1 << 16, engine); // so the "large tensor" cases below run on the pool
  });

  it("loads with the expected thread count", () => {
    expect(engine.threads).toBe(build === "simd-threads" ? 2 : 1);
  });

  describe("ONNX conformance", () => {
    it.each(cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
      const shape = c.x.dims;
      if (c.training) {
        const rm = f32(c.mean.data);
        const rv = f32(c.var.data);
        const { y } = batchNormTrainOn(engine, f32(c.x.data), shape, {
          weight: f32(c.scale.data), bias: f32(c.bias.data), runningMean: rm, runningVar: rv,
          eps: c.epsilon, momentum: c.momentum, convention: "onnx",
        });
        expectClose("y", y as Float32Array, c.y.data);
        expectClose("running mean", rm, c.outputMean!.data);
        expectClose("running var", rv, c.outputVar!.data);
      } else {
        const y = batchNormEvalOn(engine, f32(c.x.data), shape, {
          weight: f32(c.scale.data), bias: f32(c.bias.data), runningMean: f32(c.mean.data), runningVar: f32(c.var.data), eps: c.epsilon,
        });
        expectClose("y", y as Float32Array, c.y.data);
      }
    });
  });

  const propertyRuns = [
    ["small tensors", caseArb, 60],
    ["on the thread pool (above the parallel threshold)", poolCaseArb, 10],
  ] as const;

  describe.each(propertyRuns)("%s", (_what, arb, numRuns) => {
  it("train forward and running statistics match the float64 reference", () => {
    fc.assert(
      fc.property(arb, (c) => {
        const d = dataFor(c);
        const rm = d.rm.slice();
        const rv = d.rv.slice();
        const got = batchNormTrainOn(engine, d.x, c.shape, {
          weight: d.weight, bias: d.bias, runningMean: rm, runningVar: rv,
          eps: c.eps, momentum: c.momentum, layout: c.layout, convention: c.convention,
        });
        const want = refTrain(d.x, c.shape, c.layout, c.eps, d);
        expectClose("y", got.y as Float32Array, want.y, 1e-4, 1e-4);
        expectClose("mean", got.mean, want.mean, 1e-5 * c.scale, 1e-5);
        expectClose("invStd", got.invStd, want.invStd, 1e-6, 1e-4);
        const run = refRunning(d.rm, d.rv, want, c.momentum, c.convention);
        expectClose("runningMean", rm, run.mean, 1e-5 * c.scale, 1e-5);
        expectClose("runningVar", rv, run.var, 1e-6, 1e-4);
      }),
      { numRuns },
    );
  });

  it("eval forward matches the float64 reference", () => {
    fc.assert(
      fc.property(arb, (c) => {
        const d = dataFor(c);
        const y = batchNormEvalOn(engine, d.x, c.shape, {
          weight: d.weight, bias: d.bias, runningMean: d.rm, runningVar: d.rv, eps: c.eps, layout: c.layout,
        });
        expectClose("y", y as Float32Array, refNormalize(d.x, c.shape, c.layout, d.rm, d.rv, c.eps, d), 1e-4, 1e-4);
      }),
      { numRuns },
    );
  });

  it("backward (training and eval mode) matches the float64 reference", () => {
    fc.assert(
      fc.property(arb, (c) => {
        const d = dataFor(c);
        const fwd = refTrain(d.x, c.shape, c.layout, c.eps, d);
        const mean = f32(fwd.mean);
        const invStd = f32(fwd.invStd);
        const m = fwd.count;
        const got = batchNormBackwardOn(engine, d.dy, d.x, c.shape, { weight: d.weight, mean, invStd, layout: c.layout });
        const want = refBackward(d.dy, d.x, c.shape, c.layout, mean, invStd, d.weight);
        expectClose("dx", got.dx as Float32Array, want.dx, 1e-4, 1e-3);
        expectClose("dBias", got.dBias, want.dBias, 1e-4 * Math.sqrt(m), 1e-4);
        expectClose("dWeight", got.dWeight, want.dWeight, 1e-4 * Math.sqrt(m), 1e-4);

        const ev = batchNormBackwardOn(engine, d.dy, d.x, c.shape, { weight: d.weight, mean, invStd, layout: c.layout, training: false });
        const { ch } = channelOf(c.shape, c.layout);
        const dxEval = Float64Array.from(d.dy, (g, i) => g * invStd[ch[i]] * (d.weight ? d.weight[ch[i]] : 1));
        expectClose("dx (eval)", ev.dx as Float32Array, dxEval, 1e-5, 1e-4);
        expectClose("dBias (eval)", ev.dBias, want.dBias, 1e-4 * Math.sqrt(m), 1e-4);
        expectClose("dWeight (eval)", ev.dWeight, want.dWeight, 1e-4 * Math.sqrt(m), 1e-4);
      }),
      { numRuns },
    );
  });

  });

  // Above the 65,536-element threshold set above, so simd-threads runs on its pool.
  it.each([
    [[4, 8, 64, 64], "NCHW"],
    [[4, 64, 64, 8], "NHWC"],
    [[2, 16, 24, 128], "NHWC"], // over 96 channels: the row kernels take one row at a time
    [[4096, 24], "NCHW"],
    [[64, 2, 32, 32], "NCHW"], // few channels: each channel's batch is split across tasks
  ] as const)("large tensor %j %s: resident tensors, forward and backward", (shape, layout) => {
    const r = rng(7);
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    const x = WasmTensor.from(r.normals(size, 2, 3), engine);
    const dy = WasmTensor.from(r.normals(size), engine);
    const y = WasmTensor.alloc(size, engine);
    const dx = WasmTensor.alloc(size, engine);
    const weight = r.normals(C, 1, 0.3);
    try {
      const { mean, invStd } = batchNormTrainOn(engine, x, shape, { weight, layout, out: y });
      const want = refTrain(x.view, shape, layout, 1e-5, { weight });
      expectClose("y", y.view, want.y, 1e-4, 1e-4);
      batchNormBackwardOn(engine, dy, x, shape, { weight, mean, invStd, layout, out: dx });
      expectClose("dx", dx.view, refBackward(dy.view, x.view, shape, layout, mean, invStd, weight).dx, 1e-4, 1e-3);
    } finally {
      for (const t of [x, dy, y, dx]) t.free();
    }
  });
});

describe("simd-threads runs plain-array eval in unshared memory", () => {
  // V8 copies into and out of shared memory several times slower than unshared memory, so
  // an eval whose tensors are all plain arrays runs on the engine's `simd` companion
  // (Engine.unshared); results are the same bits as the threads build's own.
  it("has a simd companion in unshared memory, and only simd-threads has one", async () => {
    const t = await createEngine("simd-threads");
    expect(t.unshared?.build).toBe("simd");
    expect(t.unshared!.memory.buffer instanceof SharedArrayBuffer).toBe(false);
    expect(t.memory.buffer instanceof SharedArrayBuffer).toBe(true);
    for (const b of ["scalar", "simd"] as const) expect((await createEngine(b)).unshared).toBeUndefined();
  });

  it("routes a call to the companion only when no tensor-sized argument is resident", async () => {
    const t = await createEngine("simd-threads");
    const { engineForPlain } = await import("../dist/engine/staging.js");
    const r = WasmTensor.alloc(8, t);
    try {
      expect(engineForPlain(t, [new Float32Array(8), undefined])).toBe(t.unshared);
      expect(engineForPlain(t, [new Float32Array(8), r])).toBe(t);
      const simd = await createEngine("simd");
      expect(engineForPlain(simd, [new Float32Array(8)])).toBe(simd);
    } finally {
      r.free();
    }
  });

  it.each([
    [[3, 5, 181, 97], "NCHW"],
    [[2, 97, 181, 5], "NHWC"],
  ] as const)("%j %s: plain arrays (with resident parameters, ReLU, z and the mask) give the resident path's bits", async (shape, layout) => {
    const t = await createEngine("simd-threads");
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    const r = rng(21);
    const x = r.normals(size, 0.3, 2), z = r.normals(size);
    const params = [r.normals(C, 1, 0.5), r.normals(C), r.normals(C), Float32Array.from(r.normals(C), (v) => 0.2 + Math.abs(v))];
    const resident = [x, z, ...params].map((a) => WasmTensor.from(a, t));
    const [X, Z, W, B, RM, RV] = resident;
    const Y = WasmTensor.alloc(size, t);
    try {
      const opts = { layout, activation: "relu" as const };
      batchNormEvalOn(t, X, shape, { ...opts, weight: W, bias: B, runningMean: RM, runningVar: RV, z: Z, out: Y });
      const want = Y.toArray();
      expect(want.some((v) => v > 0) && want.some((v) => v === 0)).toBe(true);
      // Parameters resident in the threads engine's memory, data plain: the companion runs it.
      const out = new Float32Array(size);
      const mask = new Float32Array(reluMaskLength(shape, layout));
      batchNormEvalOn(t, x, shape, { ...opts, weight: W, bias: B, runningMean: RM, runningVar: RV, z, out, outMask: mask });
      expect(Buffer.from(out.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      // Plain parameters too, and a new output.
      const y2 = batchNormEvalOn(t, x, shape, { ...opts, weight: params[0], bias: params[1], runningMean: params[2], runningVar: params[3], z }) as Float32Array;
      expect(Buffer.from(y2.buffer, y2.byteOffset, y2.byteLength).equals(Buffer.from(want.buffer))).toBe(true);
      // The mask's bits are y > 0.
      expect(maskProblem(mask, want, shape, layout)).toBeNull();
    } finally {
      for (const a of [...resident, Y]) a.free();
    }
  });
});
