/**
 * The streaming plain-array path (Float32Array in and out, moved through cache-sized
 * windows) against the resident path (WasmTensor in and out, one whole-tensor kernel
 * call): bit for bit on every build, both layouts, tiny tensors (which take the one-call
 * path: they fit in one window) and tensors whose samples, planes and rows do not divide
 * the window; and the chunking itself. Every build streams, simd-threads (shared memory)
 * included, where the resident calls of the large shapes run on the thread pool.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  createEngine, supportedBuilds, setParallelThreshold, batchNormEvalOn, batchNormTrainOn, batchNormBackwardOn, WasmTensor, BatchNorm,
  type Engine, type BuildName, type Layout,
} from "../dist/index.js";
import { chunksOf, STREAM_WINDOW, Staging, streamElementwise } from "../dist/engine/staging.js";
import { rng, channelOf } from "./reference.js";

const builds = await supportedBuilds();

function expectBits(what: string, got: Float32Array, want: Float32Array) {
  expect(got.length, `${what}: length`).toBe(want.length);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) expect.fail(`${what}[${i}]: streamed ${got[i]} != resident ${want[i]}`);
}

const W = STREAM_WINDOW;
// Sized for a window of 256 Ki values (the test below checks that all but the tiny ones
// span more than one window, i.e. stream).
const shapes: [number[], Layout, string][] = [
  [[2, 3], "NCHW", "tiny"],
  [[3, 5, 7], "NHWC", "tiny channels-last"],
  [[70, 4, 33, 31], "NCHW", "several samples per window, last chunk short"],
  [[3, 29, 97, 101], "NCHW", "a sample larger than the window: runs of planes"],
  [[2, 3, 520, 509], "NCHW", "a plane larger than the window"],
  [[21001, 13], "NHWC", "rows not dividing the window"],
  [[2, 270001], "NHWC", "one row larger than the window"],
  [[8, 66, 130, 5], "NHWC", "channels-last rank 4"],
];

it("every test shape but the tiny ones spans more than one window", () => {
  for (const [shape, , what] of shapes) {
    const size = shape.reduce((a, b) => a * b, 1);
    expect(size > W, `${JSON.stringify(shape)} (${what}): ${size} values against a window of ${W}`).toBe(!what.startsWith("tiny"));
  }
});

describe("chunksOf", () => {
  it.each(shapes)("%j %s (%s): chunks tile the tensor in order, each a valid tensor", (shape, layout) => {
    const C = channelOf(shape, layout).C;
    const size = shape.reduce((a, b) => a * b, 1);
    const inner = layout === "NCHW" ? size / shape[0] / C : 1;
    const d = { outer: size / (C * inner), channels: C, inner };
    let next = 0;
    for (const c of chunksOf(d)) {
      expect(c.start).toBe(next);
      expect(c.length).toBe(c.outer * c.channels * c.inner);
      expect(c.inner).toBe(inner);
      expect(c.channel0 + c.channels).toBeLessThanOrEqual(C);
      // Element (o, c, i) of the chunk is element start + ... of the whole with channel channel0 + c.
      expect(c.start % (C * inner)).toBe(c.channel0 * inner);
      expect(c.length <= W || c.channels === 1).toBe(true);
      next += c.length;
    }
    expect(next).toBe(size);
  });

  it.each(shapes)("%j %s (%s): with segments, no chunk crosses one and the last of each says so", (shape, layout) => {
    const C = channelOf(shape, layout).C;
    const size = shape.reduce((a, b) => a * b, 1);
    const inner = layout === "NCHW" ? size / shape[0] / C : 1;
    const d = { outer: size / (C * inner), channels: C, inner };
    const unit = C * inner;
    for (const segment of [1, 2, 3, Math.ceil(d.outer / 2)]) {
      let next = 0, ends = 0;
      for (const c of chunksOf(d, W, inner === 1 ? 4 : 0, segment)) {
        expect(c.start).toBe(next);
        next += c.length;
        const first = Math.floor(c.start / unit), last = Math.ceil(next / unit) - 1;
        expect(Math.floor(first / segment), `chunk at ${c.start} within one segment of ${segment}`).toBe(Math.floor(last / segment));
        const closes = next % unit === 0 && ((last + 1) % segment === 0 || next === size);
        expect(c.segmentEnd, `chunk ending at ${next}, segments of ${segment}`).toBe(closes);
        if (c.segmentEnd) ends++;
      }
      expect(next).toBe(size);
      expect(ends).toBe(Math.ceil(d.outer / segment));
    }
  });
});

describe("streamElementwise", () => {
  it.each(builds)("%s: the window views follow a memory that grows between chunks", async (build) => {
    // A kernel that allocates (as one that needs scratch may) can grow the memory mid-way:
    // a non-shared memory then detaches its old buffer, so views made before are empty.
    const engine = await createEngine(build, 2);
    const d = { outer: 2, channels: 2, inner: W / 2 + 7 }; // planes of more than half a window: one per chunk
    const size = d.outer * d.channels * d.inner;
    const x = rng(5).normals(size), y = new Float32Array(size).fill(NaN);
    const s = new Staging(engine);
    const held: number[] = [];
    try {
      let grown = 0;
      streamElementwise(s, d, [x], [y], (c, [xp], [yp]) => {
        const before = engine.memory.buffer.byteLength;
        held.push(engine.glue.alloc_f32(4 << 20)); // 16 MiB: more than the memory has spare
        if (engine.memory.buffer.byteLength > before) grown++;
        // The "kernel": y = 2x, read and written through views made after the growth.
        const b = engine.memory.buffer;
        const xs = new Float32Array(b, xp, c.length), ys = new Float32Array(b, yp, c.length);
        for (let i = 0; i < c.length; i++) ys[i] = 2 * xs[i];
      });
      expect(grown, "the memory grew during the stream").toBeGreaterThan(1);
      expectBits("y", y, x.map((v) => 2 * v));
    } finally {
      for (const p of held) engine.glue.free_f32(p, 4 << 20);
      s.release();
    }
  });
});

describe("streamElementwise window sizes", () => {
  it.each(builds)("%s: plain inputs go through windows the kernels treat as cached; a resident input's chunks are longer", async (build) => {
    // The row kernels take channels-last rows four at a time in data of at most
    // cached_elems() elements, which is right for the windows (in L2) and about 2x slow for
    // main memory: a resident tensor read in place must come in longer chunks.
    const engine = await createEngine(build, 2);
    const cached = engine.glue.cached_elems();
    const d = { outer: 40000, channels: 64, inner: 1 };
    const size = d.outer * d.channels;
    const x = new Float32Array(size), y = new Float32Array(size);
    const xt = WasmTensor.from(x, engine);
    const s = new Staging(engine);
    try {
      for (const [input, longer] of [[x, false], [xt, true]] as const) {
        const lengths: number[] = [];
        streamElementwise(s, d, [input], [y], (c) => void lengths.push(c.length));
        const most = Math.max(...lengths);
        expect(most <= cached, `${longer ? "resident" : "plain"} x: longest chunk ${most} against ${cached}`).toBe(!longer);
      }
    } finally {
      s.release();
      xt.free();
    }
  });
});

describe.each(builds)("build %s", (build: BuildName) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
    setParallelThreshold(1 << 16, engine); // the resident call of the large shapes runs on the pool
  });

  it.each(shapes)("eval %j %s (%s): streamed = resident, with and without weight, z and ReLU", (shape, layout) => {
    const r = rng(shape.length * 7 + shape[0]);
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    const x = r.normals(size, 1, 2), z = r.normals(size);
    const stats = { runningMean: r.normals(C), runningVar: Float32Array.from(r.normals(C), (v) => 0.5 + Math.abs(v)) };
    const params = { weight: r.normals(C, 1, 0.3), bias: r.normals(C) };
    const xt = WasmTensor.from(x, engine), zt = WasmTensor.from(z, engine), yt = WasmTensor.alloc(size, engine);
    try {
      for (const [name, extra] of [
        ["plain", {}],
        ["affine", params],
        ["affine + z + relu", { ...params, activation: "relu" as const }],
      ] as const) {
        const withZ = name.includes("z");
        batchNormEvalOn(engine, xt, shape, { ...stats, ...extra, layout, z: withZ ? zt : undefined, out: yt });
        const want = yt.view.slice();
        const fresh = batchNormEvalOn(engine, x, shape, { ...stats, ...extra, layout, z: withZ ? z : undefined }) as Float32Array;
        expectBits(`${name}: new output`, fresh, want);
        const out = new Float32Array(size).fill(NaN);
        expect(batchNormEvalOn(engine, x, shape, { ...stats, ...extra, layout, z: withZ ? z : undefined, out })).toBe(out);
        expectBits(`${name}: into out`, out, want);
        if (withZ) {
          // A resident residual with a streamed x: read in place at each chunk's offset.
          expectBits(`${name}: resident z`, batchNormEvalOn(engine, x, shape, { ...stats, ...extra, layout, z: zt }) as Float32Array, want);
        }
      }
      // In place: out is x itself.
      const xi = x.slice();
      batchNormEvalOn(engine, xt, shape, { ...stats, layout, out: yt });
      batchNormEvalOn(engine, xi, shape, { ...stats, layout, out: xi });
      expectBits("in place", xi, yt.view.slice());
    } finally {
      for (const t of [xt, zt, yt]) t.free();
    }
  });

  it.each(shapes)("train forward and backward %j %s (%s): streamed = resident, running stats, ReLU and residual", (shape, layout) => {
    const r = rng(shape.length * 13 + shape[0]);
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf(shape, layout).C;
    if (size / C < 2) return; // training needs two values per channel
    const x = r.normals(size, 3, 2), z = r.normals(size), dy = r.normals(size);
    const weight = r.normals(C, 1, 0.3), bias = r.normals(C);
    const rm0 = r.normals(C), rv0 = Float32Array.from(r.normals(C), (v) => 0.5 + Math.abs(v));
    const [xt, zt, dyt, yt, dxt, dzt] = [x, z, dy, null, null, null].map((a) => (a ? WasmTensor.from(a, engine) : WasmTensor.alloc(size, engine)));
    try {
      for (const fused of [false, true]) {
        const f = fused ? { activation: "relu" as const } : {};
        // Resident: WasmTensor in and out, one whole-tensor call each.
        const rmR = rm0.slice(), rvR = rv0.slice();
        const res = batchNormTrainOn(engine, xt, shape, { weight, bias, layout, runningMean: rmR, runningVar: rvR, ...f, z: fused ? zt : undefined, out: yt });
        const bw = { weight, mean: res.mean, invStd: res.invStd, layout, ...f };
        batchNormBackwardOn(engine, dyt, xt, shape, { ...bw, y: fused ? yt : undefined, residual: fused, out: dxt, outZ: fused ? dzt : undefined });
        const wantB = batchNormBackwardOn(engine, dyt, xt, shape, { ...bw, y: fused ? yt : undefined, out: dxt });
        // Streamed: plain arrays in and out.
        const rmS = rm0.slice(), rvS = rv0.slice();
        const str = batchNormTrainOn(engine, x, shape, { weight, bias, layout, runningMean: rmS, runningVar: rvS, ...f, z: fused ? z : undefined });
        const tag = fused ? "relu + z" : "plain";
        expectBits(`${tag}: y`, str.y as Float32Array, yt.view.slice());
        expectBits(`${tag}: mean`, str.mean, res.mean);
        expectBits(`${tag}: invStd`, str.invStd, res.invStd);
        expectBits(`${tag}: runningMean`, rmS, rmR);
        expectBits(`${tag}: runningVar`, rvS, rvR);
        // Resident parameters and running statistics with plain x and y (on simd-threads
        // the call runs on the unshared build, which hands the running update back).
        const [wT, rmT, rvT] = [weight, rm0, rv0].map((a) => WasmTensor.from(a, engine));
        try {
          const strT = batchNormTrainOn(engine, x, shape, { weight: wT, bias, layout, runningMean: rmT, runningVar: rvT, ...f, z: fused ? z : undefined });
          expectBits(`${tag}: y, resident parameters`, strT.y as Float32Array, yt.view.slice());
          expectBits(`${tag}: resident runningMean`, rmT.view.slice(), rmR);
          expectBits(`${tag}: resident runningVar`, rvT.view.slice(), rvR);
          const bT = batchNormBackwardOn(engine, dy, x, shape, { ...bw, weight: wT, y: fused ? (strT.y as Float32Array) : undefined });
          expectBits(`${tag}: dx, resident weight`, bT.dx as Float32Array, dxt.view.slice());
        } finally {
          for (const t of [wT, rmT, rvT]) t.free();
        }
        const yArr = str.y as Float32Array;
        const b = batchNormBackwardOn(engine, dy, x, shape, { ...bw, y: fused ? yArr : undefined, residual: fused });
        expectBits(`${tag}: dx`, b.dx as Float32Array, dxt.view.slice());
        expectBits(`${tag}: dWeight`, b.dWeight, wantB.dWeight);
        expectBits(`${tag}: dBias`, b.dBias, wantB.dBias);
        if (fused) expectBits(`${tag}: dz`, b.dz as Float32Array, dzt.view.slice());
        // Into given arrays; resident x with a plain-array output streams too.
        const out = new Float32Array(size).fill(NaN);
        batchNormTrainOn(engine, xt, shape, { weight, bias, layout, ...f, z: fused ? z : undefined, out });
        expectBits(`${tag}: y into out from resident x`, out, yt.view.slice());
      }
    } finally {
      for (const t of [xt, zt, dyt, yt, dxt, dzt]) t.free();
    }
  });

  it.each([
    [[12, 5, 70, 70], "NCHW"],
    [[21000, 13], "NHWC"],
  ] as const)("a module fed plain arrays %j %s = one fed WasmTensors: outputs, gradients, running stats (ReLU + z, eval)", (shape, layout) => {
    // On simd-threads the plain-array module runs on the unshared companion; the bits must
    // not tell.
    const r = rng(shape[0] * 31);
    const size = shape.reduce((a, b) => a * b, 1);
    const C = channelOf([...shape], layout).C;
    const opts = { layout, engine, activation: "relu" as const, momentum: null };
    const plain = new BatchNorm(C, opts), res = new BatchNorm(C, opts);
    const w0 = r.normals(C, 1, 0.3);
    for (const m of [plain, res]) m.weight!.view.set(w0);
    const held: WasmTensor[] = [];
    const T = (a: Float32Array) => { const t = WasmTensor.from(a, engine); held.push(t); return t; };
    const arr = (v: Float32Array | WasmTensor) => (v instanceof WasmTensor ? v.view.slice() : v);
    try {
      for (let step = 0; step < 3; step++) {
        const x = r.normals(size, step, 2), z = r.normals(size), dy = r.normals(size);
        if (step === 2) { plain.eval(); res.eval(); }
        const yP = plain.forward(x, [...shape], { z }) as Float32Array;
        const yR = res.forward(T(x), [...shape], { z: T(z), out: T(new Float32Array(size)) });
        expectBits(`step ${step}: y`, yP, arr(yR));
        // Backward into a resident out on the plain module: written, and returned as given.
        const dxOut = WasmTensor.alloc(size, engine);
        held.push(dxOut);
        const dxP = plain.backward(dy, step === 1 ? { out: dxOut } : {});
        const dxR = res.backward(T(dy), { out: T(new Float32Array(size)) });
        if (step === 1) expect(dxP).toBe(dxOut);
        expectBits(`step ${step}: dx`, arr(dxP), arr(dxR));
        expectBits(`step ${step}: dz`, arr(plain.residualGrad!), arr(res.residualGrad!));
        expectBits(`step ${step}: weightGrad`, plain.weightGrad!.view.slice(), res.weightGrad!.view.slice());
        expectBits(`step ${step}: biasGrad`, plain.biasGrad!.view.slice(), res.biasGrad!.view.slice());
        expectBits(`step ${step}: runningMean`, plain.runningMean!.view.slice(), res.runningMean!.view.slice());
        expectBits(`step ${step}: runningVar`, plain.runningVar!.view.slice(), res.runningVar!.view.slice());
        expect(plain.numBatchesTracked).toBe(res.numBatchesTracked);
      }
    } finally {
      for (const t of held) t.free();
      plain.dispose();
      res.dispose();
    }
  });
});
