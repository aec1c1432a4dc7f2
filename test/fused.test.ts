/**
 * Fused activation (`activation: "relu"`, residual `z`) on every build: against the
 * unfused composition (BN, then the add, then a ReLU in JavaScript) bit for bit, against
 * the float64 reference, through the backward (mask from the forward output, or the 1-bit
 * mask the forward wrote: the same bits; dz), and
 * finite differences through the ReLU away from its kink. Sizes above the lowered parallel
 * threshold put simd-threads on its pool.
 */
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  createEngine, supportedBuilds, setParallelThreshold, batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn, WasmTensor,
  InvalidOptionError, InvalidArgumentError, LengthMismatchError, reluMaskLength, type Engine, type BuildName, type Layout,
} from "../dist/index.js";
import { refBackward, refNormalize, refTrain, rng, channelOf, maskProblem } from "./reference.js";
import { expectClose } from "./close.js";

const builds = await supportedBuilds();
const relu = (v: number) => (v > 0 ? v : 0);

/** A mask buffer filled with a pattern (every word 0xDEADBEEF), so unwritten words show. */
function dirtyMask(length: number): Float32Array {
  const m = new Float32Array(length);
  new Uint32Array(m.buffer).fill(0xdeadbeef);
  return m;
}

function expectBits(what: string, got: ArrayLike<number>, want: ArrayLike<number>) {
  expect(got.length, `${what}: length`).toBe(want.length);
  const g = new Uint32Array(Float32Array.from(got).buffer);
  const w = new Uint32Array(Float32Array.from(want).buffer);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) expect.fail(`${what}[${i}]: fused ${got[i]} != unfused ${want[i]}`);
  }
}

interface Case {
  shape: number[];
  layout: Layout;
  residual: boolean;
  affine: boolean;
  seed: number;
}

const small = fc.record({
  rank: fc.integer({ min: 2, max: 5 }),
  dims: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 5, maxLength: 5 }),
});
// Above 2^16 elements (the threshold set below): the thread pool's code path.
const large = fc.constantFrom<{ rank: number; dims: number[] }>(
  { rank: 4, dims: [4, 6, 61, 49, 1] },
  { rank: 2, dims: [9001, 9, 1, 1, 1] },
  { rank: 3, dims: [3, 31, 769, 1, 1] },
);
const caseArb = (shapes: fc.Arbitrary<{ rank: number; dims: number[] }>): fc.Arbitrary<Case> =>
  fc
    .record({ s: shapes, layout: fc.constantFrom<Layout>("NCHW", "NHWC"), residual: fc.boolean(), affine: fc.boolean(), seed: fc.integer() })
    .map(({ s, ...rest }) => ({ shape: s.dims.slice(0, s.rank), ...rest }))
    .filter((c) => c.shape.reduce((a, b) => a * b, 1) / channelOf(c.shape, c.layout).C >= 2);

function dataFor(c: Case) {
  const r = rng(c.seed);
  const size = c.shape.reduce((a, b) => a * b, 1);
  const C = channelOf(c.shape, c.layout).C;
  return {
    size,
    x: r.normals(size, 1, 2),
    z: c.residual ? r.normals(size) : undefined,
    dy: r.normals(size),
    weight: c.affine ? r.normals(C, 1, 0.5) : undefined,
    bias: c.affine ? r.normals(C, 0, 0.5) : undefined,
    rm: r.normals(C),
    rv: Float32Array.from(r.normals(C), (v) => 0.5 + Math.abs(v)),
  };
}

/** (outer, channels, inner) of a shape, as the wasm exports take it. */
function dimsTriple(shape: readonly number[], layout: Layout): [number, number, number] {
  const size = shape.reduce((a, b) => a * b, 1);
  const C = channelOf(shape, layout).C;
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  return [size / (C * inner), C, inner];
}

