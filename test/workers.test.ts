/**
 * Workers through comlink (Node worker_threads): a module hosted in a worker, and the
 * data-parallel pool against single-process batch norm, with faults.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  init, BatchNorm, BatchNormWorker, BatchNormPool, WorkerError, LengthMismatchError, StateError,
  type Layout,
} from "../dist/index.js";
import { rng } from "./reference.js";
import { expectClose } from "./close.js";

beforeAll(async () => {
  await init({ build: "simd" }); // the single-process reference runs here
});

describe("BatchNormWorker", () => {
  let worker: BatchNormWorker;
  beforeAll(async () => {
    worker = await BatchNormWorker.spawn({ threads: 2 });
  });
  afterAll(() => worker.terminate());

  it("loads the threads build in the worker", () => {
    expect(worker.info).toEqual({ build: "simd-threads", threads: 2 });
  });

  it("a hosted module gives what a local module gives", async () => {
    const shape = [5, 4, 3, 3];
    const r = rng(4);
    const xs = [r.normals(180, 1, 2), r.normals(180, -1, 0.5)];
    const dy = r.normals(180);
    using local = new BatchNorm(4, { momentum: null });
    const remote = await worker.createModule(4, { momentum: null });
    for (const x of xs) {
      expectClose("y", await remote.forward(x, shape), local.forward(x, shape) as Float32Array, 1e-6, 1e-6);
      expectClose("dx", await remote.backward(dy), local.backward(dy) as Float32Array, 1e-6, 1e-6);
    }
    const { y, dx } = await remote.step(xs[0], shape, dy);
    expectClose("step y", y, local.forward(xs[0], shape) as Float32Array, 1e-6, 1e-6);
    expectClose("step dx", dx, local.backward(dy) as Float32Array, 1e-6, 1e-6);
    const g = await remote.grads();
    expectClose("weightGrad", g.weightGrad!, local.weightGrad!.view, 1e-5, 1e-5);
    const sd = await remote.stateDict();
    expectClose("running_var", sd.running_var!, local.runningVar!.view, 1e-6, 1e-6);
    expect(sd.num_batches_tracked).toBe(3n);
    await remote.dispose();
    await expect(remote.forward(xs[0], shape)).rejects.toThrow(StateError);
  });

  it("transfer moves the buffer; a SharedArrayBuffer is read in place", async () => {
    const remote = await worker.createModule(2);
    const x = Float32Array.from({ length: 8 }, (_, i) => i);
    const y1 = await remote.forward(x.slice(), [4, 2]);
    const moved = x.slice();
    const y2 = await remote.forward(moved, [4, 2], { transfer: true });
    expect(moved.length).toBe(0); // detached: it went to the worker
    expect(y2).toEqual(y1);
    const shared = new Float32Array(new SharedArrayBuffer(32));
    shared.set(x);
    expect(await remote.forward(shared, [4, 2], { transfer: true })).toEqual(y1);
    expect(shared.length).toBe(8);
    await remote.dispose();
  });

  it("an error thrown in the worker arrives as its own class", async () => {
    const remote = await worker.createModule(3);
    await expect(remote.forward(new Float32Array(5), [4, 3])).rejects.toThrow(LengthMismatchError);
    await expect(remote.forward(new Float32Array(5), [4, 3])).rejects.toThrow(/x has 5 elements but shape \[4, 3\] implies 12/);
    await remote.dispose();
  });
});

describe("worker faults", () => {
  it("terminating mid-call rejects the pending call, and every later call at once", async () => {
    const w = await BatchNormWorker.spawn({ build: "simd" });
    const remote = await w.createModule(8);
    const big = rng(1).normals(8 * 1_000_000);
    const pending = remote.forward(big, [1_000_000, 8]);
    w.terminate();
    await expect(pending).rejects.toThrow(WorkerError);
    const t0 = Date.now();
    await expect(remote.forward(big, [1_000_000, 8])).rejects.toThrow(/terminated/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

function reference(x: Float32Array, shape: number[], layout: Layout, momentum: number | null) {
  return new BatchNorm(shape[layout === "NCHW" ? 1 : shape.length - 1], { layout, momentum });
}

describe.each([1, 2, 3, 4])("BatchNormPool with %i worker(s)", (workers) => {
  let pool: BatchNormPool;
  beforeAll(async () => {
    pool = await BatchNormPool.create(3, { workers, init: { build: "simd" }, momentum: null });
  });
  afterAll(() => pool.dispose());

  it("equals single-process batch norm: uneven shards, several steps, running stats, backward, eval", async () => {
    const shape = [7, 3, 5, 4]; // 7 rows over up to 4 workers: uneven
    using single = reference(new Float32Array(0), shape, "NCHW", null);
    pool.weight!.set([1.5, 0.7, -1]);
    pool.bias!.set([0.1, 0.2, 0.3]);
    single.weight!.view.set([1.5, 0.7, -1]);
    single.bias!.view.set([0.1, 0.2, 0.3]);
    pool.zeroGrad();
    for (let step = 0; step < 3; step++) {
      const r = rng(100 + step);
      const x = r.normals(420, step * 100, 1 + step); // large means too
      const dy = r.normals(420);
      expectClose(`step ${step} y`, await pool.forward(x, shape), single.forward(x, shape) as Float32Array, 1e-5, 1e-5);
      expectClose(`step ${step} dx`, await pool.backward(dy), single.backward(dy) as Float32Array, 1e-5, 1e-4);
    }
    expectClose("running mean", pool.runningMean!, single.runningMean!.view, 1e-5, 1e-6);
    expectClose("running var", pool.runningVar!, single.runningVar!.view, 1e-5, 1e-5);
    expectClose("weightGrad", pool.weightGrad!, single.weightGrad!.view, 1e-4, 1e-5);
    expectClose("biasGrad", pool.biasGrad!, single.biasGrad!.view, 1e-4, 1e-5);
    expect(pool.numBatchesTracked).toBe(3);
    pool.eval();
    single.eval();
    const x = rng(9).normals(420, 150, 2);
    expectClose("eval y", await pool.forward(x, shape), single.forward(x, shape) as Float32Array, 1e-5, 1e-5);
    const dy = rng(10).normals(420);
    expectClose("eval dx", await pool.backward(dy), single.backward(dy) as Float32Array, 1e-5, 1e-5);
    pool.train();
  });

  it("channels-last, shards of one row each", async () => {
    const p = await BatchNormPool.create(5, { workers, init: { build: "simd" }, layout: "NHWC" });
    try {
      const shape = [workers, 3, 2, 5];
      using single = reference(new Float32Array(0), shape, "NHWC", 0.1);
      const x = rng(7).normals(workers * 30, 2, 3);
      expectClose("y", await p.forward(x, shape), single.forward(x, shape) as Float32Array, 1e-5, 1e-5);
      const dy = rng(8).normals(workers * 30);
      expectClose("dx", await p.backward(dy), single.backward(dy) as Float32Array, 1e-5, 1e-4);
      expectClose("running var", p.runningVar!, single.runningVar!.view, 1e-6, 1e-5);
    } finally {
      p.dispose();
    }
  });
});

describe("BatchNormPool faults", () => {
  it("a worker killed mid-call rejects the call, leaves the state untouched, and is replaced", async () => {
    const pool = await BatchNormPool.create(4, { workers: 3, init: { build: "simd" } });
    const shape = [9, 4, 8, 8];
    const x = rng(3).normals(9 * 4 * 64, 1, 2);
    await pool.forward(x, shape);
    const before = pool.stateDict();
    const pending = pool.forward(x, shape);
    pool.killWorker(1);
    await expect(pending).rejects.toThrow(WorkerError);
    expect(pool.stateDict()).toEqual(before); // no running-stat update, no count
    await expect(pool.backward(x)).rejects.toThrow(/needs a successful forward/);
    // The next call gets a fresh worker and works.
    using single = new BatchNorm(4);
    single.loadStateDict(before);
    expectClose("after replacement", await pool.forward(x, shape), single.forward(x, shape) as Float32Array, 1e-5, 1e-5);
    pool.dispose();
    const t0 = Date.now();
    await expect(pool.forward(x, shape)).rejects.toThrow(StateError);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("loadStateDict: a state from a module runs the same in the pool; bad states load nothing", async () => {
    const pool = await BatchNormPool.create(4, { workers: 2, init: { build: "simd" } });
    try {
      using single = new BatchNorm(4);
      const x = rng(5).normals(6 * 4 * 9, 3, 2);
      single.forward(x, [6, 4, 3, 3]);
      single.weight!.view.set([1, 2, 3, 4]);
      const sd = single.stateDict();
      pool.loadStateDict(sd);
      expect(pool.stateDict()).toEqual(sd);
      pool.eval();
      single.eval();
      expectClose("eval y", await pool.forward(x, [6, 4, 3, 3]), single.forward(x, [6, 4, 3, 3]) as Float32Array, 1e-6, 1e-6);
      expect(() => pool.loadStateDict({ ...sd, bias: new Float32Array(3) })).toThrow(/"bias" has 3 values but the pool has numFeatures = 4/);
      expect(() => pool.loadStateDict({ weight: sd.weight })).toThrow(/missing \[bias, running_mean, running_var, num_batches_tracked\]/);
      expect(pool.stateDict()).toEqual(sd);
    } finally {
      pool.dispose();
    }
  });

  it("rejects bad input before touching the workers", async () => {
    const pool = await BatchNormPool.create(4, { workers: 2, init: { build: "simd" } });
    await expect(pool.forward(new Float32Array(10), [2, 4, 2])).rejects.toThrow(LengthMismatchError);
    await expect(pool.forward(new Float32Array(4), [1, 4])).rejects.toThrow(/more than 1 value per channel/);
    expect(pool.numBatchesTracked).toBe(0);
    pool.dispose();
  });
});
