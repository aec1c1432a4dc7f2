/** WasmTensor: zero-copy calls, views across memory growth, freeing. */
import { beforeAll, describe, expect, it } from "vitest";
import { init, batchNormTrain, batchNormEval, batchNormBackward, WasmTensor, loaded } from "../dist/index.js";
import { rng } from "./reference.js";

beforeAll(async () => {
  await init({ build: "simd" }); // non-shared memory: growth detaches old views
});

const shape = [4, 3, 5, 5];
const size = 300;

describe("resident tensors", () => {
  it("give the same results as Float32Array arguments, written into the caller's tensor", () => {
    const r = rng(5);
    const xs = r.normals(size, 1, 2);
    const dys = r.normals(size);
    const weight = r.normals(3, 1, 0.2);
    const viaArrays = batchNormTrain(xs, shape, { weight, runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1) });

    const x = WasmTensor.from(xs);
    const y = WasmTensor.alloc(size);
    const rm = WasmTensor.alloc(3);
    const rv = WasmTensor.from([1, 1, 1]);
    const res = batchNormTrain(x, shape, { weight: WasmTensor.from(weight), runningMean: rm, runningVar: rv, out: y });
    expect(res.y).toBe(y);
    expect(y.toArray()).toEqual(viaArrays.y);
    expect(rm.view.some((v) => v !== 0)).toBe(true); // updated in place, in wasm memory

    const dx = WasmTensor.alloc(size);
    const b1 = batchNormBackward(WasmTensor.from(dys), x, shape, { weight, mean: res.mean, invStd: res.invStd, out: dx });
    const b2 = batchNormBackward(dys, xs, shape, { weight, mean: res.mean, invStd: res.invStd });
    expect(b1.dx).toBe(dx);
    expect(dx.toArray()).toEqual(b2.dx);
    expect(b1.dWeight).toEqual(b2.dWeight);

    const outArr = new Float32Array(size);
    const e = batchNormEval(x, shape, { runningMean: rm, runningVar: rv, out: outArr });
    expect(e).toBe(outArr);
    for (const t of [x, y, rm, rv, dx]) t.free();
  });

  it("re-derive their view after wasm memory grows", () => {
    const t = WasmTensor.from([1, 2, 3, 4]);
    const before = t.view;
    const mem = loaded() && t.engine.memory;
    const bytes = mem!.buffer.byteLength;
    const big = WasmTensor.alloc(bytes / 4 + (1 << 20)); // forces growth
    expect(mem!.buffer.byteLength).toBeGreaterThan(bytes);
    expect(before.byteLength).toBe(0); // the old view was detached by growth...
    expect(Array.from(t.view)).toEqual([1, 2, 3, 4]); // ...the property is not
    big.free();
    t.free();
  });

  it("unreachable tensors are freed by the FinalizationRegistry", async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, "tests run with --expose-gc").toBeTypeOf("function");
    const mem = WasmTensor.alloc(1).engine.memory;
    const start = mem.buffer.byteLength;
    const n = 48;
    const eight_mb = 2 << 20;
    for (let i = 0; i < n; i++) {
      WasmTensor.alloc(eight_mb); // dropped at once, never freed by hand
      gc!();
      await new Promise((r) => setTimeout(r, 0)); // let finalizers run
    }
    // Without the registry memory would grow by 48 x 8 MiB = 384 MiB.
    expect(mem.buffer.byteLength - start).toBeLessThan(128 << 20);
  });
});