describe.each(builds)("build %s", (build: BuildName) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
    setParallelThreshold(1 << 16, engine);
  });

  /** One case: fused against unfused (bits) and the f64 reference, forward and backward. */
  function check(c: Case) {
    const d = dataFor(c);
    const { layout, shape } = c;
    const common = { weight: d.weight, bias: d.bias, layout };
    // Training forward.
    const plain = batchNormTrainOn(engine, d.x, shape, common);
    const unfused = Float32Array.from(plain.y as Float32Array, (v, i) => relu(d.z ? v + d.z[i] : v));
    const f = batchNormTrainOn(engine, d.x, shape, { ...common, activation: "relu", z: d.z });
    const y = f.y as Float32Array;
    expectBits("train y", y, unfused);
    expectBits("mean", f.mean, plain.mean);
    // The same forward writing the 1-bit mask: y unchanged, the mask's bits y > 0.
    const outMask = dirtyMask(reluMaskLength(shape, layout));
    expect(outMask.length).toBe(engine.glue.relu_mask_words(...dimsTriple(shape, layout)));
    const fm = batchNormTrainOn(engine, d.x, shape, { ...common, activation: "relu", z: d.z, outMask });
    expectBits("train y with outMask", fm.y as Float32Array, unfused);
    expect(maskProblem(outMask, y, shape, layout)).toBeNull();
    const ref = refTrain(d.x, shape, layout, 1e-5, d);
    expectClose("train y vs f64", y, ref.y.map((v, i) => relu(d.z ? v + d.z[i] : v)), 1e-4, 1e-4);

    // Eval forward.
    const ev = { ...common, runningMean: d.rm, runningVar: d.rv };
    const eplain = batchNormEvalOn(engine, d.x, shape, ev) as Float32Array;
    const ey = batchNormEvalOn(engine, d.x, shape, { ...ev, activation: "relu", z: d.z }) as Float32Array;
    expectBits("eval y", ey, eplain.map((v, i) => relu(d.z ? v + d.z[i] : v)));
    const evalMask = dirtyMask(reluMaskLength(shape, layout));
    expectBits("eval y with outMask", batchNormEvalOn(engine, d.x, shape, { ...ev, activation: "relu", z: d.z, outMask: evalMask }) as Float32Array, ey);
    expect(maskProblem(evalMask, ey, shape, layout)).toBeNull();
    const eref = refNormalize(d.x, shape, layout, d.rm, d.rv, 1e-5, d);
    expectClose("eval y vs f64", ey, eref.map((v, i) => relu(d.z ? v + d.z[i] : v)), 1e-4, 1e-4);

    // Backward, training and eval mode: the ReLU's backward (mask y > 0), then plain BN backward.
    const g = Float32Array.from(d.dy, (v, i) => (y[i] > 0 ? v : 0));
    for (const training of [true, false]) {
      const bw = { weight: d.weight, mean: f.mean, invStd: f.invStd, layout, training };
      const want = batchNormBackwardOn(engine, g, d.x, shape, bw);
      const got = batchNormBackwardOn(engine, d.dy, d.x, shape, { ...bw, activation: "relu", y, residual: d.z !== undefined });
      expectBits(`dx (training ${training})`, got.dx as Float32Array, want.dx as Float32Array);
      expectBits(`dWeight (training ${training})`, got.dWeight, want.dWeight);
      expectBits(`dBias (training ${training})`, got.dBias, want.dBias);
      if (d.z) expectBits("dz", got.dz as Float32Array, g);
      else expect(got.dz).toBeUndefined();
      // From the bit mask instead of y: the same bits.
      const fromMask = batchNormBackwardOn(engine, d.dy, d.x, shape, { ...bw, activation: "relu", mask: outMask, residual: d.z !== undefined });
      expectBits(`dx from the mask (training ${training})`, fromMask.dx as Float32Array, want.dx as Float32Array);
      expectBits(`dWeight from the mask (training ${training})`, fromMask.dWeight, want.dWeight);
      expectBits(`dBias from the mask (training ${training})`, fromMask.dBias, want.dBias);
      if (d.z) expectBits("dz from the mask", fromMask.dz as Float32Array, g);
      if (d.z) {
        // dz written over dy (outZ: dy), plain and resident, from y and from the mask: the
        // same dx, dWeight, dBias, and dy turned into dz.
        for (const gate of [{ y }, { mask: outMask }]) {
          const how = `(training ${training}, ${"y" in gate ? "y" : "mask"})`;
          const dyPlain = d.dy.slice();
          const p = batchNormBackwardOn(engine, dyPlain, d.x, shape, { ...bw, ...gate, activation: "relu", residual: true, outZ: dyPlain });
          expectBits(`dx, dz over plain dy ${how}`, p.dx as Float32Array, want.dx as Float32Array);
          expectBits(`dWeight, dz over plain dy ${how}`, p.dWeight, want.dWeight);
          expectBits(`dBias, dz over plain dy ${how}`, p.dBias, want.dBias);
          expect(p.dz).toBe(dyPlain);
          expectBits(`dz over plain dy ${how}`, dyPlain, g);
          const [dyT, xT, gT] = [d.dy, d.x, "y" in gate ? y : outMask].map((a) => WasmTensor.from(a as Float32Array, engine));
          const gateT = "y" in gate ? { y: gT } : { mask: gT };
          try {
            const r = batchNormBackwardOn(engine, dyT, xT, shape, { ...bw, ...gateT, activation: "relu", residual: true, outZ: dyT });
            expectBits(`dx, dz over resident dy ${how}`, r.dx as Float32Array, want.dx as Float32Array);
            expectBits(`dWeight, dz over resident dy ${how}`, r.dWeight, want.dWeight);
            expect(r.dz).toBe(dyT);
            expectBits(`dz over resident dy ${how}`, dyT.view, g);
          } finally {
            for (const t of [dyT, xT, gT]) t.free();
          }
        }
      }
    }
    const m = d.size / channelOf(shape, layout).C;
    const rb = refBackward(g, d.x, shape, layout, f.mean, f.invStd, d.weight);
    const got = batchNormBackwardOn(engine, d.dy, d.x, shape, { weight: d.weight, mean: f.mean, invStd: f.invStd, layout, activation: "relu", y });
    expectClose("dx vs f64", got.dx as Float32Array, rb.dx, 1e-4, 1e-3);
    expectClose("dBias vs f64", got.dBias, rb.dBias, 1e-4 * Math.sqrt(m), 1e-4);
    expectClose("dWeight vs f64", got.dWeight, rb.dWeight, 1e-4 * Math.sqrt(m), 1e-4);
  }

  it("small shapes: fused = unfused bit for bit, and the f64 reference", () => {
    fc.assert(fc.property(caseArb(small), check), { numRuns: 60 });
  });

  it("large shapes (thread pool on simd-threads): fused = unfused bit for bit, and the f64 reference", () => {
    fc.assert(fc.property(caseArb(large), check), { numRuns: 4 });
  });

  // Channels-last data from main memory (each task above the crate's CACHED_ELEMS, 2^16):
  // rows two at a time up to 96 channels and one at a time above, whose mask bits are
  // packed four quads at a time; channel counts that end in part of such a step, in part
  // of a mask word, in single channels (20, 36, 100, 130), and in whole words (64, 96, 128:
  // a mask word per octet of quads, in pairs with an odd last row at 96, one row at a time
  // at 128). All but 20 and 64 with the residual (and dz over dy).
  it.each([20, 36, 64, 96, 100, 128, 130])("channels-last (rows, %i) beyond the cache size: fused = unfused, and the mask", (C) => {
    const rows = Math.ceil((10 << 16) / C);
    check({ shape: [rows, C], layout: "NHWC", residual: C !== 20 && C !== 64, affine: true, seed: C });
  });

  it.each([
    [[2, 3, 37], "NCHW"], // planes of 37: the 16-wide body, the 4-wide rest and a scalar tail
    [[5, 11], "NHWC"], // rows of 11 in pairs, an odd last row, channel tails
    [[3, 4, 9], "NHWC"],
  ] as const)("%j %s: ReLU of -0 is +0 and of NaN is NaN, as the unfused ReLU (fused kernels, every path)", (shape, layout) => {
    // Eval mode with x = running mean and gamma < 0, beta = -0: (x - mean) * scale = -0,
    // plus -0 is -0 before the ReLU. NaN inputs give NaN. Every third element is one of
    // them; the rest are ordinary values of both signs.
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    const r = rng(11);
    const rm = r.normals(C);
    const rv = new Float32Array(C).fill(1);
    const weight = new Float32Array(C).fill(-2);
    const bias = new Float32Array(C).fill(-0);
    const x = r.normals(size);
    const outer = layout === "NCHW" ? shape[0] : size / C;
    const inner = layout === "NCHW" ? size / (shape[0] * C) : 1;
    for (let i = 0; i < size; i++) {
      const c = Math.floor(i / inner) % C;
      if (i % 3 === 0) x[i] = rm[c];
      if (i % 7 === 1) x[i] = NaN;
    }
    expect(outer * C * inner).toBe(size);
    const ev = { weight, bias, runningMean: rm, runningVar: rv, eps: 0, layout };
    const pre = batchNormEvalOn(engine, x, shape, ev) as Float32Array;
    expect(pre.some((v) => Object.is(v, -0)), "the data has -0 before the ReLU").toBe(true);
    const want = Float32Array.from(pre, (v) => (Number.isNaN(v) ? NaN : v > 0 ? v : 0));
    const mask = dirtyMask(reluMaskLength(shape, layout));
    for (const got of [
      batchNormEvalOn(engine, x, shape, { ...ev, activation: "relu" }) as Float32Array,
      batchNormEvalOn(engine, x, shape, { ...ev, activation: "relu", outMask: mask }) as Float32Array,
      // With a residual of -0: -0 + -0 is still -0 before the ReLU.
      batchNormEvalOn(engine, x, shape, { ...ev, activation: "relu", z: new Float32Array(size).fill(-0) }) as Float32Array,
    ]) {
      for (let i = 0; i < size; i++) {
        const ok = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Object.is(got[i], want[i]);
        if (!ok) expect.fail(`y[${i}] = ${Object.is(got[i], -0) ? "-0" : got[i]}, want ${want[i]} (before the ReLU ${pre[i]})`);
      }
    }
    expect(maskProblem(mask, want, shape, layout)).toBeNull();
  });

  it("resident tensors (WasmTensor in and out) give the same bits as plain arrays", () => {
    const c: Case = { shape: [3, 5, 7, 9], layout: "NHWC", residual: true, affine: true, seed: 3 };
    const d = dataFor(c);
    const plain = batchNormTrainOn(engine, d.x, c.shape, { weight: d.weight, bias: d.bias, layout: c.layout, activation: "relu", z: d.z });
    const [x, z, y, dy, dx, dz] = [d.x, d.z!, null, d.dy, null, null].map((a) => (a ? WasmTensor.from(a, engine) : WasmTensor.alloc(d.size, engine)));
    try {
      const r = batchNormTrainOn(engine, x, c.shape, { weight: d.weight, bias: d.bias, layout: c.layout, activation: "relu", z, out: y });
      expectBits("y", y.view, plain.y as Float32Array);
      const want = batchNormBackwardOn(engine, d.dy, d.x, c.shape, {
        weight: d.weight, mean: r.mean, invStd: r.invStd, layout: c.layout, activation: "relu", y: plain.y, residual: true,
      });
      batchNormBackwardOn(engine, dy, x, c.shape, {
        weight: d.weight, mean: r.mean, invStd: r.invStd, layout: c.layout, activation: "relu", y, residual: true, out: dx, outZ: dz,
      });
      expectBits("dx", dx.view, want.dx as Float32Array);
      expectBits("dz", dz.view, want.dz as Float32Array);
    } finally {
      for (const t of [x, z, y, dy, dx, dz]) t.free();
    }
  });
});

