// A rank of bench/workers.mjs's process groups (worker_threads): collective latency,
// copy bandwidth, and a SyncBatchNorm training step with the time spent in collectives.
import { parentPort } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { init, joinProcessGroup, SyncBatchNorm } from "../dist/index.js";

let comm;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

expose({
  async join() {
    await init({ build: "simd" });
    comm = await joinProcessGroup();
    return { rank: comm.rank, transport: comm.transport };
  },
  /** Median ms of an allReduce (sum) of `n` floats, after warm-up. */
  async allReduce(n, reps) {
    const a = new Float32Array(n).fill(comm.rank + 1);
    for (let i = 0; i < 20; i++) await comm.allReduce(a);
    await comm.barrier();
    const t = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await comm.allReduce(a);
      t.push(performance.now() - t0);
    }
    return median(t);
  },
  /** Median ms of reduceScatter, of allGatherSegments and of allReduce of `n` floats, each after a barrier. */
  async sharded(n, reps) {
    const a = new Float32Array(n).fill(comm.rank + 1);
    const t = { reduceScatter: [], allGatherSegments: [], allReduce: [] };
    for (let i = 0; i < reps + 5; i++) {
      for (const k of Object.keys(t)) {
        await comm.barrier();
        const t0 = performance.now();
        await comm[k](a);
        if (i >= 5) t[k].push(performance.now() - t0);
      }
    }
    return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  },
  /** Median ms of copying `n` floats on this thread (the bandwidth reference); `fresh`:
   * from and to buffers 64 MiB apart each time, so the copy comes from memory, not cache. */
  copy(n, reps, fresh = false) {
    const span = fresh ? Math.max(n, 16 << 20) : n;
    const src = new Float32Array(span).fill(1), dst = new Float32Array(span).fill(2); // pages touched: no faults timed
    const t = [];
    const slices = Math.floor(span / n);
    for (let i = 0; i < reps + 20; i++) {
      const at = (i % slices) * n;
      const t0 = performance.now();
      dst.set(src.subarray(at, at + n), at);
      if (i >= 20) t.push(performance.now() - t0);
    }
    return median(t);
  },
  /** A SyncBatchNorm step (forward + backward) on a `shape` slice: median step ms and median ms inside collectives. */
  async syncBnStep(shape, reps) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.1 + comm.rank) * 3);
    const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.3));
    let inside = 0;
    const timed = (f) => async (...args) => {
      const t0 = performance.now();
      try {
        return await f(...args);
      } finally {
        inside += performance.now() - t0;
      }
    };
    const counted = { allGather: timed((b) => comm.allGather(b)), allReduce: timed((b) => comm.allReduce(b)), rank: comm.rank, worldSize: comm.worldSize };
    const bn = new SyncBatchNorm(shape[1], counted);
    const steps = [], coll = [];
    for (let i = 0; i < reps + 2; i++) {
      await comm.barrier();
      inside = 0;
      const t0 = performance.now();
      await bn.forward(x, shape);
      await bn.backward(dy);
      if (i >= 2) {
        steps.push(performance.now() - t0);
        coll.push(inside);
      }
    }
    bn.dispose();
    // The same two collectives back to back, without compute between them: their own cost.
    const C = shape[1];
    const stats = new Float64Array(1 + 2 * C), sums = new Float64Array(2 * C), own = [];
    for (let i = 0; i < reps * 10 + 20; i++) {
      const t0 = performance.now();
      await comm.allGather(stats);
      await comm.allReduce(sums);
      if (i >= 20) own.push(performance.now() - t0);
    }
    return { step: median(steps), collectives: median(coll), own: median(own) };
  },
}, nodeEndpoint(parentPort));
