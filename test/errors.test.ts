/** Every documented bad input throws its named error and changes no state. */
import { beforeAll, describe, expect, it } from "vitest";
import {
  init, batchNormTrain, batchNormEval, batchNormBackward, WasmTensor,
  BatchNormError, ShapeError, LengthMismatchError, ChannelMismatchError, TooFewValuesError,
  InvalidOptionError, InvalidArgumentError, StateError, BatchNorm2d, BatchNorm1d,
} from "../dist/index.js";

beforeAll(async () => {
  await init({ build: "simd" });
});

const shape = [2, 3, 2, 2];
const x = () => Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
const per = (v = 0) => new Float32Array(3).fill(v);

type Ctor = new (...a: never[]) => BatchNormError;

/** Bit patterns of tensors, to compare after a rejected call (NaN-safe, -0-safe). */
const bits = (...ts: WasmTensor[]) => ts.map((t) => Array.from(new Uint32Array(t.view.buffer, t.view.byteOffset, t.length)));

/** Resident tensors filled with values no kernel would write, freed after `body`. */
function withResident(lengths: number[], body: (...ts: WasmTensor[]) => void): void {
  const ts = lengths.map((n, i) => WasmTensor.from(Float32Array.from({ length: n }, (_, j) => 1000 + 10 * i + j / 7)));
  try {
    body(...ts);
  } finally {
    for (const t of ts) t.free();
  }
}

/** `call` must throw `kind` (a BatchNormError) with a message matching `msg`. */
function expectThrows(call: () => unknown, kind: Ctor, msg: RegExp): void {
  expect(call).toThrow(kind);
  expect(call).toThrow(msg);
  expect(call).toThrow(BatchNormError);
}

/**
 * Runs a training call that must throw `kind` with a message matching `msg`, twice: with
 * Float32Array running statistics, and with running statistics and `out` resident in wasm
 * memory, where a partial kernel write would be visible. Both must be bit-identical after.
 */
function rejectsTrain(kind: Ctor, msg: RegExp, xs: unknown, shp: unknown, opts: Record<string, unknown> = {}) {
  const runningMean = per(0.5);
  const runningVar = per(2);
  expectThrows(() => batchNormTrain(xs as Float32Array, shp as number[], { runningMean, runningVar, ...opts }), kind, msg);
  expect(Array.from(runningMean)).toEqual([0.5, 0.5, 0.5]);
  expect(Array.from(runningVar)).toEqual([2, 2, 2]);

  const n = xs instanceof Float32Array || xs instanceof WasmTensor ? xs.length : 24;
  withResident([3, 3, n], (rm, rv, out) => {
    const before = bits(rm, rv, out);
    const call = () => batchNormTrain(xs as Float32Array, shp as number[], { runningMean: rm, runningVar: rv, out, ...opts });
    expectThrows(call, kind, msg);
    expect(bits(rm, rv, out)).toEqual(before);
  });
}

