/**
 * Workers through comlink (Node worker_threads): a module hosted in a worker, with
 * faults. (Data-parallel training: process-group.test.ts, sync-batchnorm.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  init, BatchNorm, BatchNormWorker, WorkerError, LengthMismatchError, StateError, InvalidOptionError,
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
    expectClose("running_var", sd.running_var as Float32Array, local.runningVar!.view, 1e-6, 1e-6);
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

  it("unknown option keys are an InvalidOptionError naming the closest known one, in the worker and before it", async () => {
    await expect(worker.createModule(3, { epsilon: 1e-3 } as never)).rejects.toThrow(InvalidOptionError);
    await expect(worker.createModule(3, { epsilon: 1e-3 } as never)).rejects.toThrow(/unknown option "epsilon" \(did you mean "eps"\?\)/);
    const remote = await worker.createModule(3);
    const x = new Float32Array(12);
    await expect(remote.forward(x, [4, 3], { transfr: true } as never)).rejects.toThrow(/unknown option "transfr" \(did you mean "transfer"\?\) in forward/);
    await expect(remote.backward(x, { tranfer: true } as never)).rejects.toThrow(InvalidOptionError);
    await expect(remote.step(x, [4, 3], x, { out: x } as never)).rejects.toThrow(/unknown option "out"/);
    expect(x.length).toBe(12); // nothing was transferred away
    await remote.dispose();
    await expect(BatchNormWorker.spawn({ bulid: "simd" } as never)).rejects.toThrow(/unknown option "bulid" \(did you mean "build"\?\) in worker spawn/);
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