describe("gradients through the ReLU (default build)", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine("auto");
  });

  it.each([
    [[4, 3, 5], "NCHW", false],
    [[6, 2, 3], "NHWC", true],
    [[8, 3], "NCHW", true],
  ] as const)("shape %j %s residual %s: finite differences of sum(w * relu(BN(x) + z))", (shape, layout, residual) => {
    const r = rng(5);
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    const x = r.normals(size, 0.5, 1.5);
    const z = residual ? r.normals(size, 0, 0.5) : undefined;
    const w = r.normals(size);
    const gamma = r.normals(C, 1, 0.3), beta = r.normals(C, 0, 0.3);
    const eps = 1e-3;
    const out = (xs: ArrayLike<number>, zs: ArrayLike<number> | undefined) =>
      refTrain(xs, shape, layout, eps, { weight: gamma, bias: beta }).y.map((v, i) => (zs ? v + zs[i] : v));
    const loss = (xs: ArrayLike<number>, zs: ArrayLike<number> | undefined) => out(xs, zs).reduce((a, v, i) => a + w[i] * relu(v), 0);
    // Away from the kink: every pre-activation at least 100 h from 0.
    const h = 1e-6;
    const pre = out(x, z);
    expect(Math.min(...pre.map(Math.abs))).toBeGreaterThan(100 * h * 10);
    const diff = (arr: Float32Array, which: "x" | "z") =>
      Float64Array.from(arr, (_, i) => {
        const p = Float64Array.from(arr), m = Float64Array.from(arr);
        p[i] += h;
        m[i] -= h;
        return which === "x" ? (loss(p, z) - loss(m, z)) / (2 * h) : (loss(x, p) - loss(x, m)) / (2 * h);
      });
    const f = batchNormTrainOn(engine, x, shape, { weight: gamma, bias: beta, eps, layout, activation: "relu", z });
    const got = batchNormBackwardOn(engine, w, x, shape, {
      weight: gamma, mean: f.mean, invStd: f.invStd, layout, activation: "relu", y: f.y, residual,
    });
    expectClose("dx", got.dx as Float32Array, diff(x, "x"), 1e-4, 1e-3);
    if (z) expectClose("dz", got.dz as Float32Array, diff(z, "z"), 1e-4, 1e-3);
    // Non-trivial: the ReLU clipped some outputs, so its mask mattered.
    expect(pre.some((v) => v < 0) && pre.some((v) => v > 0)).toBe(true);
  });

  it("rejects bad fused options with named errors, writing nothing", () => {
    const shape = [2, 3];
    const x = new Float32Array(6).fill(1);
    const out = new Float32Array(6).fill(7);
    expect(() => batchNormTrainOn(engine, x, shape, { activation: "gelu" as "relu", out })).toThrow(InvalidOptionError);
    expect(() => batchNormTrainOn(engine, x, shape, { z: new Float32Array(5), out })).toThrow(LengthMismatchError);
    const stats = { mean: new Float32Array(3), invStd: new Float32Array(3).fill(1) };
    expect(() => batchNormBackwardOn(engine, x, x, shape, { ...stats, activation: "relu", out })).toThrow(InvalidArgumentError);
    expect(() => batchNormBackwardOn(engine, x, x, shape, { ...stats, activation: "relu", y: new Float32Array(4), out })).toThrow(LengthMismatchError);
    expect(() => batchNormBackwardOn(engine, x, x, shape, { ...stats, outZ: new Float32Array(6), out })).toThrow(InvalidArgumentError);
    // The ReLU mask: only with the ReLU, and exactly reluMaskLength elements ((2,3): 2 rows of 3, a word each).
    expect(reluMaskLength(shape)).toBe(2);
    const outMask = new Float32Array(2).fill(7);
    expect(() => batchNormTrainOn(engine, x, shape, { out, outMask })).toThrow(InvalidOptionError);
    expect(() => batchNormTrainOn(engine, x, shape, { activation: "relu", out, outMask: new Float32Array(3) })).toThrow(LengthMismatchError);
    expect(() => batchNormEvalOn(engine, x, shape, { ...stats, runningMean: stats.mean, runningVar: stats.invStd, out, outMask })).toThrow(InvalidOptionError);
    expect(() => batchNormBackwardOn(engine, x, x, shape, { ...stats, mask: outMask, out })).toThrow(InvalidOptionError);
    expect(() => batchNormBackwardOn(engine, x, x, shape, { ...stats, activation: "relu", mask: new Float32Array(1), out })).toThrow(LengthMismatchError);
    expect(outMask.every((v) => v === 7)).toBe(true);
    const t = WasmTensor.from(x, engine);
    try {
      expect(() => batchNormTrainOn(engine, x, shape, { z: t, out: t })).toThrow(InvalidArgumentError);
    } finally {
      t.free();
    }
    expect(out.every((v) => v === 7)).toBe(true);
  });
});

