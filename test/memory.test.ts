/**
 * Running out of wasm memory is a named error on every build (OutOfMemoryError with the
 * numbers, ShapeError past 32-bit memory), nothing is written, and the engine stays usable.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  createEngine, supportedBuilds, batchNormTrainOn, batchNormEvalOn, WasmTensor, OutOfMemoryError, ShapeError, BatchNormError,
  type Engine, type BuildName,
} from "../dist/index.js";
import { refTrain, rng } from "./reference.js";
import { expectClose } from "./close.js";

const builds = await supportedBuilds();
const MiB = 2 ** 20;

/** Allocates resident tensors until the memory is full to within `finest` bytes. */
function fill(engine: Engine): WasmTensor[] {
  const held: WasmTensor[] = [];
  for (const bytes of [256 * MiB, 16 * MiB, MiB]) {
    for (;;) {
      try {
        held.push(WasmTensor.alloc(bytes / 4, engine));
      } catch (e) {
        expect(e).toBeInstanceOf(OutOfMemoryError);
        break;
      }
    }
  }
  return held;
}

describe.each(builds)("build %s", (build: BuildName) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(build, 2);
  });

  it("WasmTensor.alloc that no memory can hold: OutOfMemoryError with the request and the limits", () => {
    let err: unknown;
    try {
      WasmTensor.alloc(6e8, engine); // 2.4 GB: over one allocation's limit (and threads' 2 GiB memory)
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect(err).toBeInstanceOf(BatchNormError);
    const d = (err as OutOfMemoryError).details!;
    expect(d.requestedBytes).toBe(2.4e9);
    expect(d.maxMemoryBytes).toBe(build === "simd-threads" ? 2 ** 31 : 2 ** 32);
    expect(d.memoryBytes).toBe(engine.memory.buffer.byteLength);
    expect(String(err)).toMatch(/cannot allocate 2400000000 bytes .* can grow to at most (2048|4096) MiB/);
  });

  it("a length past 32-bit memory is a ShapeError before anything is allocated", () => {
    const size = engine.memory.buffer.byteLength;
    expect(() => WasmTensor.alloc(1.2e9, engine)).toThrow(ShapeError);
    expect(() => batchNormEvalOn(engine, new Float32Array(4), [1.2e9, 1], { runningMean: new Float32Array(1), runningVar: new Float32Array(1) }))
      .toThrow(ShapeError);
    expect(engine.memory.buffer.byteLength).toBe(size);
  });

  it("a call that cannot stage its Float32Arrays: OutOfMemoryError, nothing written; after freeing memory it runs", () => {
    const shape = [2 ** 18, 8]; // 8 MiB per staged array, more than fill() leaves
    const n = shape[0] * shape[1];
    const rm = WasmTensor.from(new Float32Array(8).fill(0.25), engine);
    const rv = WasmTensor.from(new Float32Array(8).fill(4), engine);
    const out = WasmTensor.alloc(n, engine); // resident output: x is staged whole (one-call path)
    const x = rng(3).normals(n, 5, 2);
    const want = refTrain(x, shape, "NCHW", 1e-5, {});
    const held = fill(engine);
    try {
      expect(held.length).toBeGreaterThan(0);
      expect(() => batchNormTrainOn(engine, x, shape, { runningMean: rm, runningVar: rv, out })).toThrow(OutOfMemoryError);
      expect(Array.from(rm.view)).toEqual(new Array(8).fill(0.25));
      expect(Array.from(rv.view)).toEqual(new Array(8).fill(4));
      expect(out.view.every((v) => v === 0)).toBe(true);
      // With 3-4 MiB free, still less than x, a plain-array output streams x through
      // 1 MiB windows (one for x, one for y) instead of staging it whole: it runs.
      // Free the pieces up to the last one of 16 MiB or more (fill() may have left fewer
      // than three of 1 MiB after it), refill with 1 MiB pieces, and free three of those.
      for (let big = false; !big; ) {
        const t = held.pop()!;
        big = t.length >= (16 * MiB) / 4;
        t.free();
      }
      const fine: WasmTensor[] = [];
      for (;;) {
        try {
          fine.push(WasmTensor.alloc(MiB / 4, engine));
        } catch {
          break;
        }
      }
      expect(fine.length).toBeGreaterThanOrEqual(16);
      for (let i = 0; i < 3; i++) fine.pop()!.free();
      held.push(...fine);
      const { y } = batchNormTrainOn(engine, x, shape, {});
      expectClose("y streamed in a nearly full memory", y as Float32Array, want.y, 1e-4, 1e-4);
      expect(() => batchNormTrainOn(engine, x, shape, { out })).toThrow(OutOfMemoryError);
    } finally {
      for (const t of held) t.free();
    }
    const { y } = batchNormTrainOn(engine, x, shape, { runningMean: rm, runningVar: rv, out });
    expectClose("y after the failure", (y as WasmTensor).view, want.y, 1e-4, 1e-4);
    expect(rm.view[0]).not.toBe(0.25);
    for (const t of [rm, rv, out]) t.free();
  });
});
