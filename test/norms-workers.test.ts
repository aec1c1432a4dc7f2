/**
 * The per-sample normalisation modules hosted in a worker (worker_threads, the threads
 * build there): the same outputs, gradients and state as local modules on the same build,
 * and named errors revived on this side.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEngine, BatchNormWorker, LayerNorm, GroupNorm, RMSNorm, InstanceNorm2d, InvalidArgumentError, ShapeError, ChannelMismatchError, type Engine,
} from "../dist/index.js";
import { rng } from "./reference.js";

describe("normalisation modules in a worker", () => {
  let worker: BatchNormWorker;
  let engine: Engine;
  beforeAll(async () => {
    worker = await BatchNormWorker.spawn({ threads: 2 });
    engine = await createEngine("simd-threads", 2);
  });
  afterAll(() => worker.terminate());

  const cases = [
    ["LayerNorm", [[4, 6]], { eps: 1e-4 }, [3, 4, 6], () => new LayerNorm([4, 6], { eps: 1e-4, engine })],
    ["RMSNorm", [8], {}, [5, 8], () => new RMSNorm(8, { engine })],
    ["GroupNorm", [2, 6], { layout: "NHWC" }, [3, 5, 6], () => new GroupNorm(2, 6, { layout: "NHWC", engine })],
    ["InstanceNorm2d", [3], { affine: true, trackRunningStats: true }, [2, 3, 4, 4], () => new InstanceNorm2d(3, { affine: true, trackRunningStats: true, engine })],
  ] as const;

  it.each(cases)("%s: two train steps and an eval step equal the local module bit for bit", async (kind, args, opts, shape, local) => {
    const remote = await worker.createNormModule(kind, args as unknown as (number | number[])[], opts);
    using m = local();
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    const r = rng(size);
    for (const training of [true, true, false]) {
      const x = r.normals(size, 1, 2);
      const dy = r.normals(size);
      await remote.train(training);
      m.train(training);
      const y = await remote.forward(x, [...shape]);
      const dx = await remote.backward(dy);
      expect(Array.from(y)).toEqual(Array.from(m.forward(x, [...shape]) as Float32Array));
      expect(Array.from(dx)).toEqual(Array.from(m.backward(dy) as Float32Array));
    }
    const g = await remote.grads();
    expect(g.weightGrad === undefined ? undefined : Array.from(g.weightGrad)).toEqual(m.weightGrad === undefined ? undefined : Array.from(m.weightGrad.view));
    expect(await remote.stateDict()).toEqual(m.stateDict());
    await remote.dispose();
  });

  it("errors come back as the same named classes", async () => {
    await expect(worker.createNormModule("GroupNorm", [4, 6])).rejects.toThrow(InvalidArgumentError);
    await expect(worker.createNormModule("Conv2d" as never, [3])).rejects.toThrow(InvalidArgumentError);
    const ln = await worker.createNormModule("LayerNorm", [5]);
    await expect(ln.forward(new Float32Array(12), [3, 4])).rejects.toThrow(ShapeError);
    const gn = await worker.createNormModule("GroupNorm", [2, 4]);
    await expect(gn.forward(new Float32Array(12), [2, 6])).rejects.toThrow(ChannelMismatchError);
    await ln.dispose();
    await gn.dispose();
  });
});