describe("modules with activation: \"relu\" (default build)", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine("auto");
  });

  it.each(["NCHW", "NHWC"] as const)("%s: train and eval steps equal the functional fused calls; dz; WasmTensor out", async (layout) => {
    const { BatchNorm2d } = await import("../dist/index.js");
    const shape = layout === "NCHW" ? [4, 3, 5, 6] : [4, 5, 6, 3];
    const r = rng(9);
    const size = 360;
    const [x, z, dy] = [r.normals(size, 1, 2), r.normals(size), r.normals(size)];
    using bn = new BatchNorm2d(3, { layout, activation: "relu", engine });
    bn.weight!.view.set(r.normals(3, 1, 0.3));
    bn.bias!.view.set(r.normals(3, 0, 0.3));
    const weight = bn.weight!.view.slice(), bias = bn.bias!.view.slice();
    const rm = new Float32Array(3), rv = new Float32Array(3).fill(1);

    const y = bn.forward(x, shape, { z }) as Float32Array;
    const want = batchNormTrainOn(engine, x, shape, { weight, bias, layout, runningMean: rm, runningVar: rv, activation: "relu", z });
    expectBits("y", y, want.y as Float32Array);
    y.fill(-1); // the module keeps the ReLU's mask for backward, not y
    const dx = bn.backward(dy) as Float32Array;
    const wb = batchNormBackwardOn(engine, dy, x, shape, {
      weight, mean: want.mean, invStd: want.invStd, layout, activation: "relu", y: want.y, residual: true,
    });
    expectBits("dx", dx, wb.dx as Float32Array);
    expectBits("dz", bn.residualGrad as Float32Array, wb.dz as Float32Array);
    expectBits("weightGrad", bn.weightGrad!.view, wb.dWeight);
    // A second module, with dz written over dy (outZ: dy): the same dx, and dy turned into dz.
    {
      using bn2 = new BatchNorm2d(3, { layout, activation: "relu", engine });
      bn2.weight!.view.set(weight);
      bn2.bias!.view.set(bias);
      bn2.forward(x, shape, { z });
      const dyOver = dy.slice();
      expectBits("dx, dz over dy", bn2.backward(dyOver, { outZ: dyOver }) as Float32Array, wb.dx as Float32Array);
      expect(bn2.residualGrad).toBe(dyOver);
      expectBits("dz over dy", dyOver, wb.dz as Float32Array);
      expectBits("weightGrad, dz over dy", bn2.weightGrad!.view, wb.dWeight);
    }

    // Eval mode, resident output kept by reference.
    bn.eval();
    const out = WasmTensor.alloc(size, engine);
    const dxT = WasmTensor.alloc(size, engine);
    try {
      bn.forward(x, shape, { out });
      const ev = batchNormEvalOn(engine, x, shape, { weight, bias, layout, runningMean: rm, runningVar: rv, activation: "relu" });
      expectBits("eval y", out.view, ev as Float32Array);
      bn.backward(dy, { out: dxT });
      const evb = batchNormBackwardOn(engine, dy, x, shape, {
        weight, mean: rm, invStd: rv.map((v) => 1 / Math.sqrt(v + 1e-5)), layout, training: false, activation: "relu", y: ev,
      });
      expectBits("eval dx", dxT.view, evb.dx as Float32Array);
      expect(bn.residualGrad).toBeUndefined();
      expect((ev as Float32Array).some((v) => v === 0)).toBe(true);
    } finally {
      out.free();
      dxT.free();
    }
  });
});