/** An eval or backward call that must throw, with a resident `out` that must stay bit-identical. */
function rejectsWithOut(kind: Ctor, msg: RegExp, call: (out: WasmTensor) => unknown, n = 24) {
  withResident([n], (out) => {
    const before = bits(out);
    expectThrows(() => call(out), kind, msg);
    expect(bits(out)).toEqual(before);
  });
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

describe("eval and backward reject, leaving a resident out untouched", () => {
  const evalWith = (opts: Record<string, unknown>) => (out: WasmTensor) => batchNormEval(x(), shape, { out, ...opts } as never);
  const backwardWith = (dy: Float32Array, opts: Record<string, unknown>) => (out: WasmTensor) =>
    batchNormBackward(dy, x(), shape, { out, ...opts } as never);
  it("missing running statistics", () =>
    rejectsWithOut(InvalidArgumentError, /runningVar is required/, evalWith({ runningMean: per() })));
  it("running statistics with the wrong channel count", () =>
    rejectsWithOut(ChannelMismatchError, /runningVar has 2 elements/, evalWith({ runningMean: per(), runningVar: new Float32Array(2) })));
  it("eval with negative eps", () =>
    rejectsWithOut(InvalidOptionError, /eps must be a finite number >= 0/, evalWith({ runningMean: per(), runningVar: per(1), eps: -1 })));
  it("eval with a wrong-length x", () =>
    rejectsWithOut(LengthMismatchError, /x has 23 elements/, (out) =>
      batchNormEval(new Float32Array(23), shape, { runningMean: per(), runningVar: per(1), out })));
  it("dy of the wrong length", () =>
    rejectsWithOut(LengthMismatchError, /dy has 20 elements/, backwardWith(new Float32Array(20), { mean: per(), invStd: per(1) })));
  it("missing saved statistics", () =>
    rejectsWithOut(InvalidArgumentError, /invStd is required/, backwardWith(x(), { mean: per() })));
  it("a saved mean with the wrong channel count", () =>
    rejectsWithOut(ChannelMismatchError, /mean has 4 elements/, backwardWith(x(), { mean: new Float32Array(4), invStd: per(1) })));
  it("training backward with one value per channel", () =>
    rejectsWithOut(TooFewValuesError, /more than 1 value per channel/, (out) =>
      batchNormBackward(per(1), per(1), [1, 3], { mean: per(), invStd: per(1), out }), 3));
  it("a non-boolean training flag", () =>
    rejectsWithOut(InvalidArgumentError, /training must be a boolean/, backwardWith(x(), { mean: per(), invStd: per(1), training: "yes" })));
  it("an out that aliases dy", () => {
    const dy = WasmTensor.from(x());
    try {
      const before = bits(dy);
      expectThrows(() => batchNormBackward(dy, x(), shape, { mean: per(), invStd: per(1), out: dy }), InvalidArgumentError, /out must not share memory with dy/);
      expect(bits(dy)).toEqual(before);
    } finally {
      dy.free();
    }
  });
});

describe("unknown option keys name the key and the closest known one", () => {
  it("functional API", () => {
    rejectsTrain(InvalidOptionError, /unknown option "epsilon" \(did you mean "eps"\?\) in batchNormTrain options/, x(), shape, { epsilon: 1e-3 });
    rejectsTrain(InvalidOptionError, /unknown option "running_mean" \(did you mean "runningMean"\?\)/, x(), shape, { running_mean: per() });
    rejectsWithOut(InvalidOptionError, /unknown option "epsilon" \(did you mean "eps"\?\) in batchNormEval/, evalKey({ epsilon: 0.1 }));
    rejectsWithOut(InvalidOptionError, /unknown option "trainig" \(did you mean "training"\?\) in batchNormBackward/, (out) =>
      batchNormBackward(x(), x(), shape, { mean: per(), invStd: per(1), out, trainig: false } as never));
  });
  it("options that are not an object", () => {
    expect(() => batchNormTrain(x(), shape, null as never)).toThrow(/batchNormTrain options must be an object, got null/);
    expect(() => batchNormTrain(x(), shape, [1] as never)).toThrow(InvalidOptionError);
  });
  it("init", async () => {
    await expect(init({ bulid: "simd" } as never)).rejects.toThrow(/unknown option "bulid" \(did you mean "build"\?\) in init options/);
  });
});

function evalKey(extra: Record<string, unknown>) {
  return (out: WasmTensor) => batchNormEval(x(), shape, { runningMean: per(), runningVar: per(1), out, ...extra } as never);
}

describe("eps in training", () => {
  it("eps = 0 is rejected when batch statistics normalise (PyTorch: eps must be positive during training)", () =>
    rejectsTrain(InvalidOptionError, /eps must be positive when normalising with batch statistics/, x(), shape, { eps: 0 }));
  it("eval keeps eps >= 0: eps = 0 normalises with the running variance alone", () => {
    const y = batchNormEval(Float32Array.from([1, 3, 5, 7]), [2, 2], { runningMean: Float32Array.from([1, 3]), runningVar: Float32Array.from([4, 16]), eps: 0 });
    expect(Array.from(y as Float32Array)).toEqual([0, 0, 2, 1]);
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

describe("modules", () => {
  it("reject unknown options in the constructor, forward, backward and loadStateDict", () => {
    expectThrows(() => new BatchNorm2d(3, { epsilon: 1e-3 } as never), InvalidOptionError, /unknown option "epsilon" \(did you mean "eps"\?\) in BatchNorm2d options/);
    expectThrows(() => new BatchNorm1d(3, { track_running_stats: false } as never), InvalidOptionError, /did you mean "trackRunningStats"/);
    const bn = new BatchNorm2d(3);
    try {
      expectThrows(() => bn.forward(x(), shape, { output: new Float32Array(24) } as never), InvalidOptionError, /unknown option "output" \(did you mean "out"\?\)/);
      expect(bn.numBatchesTracked).toBe(0);
      bn.forward(x(), shape);
      expectThrows(() => bn.backward(x(), { outt: new Float32Array(24) } as never), InvalidOptionError, /did you mean "out"/);
      expectThrows(() => bn.loadStateDict(bn.stateDict(), { strcit: false } as never), InvalidOptionError, /did you mean "strict"/);
    } finally {
      bn.dispose();
    }
  });

  it("numFeatures beyond a 32-bit memory is a ShapeError", () => {
    expectThrows(() => new BatchNorm1d(1e12), ShapeError, /numFeatures of 1000000000000 f32 values .* does not fit in a 32-bit wasm memory/);
  });

  it("eps = 0: training forward is rejected with running statistics untouched; eval runs", () => {
    const bn = new BatchNorm2d(3, { eps: 0 });
    try {
      const before = bits(bn.runningMean!, bn.runningVar!, bn.weight!, bn.bias!);
      expectThrows(() => bn.forward(x(), shape), InvalidOptionError, /eps must be positive when normalising with batch statistics/);
      expect(bn.numBatchesTracked).toBe(0);
      expect(bits(bn.runningMean!, bn.runningVar!, bn.weight!, bn.bias!)).toEqual(before);
      expectThrows(() => bn.backward(x()), StateError, /needs a forward\(\) first/);
      bn.eval();
      const y = bn.forward(x(), shape) as Float32Array; // running mean 0, var 1, eps 0: y = x
      expect(Array.from(y)).toEqual(Array.from(x()));
    } finally {
      bn.dispose();
    }
    const noStats = new BatchNorm2d(3, { eps: 0, trackRunningStats: false }).eval();
    expectThrows(() => noStats.forward(x(), shape), InvalidOptionError, /eps must be positive/);
    noStats.dispose();
  });
});

describe("error names", () => {
  it("every exported module class has its export name as a literal layerName, used in its messages (minifiers rename classes)", async () => {
    const api = (await import("../dist/index.js")) as Record<string, unknown>;
    const { BatchNorm, NormModule } = api as { BatchNorm: { prototype: object }; NormModule: { prototype: object } };
    const modules = Object.entries(api).filter(
      ([, v]) => typeof v === "function" && [BatchNorm, NormModule].some((b) => v === b || (v as { prototype: unknown }).prototype instanceof (b as never)),
    ) as [string, { layerName: string } & (new (...a: unknown[]) => unknown)][];
    expect(modules.map(([k]) => k).sort()).toEqual(expect.arrayContaining(["BatchNorm", "BatchNorm2d", "GroupNorm", "InstanceNorm3d", "LayerNorm", "RMSNorm"]));
    for (const [exported, Cls] of modules) expect(Object.getOwnPropertyDescriptor(Cls, "layerName")?.value, exported).toBe(exported);
    // Renamed as a minifier would: the message still names the layer.
    class Renamed extends (api.InstanceNorm2d as new (n: number, o: object) => object) {}
    expect(() => new Renamed(3, { epsilon: 1 })).toThrow(/InstanceNorm2d/);
    expect(() => new Renamed(3, { epsilon: 1 })).not.toThrow(/Renamed/);
  });

  it("every exported error class names itself with its export name (minifiers rename classes)", async () => {
    const api = (await import("../dist/index.js")) as Record<string, unknown>;
    const classes = Object.entries(api).filter(
      ([, v]) => typeof v === "function" && (v === BatchNormError || (v as { prototype: unknown }).prototype instanceof BatchNormError),
    ) as [string, new (m: string) => Error][];
    expect(classes.length).toBeGreaterThanOrEqual(13);
    for (const [exported, Cls] of classes) {
      const e = new Cls("m");
      expect(e.name, exported).toBe(exported);
      expect(String(e)).toBe(`${exported}: m`);
      // A literal in the class body, not derived from the (renameable) class name.
      expect(Object.getOwnPropertyDescriptor(e, "name")?.value).toBe(exported);
    }
  });
});
