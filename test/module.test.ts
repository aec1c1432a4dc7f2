/**
 * The BatchNorm modules against PyTorch's own nn.BatchNorm1d/2d/3d (recorded in
 * test/fixtures), against the functional API, and their lifecycle.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  init, BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, batchNormTrain, batchNormEval, WasmTensor,
  StateError, ShapeError, ChannelMismatchError, InvalidArgumentError, InvalidOptionError, TooFewValuesError,
} from "../dist/index.js";
import { torchFixture, type Step } from "./pytorch.js";
import { refStats, rng } from "./reference.js";
import { expectClose } from "./close.js";

beforeAll(async () => {
  await init();
});

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

describe.each(torchFixture.cases.map((c) => [c.name, c] as const))(`PyTorch ${torchFixture.torch_version}: %s`, (_n, c) => {
  it("train steps, then an eval step: outputs, gradients, running statistics", () => {
    const Cls = c.train_steps[0].shape.length === 5 ? BatchNorm3d : c.train_steps[0].shape.length === 4 ? BatchNorm2d : BatchNorm1d;
    using bn = new Cls(c.num_features, {
      eps: c.eps, momentum: c.momentum, affine: c.affine, trackRunningStats: c.track_running_stats, layout: c.layout,
    });
    if (c.affine) {
      bn.weight!.view.set(c.weight!);
      bn.bias!.view.set(c.bias!);
    }
    const check = (s: Step, what: string) => {
      bn.zeroGrad();
      const y = bn.forward(f32(s.x), s.shape);
      expectClose(`${what} y`, y as Float32Array, s.y);
      const dx = bn.backward(f32(s.dy));
      expectClose(`${what} dx`, dx as Float32Array, s.dx, 1e-4, 1e-4);
      if (c.affine) {
        expectClose(`${what} dWeight`, bn.weightGrad!.view, s.dweight!, 1e-4, 1e-4);
        expectClose(`${what} dBias`, bn.biasGrad!.view, s.dbias!, 1e-4, 1e-4);
      } else {
        expect(bn.weightGrad).toBeUndefined();
      }
    };
    c.train_steps.forEach((s, i) => {
      check(s, `train step ${i + 1}`);
      if (c.track_running_stats) {
        expectClose(`step ${i + 1} running_mean`, bn.runningMean!.view, s.running_mean!);
        expectClose(`step ${i + 1} running_var`, bn.runningVar!.view, s.running_var!);
        expect(bn.numBatchesTracked).toBe(s.num_batches_tracked);
      } else {
        expect(bn.runningMean).toBeUndefined();
      }
    });
    bn.eval();
    check(c.eval_step, "eval step");
    if (c.track_running_stats) expect(bn.numBatchesTracked).toBe(c.train_steps.length); // eval does not count
  });
});

describe("module semantics", () => {
  const shape = [6, 3, 4, 4];
  const x = rng(1).normals(6 * 3 * 16, 2, 3);

  it("train forward equals the functional API with the module's state", () => {
    using bn = new BatchNorm2d(3, { momentum: 0.2 });
    bn.weight!.view.set([1.5, 0.5, 2]);
    const rm = new Float32Array(3);
    const rv = new Float32Array(3).fill(1);
    const want = batchNormTrain(x, shape, { weight: f32([1.5, 0.5, 2]), bias: new Float32Array(3), runningMean: rm, runningVar: rv, momentum: 0.2 });
    expect(bn.forward(x, shape)).toEqual(want.y);
    expect(bn.runningMean!.toArray()).toEqual(rm);
    expect(bn.runningVar!.toArray()).toEqual(rv);
    bn.eval();
    expect(bn.forward(x, shape)).toEqual(batchNormEval(x, shape, { weight: f32([1.5, 0.5, 2]), bias: new Float32Array(3), runningMean: rm, runningVar: rv }));
  });

  it("momentum null is a cumulative average over several steps (both conventions)", () => {
    for (const convention of ["pytorch", "onnx"] as const) {
      using bn = new BatchNorm(2, { momentum: null, convention, layout: "NHWC" });
      const means: number[][] = [];
      const vars: number[][] = [];
      for (let step = 0; step < 5; step++) {
        const n = 4 + step;
        const xs = rng(10 + step).normals(n * 2, step, 1 + step);
        bn.forward(xs, [n, 2]);
        const s = refStats(xs, [n, 2], "NHWC");
        means.push(Array.from(s.mean));
        // PyTorch averages the unbiased batch variances; ONNX the biased ones.
        vars.push(Array.from(s.varBiased, (v) => (convention === "pytorch" ? (v * n) / (n - 1) : v)));
      }
      const avg = (rows: number[][]) => [0, 1].map((c) => rows.reduce((a, r) => a + r[c], 0) / rows.length);
      expectClose(`${convention} running mean`, bn.runningMean!.view, avg(means), 1e-5, 1e-5);
      expectClose(`${convention} running var`, bn.runningVar!.view, avg(vars), 1e-5, 1e-5);
      expect(bn.numBatchesTracked).toBe(5);
    }
  });

  it("trackRunningStats: false uses batch statistics in eval mode too", () => {
    using bn = new BatchNorm2d(3, { trackRunningStats: false });
    const yTrain = bn.forward(x, shape);
    bn.eval();
    expect(bn.forward(x, shape)).toEqual(yTrain);
    expect(bn.runningMean).toBeUndefined();
    expect(Object.keys(bn.stateDict())).toEqual(["weight", "bias"]);
    expect(() => bn.forward(new Float32Array(3), [1, 3, 1, 1])).toThrow(TooFewValuesError);
  });

  it("backward accumulates gradients until zeroGrad", () => {
    using bn = new BatchNorm2d(3);
    const dy = rng(2).normals(x.length);
    bn.forward(x, shape);
    bn.backward(dy);
    const once = bn.weightGrad!.toArray();
    bn.forward(x, shape);
    bn.backward(dy);
    expectClose("twice", bn.weightGrad!.view, Array.from(once, (v) => 2 * v), 1e-6, 1e-6);
    bn.zeroGrad();
    expect(Array.from(bn.weightGrad!.view)).toEqual([0, 0, 0]);
    expect(Array.from(bn.biasGrad!.view)).toEqual([0, 0, 0]);
  });

  it("the forward input is kept: a caller may reuse its Float32Array", () => {
    using bn = new BatchNorm2d(3);
    const dy = rng(2).normals(x.length);
    const xs = x.slice();
    bn.forward(xs, shape);
    const dx1 = bn.backward(dy);
    using other = new BatchNorm2d(3);
    other.forward(x, shape);
    xs.fill(7); // caller reuses its buffer
    bn.forward(x, shape);
    expect(bn.backward(dy)).toEqual(dx1);
    expect(other.backward(dy)).toEqual(dx1);
  });

  it("checks rank and channels as PyTorch does; a rejected forward keeps the last one's state", () => {
    using bn = new BatchNorm2d(3);
    const dy = rng(2).normals(x.length);
    bn.forward(x, shape);
    const dx = bn.backward(dy);
    expect(() => bn.forward(new Float32Array(12), [4, 3])).toThrow(ShapeError);
    expect(() => bn.forward(new Float32Array(12), [4, 3])).toThrow(/BatchNorm2d: expected 4D input \(got 2D input\)/);
    expect(() => bn.forward(new Float32Array(64), [4, 4, 2, 2])).toThrow(ChannelMismatchError);
    expect(() => bn.forward(new Float32Array(x.length), shape, { out: new Float32Array(5) })).toThrow(/out has 5 elements/);
    expect(() => new BatchNorm1d(3).forward(new Float32Array(48), [2, 3, 2, 4])).toThrow(/expected 2D or 3D input \(got 4D input\)/);
    expect(() => new BatchNorm3d(3).forward(new Float32Array(12), [4, 3])).toThrow(/expected 5D input/);
    expect(bn.numBatchesTracked).toBe(1);
    expect(bn.backward(dy)).toEqual(dx);
  });

  it("rejects bad options and backward before forward", () => {
    expect(() => new BatchNorm(0)).toThrow(InvalidArgumentError);
    expect(() => new BatchNorm(3, { momentum: 2 })).toThrow(InvalidOptionError);
    expect(() => new BatchNorm(3, { eps: -1 })).toThrow(InvalidOptionError);
    using bn = new BatchNorm(3);
    expect(() => bn.backward(new Float32Array(6))).toThrow(/backward\(\) needs a forward\(\) first/);
  });

  it("dispose frees every buffer and later calls throw StateError", () => {
    const bn = new BatchNorm2d(3);
    const w = bn.weight!;
    bn.forward(x, shape);
    bn.dispose();
    bn.dispose(); // idempotent
    expect(w.freed).toBe(true);
    expect(bn.disposed).toBe(true);
    expect(() => bn.forward(x, shape)).toThrow(StateError);
    expect(() => bn.weight).toThrow(StateError);
    expect(() => bn.stateDict()).toThrow(StateError);
  });

  it("modules dropped without dispose are freed by the FinalizationRegistry", async () => {
    const gc = (globalThis as { gc?: () => void }).gc!;
    const mem = WasmTensor.alloc(1).engine.memory;
    const start = mem.buffer.byteLength;
    const big = rng(3).normals(1 << 20); // each module keeps a 4 MiB input copy
    for (let i = 0; i < 40; i++) {
      new BatchNorm(4).forward(big, [1 << 18, 4]); // never disposed
      gc();
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(mem.buffer.byteLength - start).toBeLessThan(64 << 20); // 40 x 4 MiB leaked otherwise
  });

  it("stateDict / loadStateDict round trip; strict key checks; no partial load", () => {
    using a = new BatchNorm2d(3);
    a.forward(x, shape);
    a.weight!.view.set([1, 2, 3]);
    const sd = a.stateDict();
    expect(Object.keys(sd)).toEqual(["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
    expect(sd.num_batches_tracked).toBe(1n);
    using b = new BatchNorm2d(3);
    b.loadStateDict(sd);
    expect(b.stateDict()).toEqual(sd);
    expect(b.numBatchesTracked).toBe(1);

    using c = new BatchNorm2d(3);
    const before = c.stateDict();
    expect(() => c.loadStateDict({ ...sd, running_var: new Float32Array(4) })).toThrow(ChannelMismatchError);
    expect(() => c.loadStateDict({ weight: sd.weight })).toThrow(/missing \[bias, running_mean, running_var, num_batches_tracked\]/);
    expect(() => c.loadStateDict({ ...sd, extra: new Float32Array(3) } as never)).toThrow(/unexpected \[extra\]/);
    expect(c.stateDict()).toEqual(before); // nothing was loaded by the rejected calls
    c.loadStateDict({ weight: sd.weight }, { strict: false });
    expect(c.weight!.toArray()).toEqual(f32([1, 2, 3]));
  });
});