describe("a module with activation: \"relu\" in a worker", () => {
  it("gives the local module's y, dx and dz (residual) bit for bit", async () => {
    const { BatchNormWorker, BatchNorm2d } = await import("../dist/index.js");
    const engine = await createEngine("simd");
    const worker = await BatchNormWorker.spawn({ build: "simd" });
    try {
      const shape = [3, 4, 5, 5];
      const r = rng(21);
      const [x, z, dy] = [r.normals(300, 1, 2), r.normals(300), r.normals(300)];
      using local = new BatchNorm2d(4, { activation: "relu", engine });
      const remote = await worker.createModule(4, { activation: "relu" });
      expectBits("y", await remote.forward(x, shape, { z }), local.forward(x, shape, { z }) as Float32Array);
      expectBits("dx", await remote.backward(dy), local.backward(dy) as Float32Array);
      expectBits("dz", (await remote.residualGrad())!, local.residualGrad as Float32Array);
      expect(await remote.residualGrad()).toBeDefined();
      await remote.forward(x, shape);
      await remote.backward(dy);
      expect(await remote.residualGrad()).toBeUndefined();
      await remote.dispose();
    } finally {
      worker.terminate();
    }
  });
});

describe("SyncBatchNorm and the fused activation", () => {
  // Its results against BatchNorm on the whole batch: test/sync-batchnorm.test.ts.
  it("keeps a converted BatchNorm's ReLU, and rejects an unknown activation as BatchNorm does", async () => {
    const { SyncBatchNorm, BatchNorm2d, InvalidOptionError: IOE } = await import("../dist/index.js");
    const engine = await createEngine("simd");
    using bn = new BatchNorm2d(3, { activation: "relu", engine });
    const comm = {} as never; // never reached: nothing here uses the group
    using sync = SyncBatchNorm.from(bn, comm);
    expect(sync.activation).toBe("relu");
    using plain = new SyncBatchNorm(3, comm, { engine });
    expect(plain.activation).toBe("none");
    expect(() => new SyncBatchNorm(3, comm, { activation: "gelu" } as never)).toThrow(IOE);
  });
});

