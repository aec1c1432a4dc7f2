/** Every documented bad input throws its named error and changes no state. */
import { beforeAll, describe, expect, it } from "vitest";
import {
  init, batchNormTrain, batchNormEval, batchNormBackward, WasmTensor,
  BatchNormError, ShapeError, LengthMismatchError, ChannelMismatchError, TooFewValuesError,
  InvalidOptionError, InvalidArgumentError, StateError,
} from "../dist/index.js";

beforeAll(async () => {
  await init({ build: "simd" });
});

const shape = [2, 3, 2, 2];
const x = () => Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
const per = (v = 0) => new Float32Array(3).fill(v);

type Ctor = new (...a: never[]) => BatchNormError;

/** Runs a training call that must throw `kind` with a message matching `msg`, and checks
 * that the running statistics it was given are untouched. */
function rejectsTrain(kind: Ctor, msg: RegExp, xs: unknown, shp: unknown, opts: Record<string, unknown> = {}) {
  const runningMean = per(0.5);
  const runningVar = per(2);
  const call = () => batchNormTrain(xs as Float32Array, shp as number[], { runningMean, runningVar, ...opts });
  expect(call).toThrow(kind);
  expect(call).toThrow(msg);
  expect(call).toThrow(BatchNormError);
  expect(Array.from(runningMean)).toEqual([0.5, 0.5, 0.5]);
  expect(Array.from(runningVar)).toEqual([2, 2, 2]);
}

describe("training forward rejects", () => {
  it("rank < 2", () => rejectsTrain(ShapeError, /rank >= 2.*rank 1/, new Float32Array(4), [4]));
  it("a zero, negative or fractional dimension", () => {
    rejectsTrain(ShapeError, /dimension 2 .* positive integer, got 0/, new Float32Array(0), [2, 3, 0]);
    rejectsTrain(ShapeError, /dimension 0 .* got -2/, new Float32Array(6), [-2, 3]);
    rejectsTrain(ShapeError, /dimension 1 .* got 1.5/, new Float32Array(3), [2, 1.5]);
  });
  it("length vs shape", () => rejectsTrain(LengthMismatchError, /x has 23 elements but shape \[2, 3, 2, 2\] implies 24/, new Float32Array(23), shape));
  it("a weight with the wrong channel count", () =>
    rejectsTrain(ChannelMismatchError, /weight has 4 elements but the input has 3 channels/, x(), shape, { weight: new Float32Array(4) }));
  it("a bias with the wrong channel count", () =>
    rejectsTrain(ChannelMismatchError, /bias has 2 elements/, x(), shape, { bias: new Float32Array(2) }));
  it("running stats with the wrong channel count", () => {
    expect(() => batchNormTrain(x(), shape, { runningMean: per(), runningVar: new Float32Array(5) })).toThrow(ChannelMismatchError);
  });
  it("channels-last checks the last axis", () =>
    rejectsTrain(ChannelMismatchError, /weight has 3 elements but the input has 2 channels/, x(), [2, 2, 3, 2], { weight: per(1), layout: "NHWC" }));
  it("one value per channel", () =>
    rejectsTrain(TooFewValuesError, /more than 1 value per channel/, new Float32Array(3), [1, 3]));
  it("one value per channel (spatial 1x1, batch 1)", () =>
    rejectsTrain(TooFewValuesError, /more than 1 value per channel/, new Float32Array(3), [1, 3, 1, 1]));
  it("non-finite or negative eps", () => {
    for (const eps of [NaN, Infinity, -1e-5]) rejectsTrain(InvalidOptionError, /eps must be a finite number >= 0/, x(), shape, { eps });
  });
  it("momentum outside [0, 1]", () => {
    for (const momentum of [-0.1, 1.5, NaN]) rejectsTrain(InvalidOptionError, /momentum must be a number in \[0, 1\]/, x(), shape, { momentum });
  });
  it("an unknown layout or convention", () => {
    rejectsTrain(InvalidOptionError, /layout must be "NCHW"/, x(), shape, { layout: "NWHC" });
    rejectsTrain(InvalidOptionError, /convention must be "pytorch" or "onnx"/, x(), shape, { convention: "keras" });
  });
  it("a non-Float32Array input", () =>
    rejectsTrain(InvalidArgumentError, /x must be a Float32Array or WasmTensor, got Float64Array/, new Float64Array(24), shape));
  it("only one of the running statistics", () => {
    expect(() => batchNormTrain(x(), shape, { runningMean: per() })).toThrow(/runningMean and runningVar must be given together/);
  });
  it("an output that aliases the input", () => {
    const t = WasmTensor.from(x());
    try {
      rejectsTrain(InvalidArgumentError, /out must not share memory with x/, t, shape, { out: t });
    } finally {
      t.free();
    }
  });
});

describe("eval and backward reject", () => {
  it("missing running statistics", () => {
    expect(() => batchNormEval(x(), shape, { runningMean: per() } as never)).toThrow(/runningVar is required/);
  });
  it("running statistics with the wrong channel count", () => {
    expect(() => batchNormEval(x(), shape, { runningMean: per(), runningVar: new Float32Array(2) })).toThrow(ChannelMismatchError);
  });
  it("eval with negative eps", () => {
    expect(() => batchNormEval(x(), shape, { runningMean: per(), runningVar: per(1), eps: -1 })).toThrow(InvalidOptionError);
  });
  it("dy of the wrong length", () => {
    expect(() => batchNormBackward(new Float32Array(20), x(), shape, { mean: per(), invStd: per(1) })).toThrow(/dy has 20 elements/);
  });
  it("missing saved statistics", () => {
    expect(() => batchNormBackward(x(), x(), shape, { mean: per() } as never)).toThrow(/invStd is required/);
  });
  it("a saved mean with the wrong channel count", () => {
    expect(() => batchNormBackward(x(), x(), shape, { mean: new Float32Array(4), invStd: per(1) })).toThrow(ChannelMismatchError);
  });
});

describe("tensors", () => {
  it("a freed tensor throws StateError", () => {
    const t = WasmTensor.alloc(24);
    t.free();
    t.free(); // idempotent
    expect(() => t.view).toThrow(StateError);
    expect(() => batchNormTrain(t, shape)).toThrow(StateError);
  });
});

describe("aliasing of running statistics", () => {
  it("runningMean sharing memory with runningVar or an input is rejected before any write", () => {
    const stats = WasmTensor.from([0.5, 0.5, 0.5]);
    try {
      expect(() => batchNormTrain(x(), shape, { runningMean: stats, runningVar: stats })).toThrow(/runningMean must not share memory with runningVar/);
      expect(() => batchNormTrain(x(), shape, { runningMean: stats, runningVar: per(1), weight: stats })).toThrow(InvalidArgumentError);
      expect(Array.from(stats.view)).toEqual([0.5, 0.5, 0.5]);
    } finally {
      stats.free();
    }
  });
});
