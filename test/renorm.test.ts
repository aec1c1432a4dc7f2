/**
 * Batch Renormalization against an independent float64 implementation of Algorithm 1 of
 * Ioffe 2017 (r and d clipped, constants in backward, moving statistics updated after),
 * on every build; with rMax = 1, dMax = 0 equal to plain batch norm; the warm-up schedule.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  createEngine, supportedBuilds, setParallelThreshold, batchRenormTrain, batchRenormBackward, renormSchedule, batchNormTrainOn, batchNormBackwardOn,
  InvalidOptionError, InvalidArgumentError, type Engine, type Layout,
} from "../dist/index.js";
import { rng, channelOf } from "./reference.js";
import { expectClose } from "./close.js";

const builds = await supportedBuilds();

/** Algorithm 1 in f64, straight from the paper, with PyTorch's running-variance update. */
function refRenorm(x: Float32Array, shape: number[], layout: Layout, o: { g: Float32Array; b: Float32Array; rm: Float32Array; rv: Float32Array; rMax: number; dMax: number; eps: number; momentum: number }) {
  const { C, ch } = channelOf(shape, layout);
  const of = (i: number) => ch[i];
  const m = x.length / C;
  const sum = new Float64Array(C);
  for (let i = 0; i < x.length; i++) sum[of(i)] += x[i];
  const mu = sum.map((v) => v / m);
  const ss = new Float64Array(C);
  for (let i = 0; i < x.length; i++) ss[of(i)] += (x[i] - mu[of(i)]) ** 2;
  const varB = ss.map((v) => v / m);
  const sigmaB = varB.map((v) => Math.sqrt(v + o.eps));
  const sigma = Array.from(o.rv, (v) => Math.sqrt(v + o.eps));
  const r = sigmaB.map((s, c) => Math.min(o.rMax, Math.max(1 / o.rMax, s / sigma[c])));
  const d = mu.map((v, c) => Math.min(o.dMax, Math.max(-o.dMax, (v - o.rm[c]) / sigma[c])));
  const y = Float64Array.from(x, (v, i) => {
    const c = of(i);
    return o.g[c] * (((v - mu[c]) / sigmaB[c]) * r[c] + d[c]) + o.b[c];
  });
  const rm = Array.from(o.rm, (v, c) => (1 - o.momentum) * v + o.momentum * mu[c]);
  const rv = Array.from(o.rv, (v, c) => (1 - o.momentum) * v + o.momentum * (ss[c] / (m - 1)));
  return { y, mu, sigmaB, r, d, rm, rv, of, C, m };
}