describe("a residual without an activation", () => {
  it("y = BN(x) + z bit for bit; dz = dy", async () => {
    const engine = await createEngine("simd");
    const shape = [4, 3, 40, 100]; // above one streaming window
    const r = rng(31);
    const [x, z, dy] = [r.normals(48000, 1, 2), r.normals(48000), r.normals(48000)];
    const weight = r.normals(3, 1, 0.3), bias = r.normals(3);
    const plain = batchNormTrainOn(engine, x, shape, { weight, bias });
    const withZ = batchNormTrainOn(engine, x, shape, { weight, bias, z });
    expectBits("y", withZ.y as Float32Array, (plain.y as Float32Array).map((v, i) => v + z[i]));
    const b = batchNormBackwardOn(engine, dy, x, shape, { weight, mean: plain.mean, invStd: plain.invStd, residual: true });
    const want = batchNormBackwardOn(engine, dy, x, shape, { weight, mean: plain.mean, invStd: plain.invStd });
    expectBits("dx", b.dx as Float32Array, want.dx as Float32Array);
    expectBits("dz", b.dz as Float32Array, dy);
    const { BatchNorm2d } = await import("../dist/index.js");
    using bn = new BatchNorm2d(3, { engine });
    bn.weight!.view.set(weight);
    bn.bias!.view.set(bias);
    expectBits("module y", bn.forward(x, shape, { z }) as Float32Array, withZ.y as Float32Array);
    bn.backward(dy);
    expectBits("module dz", bn.residualGrad as Float32Array, dy);
  });
});