describe.each(builds)("build %s", (build) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
    setParallelThreshold(1 << 10, engine);
  });

  it.each([
    [[6, 3, 5, 4], "NCHW", 3, 5, 0, 1, false],
    [[6, 5, 4, 3], "NHWC", 1.5, 0.5, 2, 0.3, true],
    [[40, 7], "NCHW", 2, 1, -1, 3, true],
    [[8, 16, 9, 9], "NCHW", 1.2, 0.2, 0.5, 2, true],
  ] as const)("%j %s rMax %d dMax %d: forward, statistics, backward vs f64 Algorithm 1", (shape, layout, rMax, dMax, offset, scale, clips) => {
    const sh = [...shape];
    const size = sh.reduce((a, b) => a * b, 1);
    const C = layout === "NCHW" ? sh[1] : sh[sh.length - 1];
    const R = rng(size);
    const x = R.normals(size, offset, scale);
    const dy = R.normals(size);
    const g = R.normals(C, 1, 0.4);
    const b = R.normals(C, 0, 0.5);
    // Moving statistics far enough from the batch's that r and d clip on some channels.
    const rm = R.normals(C, 0, 1.5);
    const rv = Float32Array.from(R.normals(C), (v) => 0.05 + 4 * Math.abs(v));
    const want = refRenorm(x, sh, layout, { g, b, rm, rv, rMax, dMax, eps: 1e-5, momentum: 0.1 });
    const rmOut = rm.slice();
    const rvOut = rv.slice();
    const f = batchRenormTrain(x, sh, { weight: g, bias: b, runningMean: rmOut, runningVar: rvOut, rMax, dMax, layout, engine });
    expectClose("r", f.r, want.r, 1e-6, 1e-5);
    expectClose("d", f.d, want.d, 1e-6, 1e-5);
    // Clipping happened on some channel where the case says so (both branches covered).
    const fr = Math.fround;
    expect(f.r.some((v) => v === fr(rMax) || v === fr(1 / rMax)) || f.d.some((v) => Math.abs(v) === fr(dMax))).toBe(clips);
    expectClose("y", f.y as Float32Array, want.y, 2e-5, 1e-4);
    expectClose("runningMean", rmOut, want.rm, 1e-6, 1e-5);
    expectClose("runningVar", rvOut, want.rv, 1e-6, 1e-5);
    // Backward with r, d constant: dx = (g r / sigmaB)(dy - mean(dy) - xhat mean(dy xhat)), per channel.
    const gr = batchRenormBackward(dy, x, sh, { weight: g, mean: f.mean, invStd: f.invStd, r: f.r, d: f.d, layout, engine });
    const { of, m } = want;
    const sDy = new Float64Array(C);
    const sDyX = new Float64Array(C);
    const xhat = Float64Array.from(x, (v, i) => (v - want.mu[of(i)]) / want.sigmaB[of(i)]);
    for (let i = 0; i < size; i++) {
      sDy[of(i)] += dy[i];
      sDyX[of(i)] += dy[i] * xhat[i];
    }
    const dx = Float64Array.from(dy, (v, i) => {
      const c = of(i);
      return ((g[c] * want.r[c]) / want.sigmaB[c]) * (v - sDy[c] / m - (xhat[i] * sDyX[c]) / m);
    });
    expectClose("dx", gr.dx as Float32Array, dx, 1e-4, 1e-3);
    expectClose("dWeight", gr.dWeight, Array.from(sDyX, (v, c) => want.r[c] * v + want.d[c] * sDy[c]), 1e-4 * Math.sqrt(m), 1e-4);
    expectClose("dBias", gr.dBias, sDy, 1e-4 * Math.sqrt(m), 1e-4);
  });

  it.each([[[6, 3, 5, 4], "NCHW"], [[6, 5, 4, 3], "NHWC"], [[20, 70000 / 20], "NCHW"]] as const)("rMax = 1, dMax = 0 is batch norm, bit for bit: %j %s", (shape, layout) => {
    const sh = [...shape];
    const size = sh.reduce((a, b) => a * b, 1);
    const C = layout === "NCHW" ? sh[1] : sh[sh.length - 1];
    const R = rng(7);
    const x = R.normals(size, 3, 2);
    const dy = R.normals(size);
    const g = R.normals(C, 1, 0.4);
    const b = R.normals(C, 0, 0.5);
    const rm = R.normals(C);
    const rv = Float32Array.from(R.normals(C), (v) => 0.5 + Math.abs(v));
    const [rm1, rv1, rm2, rv2] = [rm.slice(), rv.slice(), rm.slice(), rv.slice()];
    const bn = batchNormTrainOn(engine, x, sh, { weight: g, bias: b, runningMean: rm1, runningVar: rv1, layout });
    const rn = batchRenormTrain(x, sh, { weight: g, bias: b, runningMean: rm2, runningVar: rv2, layout, rMax: 1, dMax: 0, engine });
    expect(Array.from(rn.y as Float32Array)).toEqual(Array.from(bn.y as Float32Array));
    expect(Array.from(rn.mean)).toEqual(Array.from(bn.mean));
    expect(Array.from(rn.invStd)).toEqual(Array.from(bn.invStd));
    expect(Array.from(rm2)).toEqual(Array.from(rm1));
    expect(Array.from(rv2)).toEqual(Array.from(rv1));
    const gb = batchNormBackwardOn(engine, dy, x, sh, { weight: g, mean: bn.mean, invStd: bn.invStd, layout });
    const gr = batchRenormBackward(dy, x, sh, { weight: g, mean: rn.mean, invStd: rn.invStd, r: rn.r, d: rn.d, layout, engine });
    expect(Array.from(gr.dx as Float32Array)).toEqual(Array.from(gb.dx as Float32Array));
    expect(Array.from(gr.dWeight)).toEqual(Array.from(gb.dWeight));
    expect(Array.from(gr.dBias)).toEqual(Array.from(gb.dBias));
  });
});

describe("schedule and errors", () => {
  it("the paper's warm-up: plain BN, then linear relaxation to rMax 3 / dMax 5", () => {
    const s = renormSchedule();
    expect(s(0)).toEqual({ rMax: 1, dMax: 0 });
    expect(s(5000)).toEqual({ rMax: 1, dMax: 0 });
    expect(s(15000).dMax).toBeCloseTo(2.5, 12);
    expect(s(22500).rMax).toBeCloseTo(2, 12);
    expect(s(40000)).toEqual({ rMax: 3, dMax: 5 });
    expect(s(1e6)).toEqual({ rMax: 3, dMax: 5 });
    expect(() => renormSchedule({ rMax: 0.5 })).toThrow(InvalidOptionError);
    expect(() => renormSchedule({ warmupSteps: 10, rMaxSteps: 5 })).toThrow(InvalidOptionError);
  });

  it("bad bounds and missing moving statistics are named errors; nothing is updated", () => {
    const x = new Float32Array(12).fill(1);
    const rm = new Float32Array(3);
    const rv = new Float32Array(3).fill(1);
    expect(() => batchRenormTrain(x, [4, 3], { runningMean: rm, runningVar: rv, rMax: 0.9, dMax: 1 })).toThrow(InvalidOptionError);
    expect(() => batchRenormTrain(x, [4, 3], { runningMean: rm, runningVar: rv, rMax: 2, dMax: -1 })).toThrow(InvalidOptionError);
    expect(() => batchRenormTrain(x, [4, 3], { runningVar: rv, rMax: 2, dMax: 1 } as never)).toThrow(InvalidArgumentError);
    expect(() => batchRenormTrain(x, [4, 3], { runningMean: rm, runningVar: rv, rMax: 2, dMax: 1, rmax: 2 } as never)).toThrow(InvalidOptionError);
    expect(Array.from(rm)).toEqual([0, 0, 0]);
    expect(Array.from(rv)).toEqual([1, 1, 1]);
  });
});

describe("BatchNorm({ renorm })", () => {
  it("module steps equal the functional calls; eval is plain running-stat BN; bounds settable per step", async () => {
    const { init, BatchNorm2d } = await import("../dist/index.js");
    await init();
    const shape = [4, 3, 3, 3];
    const R = rng(21);
    using bn = new BatchNorm2d(3, { renorm: { rMax: 1.5, dMax: 0.5 }, momentum: 0.2 });
    bn.weight!.view.set([1.5, 0.5, -1]);
    const rm = new Float32Array(3);
    const rv = new Float32Array(3).fill(1);
    const g = Float32Array.from(bn.weight!.view);
    const b = new Float32Array(3);
    for (let step = 0; step < 3; step++) {
      const x = R.normals(108, 2, 3);
      const dy = R.normals(108);
      if (step === 2) bn.renorm = { rMax: 1, dMax: 0 };
      const bounds = bn.renorm!;
      const y = bn.forward(x, shape) as Float32Array;
      const dx = bn.backward(dy) as Float32Array;
      const f = batchRenormTrain(x, shape, { weight: g, bias: b, runningMean: rm, runningVar: rv, momentum: 0.2, ...bounds });
      const gr = batchRenormBackward(dy, x, shape, { weight: g, mean: f.mean, invStd: f.invStd, r: f.r, d: f.d });
      expect(Array.from(y)).toEqual(Array.from(f.y as Float32Array));
      expect(Array.from(dx)).toEqual(Array.from(gr.dx as Float32Array));
      expect(Array.from(bn.runningMean!.view)).toEqual(Array.from(rm));
      expect(Array.from(bn.runningVar!.view)).toEqual(Array.from(rv));
      bn.zeroGrad();
    }
    expect(bn.numBatchesTracked).toBe(3);
    expect(() => new BatchNorm2d(3, { renorm: { rMax: 2, dMax: 1 }, trackRunningStats: false })).toThrow(InvalidOptionError);
    expect(() => new BatchNorm2d(3, { renorm: { rMax: 2, dMax: 1 }, activation: "relu" })).toThrow(InvalidOptionError);
    expect(() => { bn.renorm = { rMax: 0, dMax: 1 }; }).toThrow(InvalidOptionError);
    expect(bn.renorm).toEqual({ rMax: 1, dMax: 0 });
  });
});
