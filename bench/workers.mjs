// Workers and data-parallel training, medians in one process, side by side.
//   node bench/workers.mjs [--smoke] [--mnist]      (--mnist: section 4 only)
// 1. A (32,64,56,56) training forward: direct call vs the same module in a worker
//    (structured-clone copy in, transfer out), with { transfer: true }, and with the
//    input on a SharedArrayBuffer.
// 2. Process-group collectives between 2 workers: allReduce of 128 floats (latency) and
//    of 100k floats (against one plain copy of the same floats), SharedArrayBuffer vs
//    MessagePort transport; reduceScatter + allGatherSegments of 100k floats (the
//    sharded update's pair) against one allReduce.
// 3. A SyncBatchNorm training step on a (32,64,56,56) slice per worker, 2 workers: the
//    share of the step spent in collectives (waiting for the other rank included).
// 4. The MNIST example (batch 64, 1,000 steps, BN model only), 1 vs 2 worker replicas,
//    3 alternating runs on fresh workers: steps/s of the whole training (its first few
//    hundred steps include V8's JIT warm-up) and of its steady part, the busiest rank's
//    CPU time, and the largest loss difference
//    over the first 200 steps. Then, on this thread, the CPU time of a step of 1 worker
//    against a step of one replica of 2 whose collectives do nothing: how evenly the
//    work itself splits, without the collectives and without waiting.
import os from "node:os";
import { Worker } from "node:worker_threads";
import { wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { init, BatchNorm, BatchNormWorker, ProcessGroup } from "../dist/index.js";
import { mnistBlob } from "../examples/mnist/data-node.js";
import { startReplicas, trainAll } from "../examples/mnist/group.js";
import { loadMnist } from "../examples/mnist/data-node.js";
import { gatherInto, PIXELS } from "../examples/mnist/data.js";
import { Mlp } from "../examples/mnist/nn.js";
import { steadyFrom, steadyStepsPerSec } from "./lib/steady.mjs";
import { threadCpuMs } from "./lib/thread-cpu.mjs";

const smoke = process.argv.includes("--smoke");
const onlyMnist = process.argv.includes("--mnist");
const REPS = smoke ? 2 : 11;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

async function time(fn, prepare = () => undefined) {
  const t = [];
  for (let i = 0; i < REPS + 2; i++) {
    const arg = prepare();
    const a = performance.now();
    await fn(arg);
    if (i >= 2) t.push(performance.now() - a); // two warm-up runs
  }
  return median(t);
}

const info = await init({ build: "simd" });
console.log(`# ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, Node ${process.version}; main thread: ${info.build}; median of ${REPS}`);

if (!onlyMnist) {
  const shape = smoke ? [4, 8, 8, 8] : [32, 64, 56, 56];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const local = new BatchNorm(shape[1]);
  const worker = await BatchNormWorker.spawn({ build: "simd" });
  const remote = await worker.createModule(shape[1]);
  const shared = new Float32Array(new SharedArrayBuffer(4 * n));
  shared.set(x);
  const direct = await time(() => local.forward(x, shape));
  const copied = await time(() => remote.forward(x, shape));
  const moved = await time((a) => remote.forward(a, shape, { transfer: true }), () => x.slice());
  const sab = await time(() => remote.forward(shared, shape));
  worker.terminate();
  console.log(`\n## Worker round trip, training forward of (${shape}) = ${(n / 1e6).toFixed(1)} M elements, simd build on both sides`);
  console.log(`| path | median ms | overhead vs direct |`);
  console.log(`|---|---|---|`);
  for (const [name, ms] of [["direct call (Float32Array in/out)", direct], ["worker, copied in", copied], ["worker, { transfer: true }", moved], ["worker, SharedArrayBuffer input", sab]]) {
    console.log(`| ${name} | ${ms.toFixed(2)} | ${name.startsWith("direct") ? "-" : `+${(ms - direct).toFixed(2)} ms (${(ms / direct).toFixed(2)}x)`} |`);
  }
}

/** A process group of `n` bench ranks (bench/workers-rank.mjs). */
async function group(n, transport) {
  const workers = Array.from({ length: n }, () => new Worker(new URL("./workers-rank.mjs", import.meta.url)));
  const ranks = workers.map((w) => wrap(nodeEndpoint(w)));
  const joined = Promise.all(ranks.map((r) => r.join()));
  const g = await ProcessGroup.create(workers, { transport });
  await joined;
  return { g, ranks };
}

if (!onlyMnist) {
  const reps = smoke ? 20 : 2000;
  const big = smoke ? 1000 : 100_000;
  console.log(`\n## allReduce (sum) between 2 workers, median of ${reps} (rank 0's view)`);
  console.log(`| transport | 128 floats | ${big} floats | its bandwidth (bytes / time) | fraction of the copy from memory | one copy of ${big} floats on one thread, from memory | from cache |`);
  console.log(`|---|---|---|---|---|---|---|`);
  const sharded = {};
  for (const transport of ["shared", "message"]) {
    const { g, ranks } = await group(2, transport);
    const small = (await Promise.all(ranks.map((r) => r.allReduce(128, reps))))[0];
    const large = (await Promise.all(ranks.map((r) => r.allReduce(big, Math.max(20, reps / 10)))))[0];
    sharded[transport] = (await Promise.all(ranks.map((r) => r.sharded(big, Math.max(20, reps / 10)))))[0];
    const memory = await ranks[0].copy(big, 200, true);
    const cache = await ranks[0].copy(big, 200);
    g.dispose();
    const gbs = (ms) => `${((big * 4) / ms / 1e6).toFixed(1)} GB/s`;
    console.log(`| ${transport === "shared" ? "SharedArrayBuffer + Atomics" : "MessagePort"} | ${(small * 1000).toFixed(1)} us | ${(large * 1000).toFixed(0)} us | ${gbs(large)} | ${(memory / large).toFixed(2)} | ${(memory * 1000).toFixed(0)} us (${gbs(memory)}) | ${(cache * 1000).toFixed(0)} us (${gbs(cache)}) |`);
  }
  console.log(`\n## The sharded update's two collectives against one allReduce, ${big} floats, 2 workers, each after a barrier, median of ${Math.max(20, reps / 10)} (rank 0's view)`);
  console.log(`| transport | reduceScatter | allGatherSegments | both | allReduce |`);
  console.log(`|---|---|---|---|---|`);
  for (const [transport, t] of Object.entries(sharded)) {
    const us = (ms) => `${(ms * 1000).toFixed(0)} us`;
    console.log(`| ${transport} | ${us(t.reduceScatter)} | ${us(t.allGatherSegments)} | ${us(t.reduceScatter + t.allGatherSegments)} | ${us(t.allReduce)} |`);
  }
}

if (!onlyMnist) {
  const shape = smoke ? [4, 8, 8, 8] : [32, 64, 56, 56];
  const { g, ranks } = await group(2, "shared");
  const r = await Promise.all(ranks.map((k) => k.syncBnStep(shape, REPS)));
  g.dispose();
  console.log(`\n## SyncBatchNorm training step (forward + backward), (${shape}) per worker, 2 workers, shared memory, simd build, median of ${REPS}`);
  console.log(`| rank | step ms | in collectives ms (waiting for the other rank included) | share | the two collectives alone, back to back | share |`);
  console.log(`|---|---|---|---|---|---|`);
  const pct = (a, b) => `${((100 * a) / b).toFixed(2)}%`;
  r.forEach((x, i) => console.log(`| ${i} | ${x.step.toFixed(2)} | ${x.collectives.toFixed(3)} | ${pct(x.collectives, x.step)} | ${(x.own * 1000).toFixed(1)} us | ${pct(x.own, x.step)} |`));
}

{
  // One training call per run: its first few hundred steps include V8's JIT warm-up, which
  // on 2 cores takes CPU from the ranks (the compile threads run beside them; with one
  // worker they have the idle core). "Steady" is the rest of the same call.
  const steps = smoke ? 10 : 1000;
  const from = steadyFrom(steps);
  const rounds = smoke ? 1 : 3;
  const blob = mnistBlob();
  const runs = { 1: [], 2: [] };
  for (let round = 0; round < rounds; round++) {
    for (const n of [1, 2]) {
      const makeWorkers = () => Array.from({ length: n }, () => new Worker(new URL("./mnist-replica.mjs", import.meta.url), { workerData: { blob } }));
      const { group: g, replicas } = await startReplicas(makeWorkers, (w) => wrap(nodeEndpoint(w)), { init: { build: "simd" } });
      const cpu0 = await Promise.all(replicas.map((r) => r.cpuMs()));
      const s = await trainAll(replicas, { steps, batch: 64, seed: 42, compare: false, evalEvery: 0 });
      const cpu = (await Promise.all(replicas.map((r) => r.cpuMs()))).map((c, i) => c - cpu0[i]);
      g.dispose();
      const bn = s.results.bn;
      runs[n].push({ sps: bn.stepsPerSec, steady: steadyStepsPerSec(bn.stepMs, from), losses: bn.losses, agree: s.replicasAgree, share: s.parallel.collectiveShare, cpu: Math.max(...cpu) });
    }
  }
  const med = (n, f) => median(runs[n].map(f));
  let worst = 0;
  for (let i = 0; i < Math.min(200, steps); i++) worst = Math.max(worst, Math.abs(runs[1][0].losses[i] - runs[2][0].losses[i]));
  console.log(`\n## MNIST example, batch 64, BN model, simd build per worker; one training of ${steps} steps per run, ${rounds} alternating runs each, median`);
  console.log(`Whole: steps/s of the whole training (V8 compiles the step's code during the first few hundred steps); steady: steps ${from + 1}-${steps}`);
  console.log(`of the same training. CPU = the busiest rank's thread CPU time for the training (and its final evaluation); its ratio is`);
  console.log(`the speedup the work allows when every rank has a core of its own, whatever else runs on the machine.`);
  console.log(`| workers | steps/s, whole (runs) | speedup | steps/s, steady (runs) | speedup | rank 0 in collectives | CPU ms, busiest rank | CPU speedup | max abs loss diff vs 1 worker (first ${Math.min(200, steps)} steps) | replicas identical |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|`);
  const runsOf = (n, f) => runs[n].map((r) => f(r).toFixed(0)).join(", ");
  for (const n of [1, 2]) {
    const ratio = (f) => `${(med(n, f) / med(1, f)).toFixed(2)}x`;
    console.log(`| ${n} | ${med(n, (r) => r.sps).toFixed(0)} (${runsOf(n, (r) => r.sps)}) | ${ratio((r) => r.sps)} | ${med(n, (r) => r.steady).toFixed(0)} (${runsOf(n, (r) => r.steady)}) | ${ratio((r) => r.steady)} | ${n === 1 ? "-" : `${(100 * med(n, (r) => r.share)).toFixed(0)}%`} | ${med(n, (r) => r.cpu).toFixed(0)} | ${(med(1, (r) => r.cpu) / med(n, (r) => r.cpu)).toFixed(2)}x | ${n === 1 ? "-" : worst.toExponential(1)} | ${runs[n].every((r) => r.agree)} |`);
  }
  console.log(`(load average at the end: ${os.loadavg().map((v) => v.toFixed(1)).join(", ")} on ${os.availableParallelism()} cores)`);
}

{
  // Rank 0 of 2 with collectives that do nothing (its numbers are wrong, its work is not).
  const noop = {
    rank: 0, worldSize: 2, segment: (n) => [0, n >> 1],
    allGather: async (b) => [b, b.slice()], allReduce: async (b) => b, reduceScatter: async (b) => b, allGatherSegments: async (b) => b,
  };
  const data = loadMnist();
  const blocks = smoke ? 2 : 30, per = smoke ? 2 : 20, warm = smoke ? 1 : 5;
  const cases = [{ name: "1 worker, 64 rows", rows: 64 }, { name: "1 replica of 2, 32 rows, no-op collectives", rows: 32, comm: noop }];
  for (const c of cases) Object.assign(c, { m: await Mlp.create({ seed: 42, comm: c.comm, signals: 1 }), x: new Float32Array(c.rows * PIXELS), y: new Uint8Array(c.rows), step: 0, cpu: [] });
  const signals = new Float64Array(1);
  for (let b = 0; b < warm + blocks; b++) {
    for (const c of cases) {
      const t0 = threadCpuMs();
      for (let i = 0; i < per; i++, c.step++) {
        gatherInto(data.train, Array.from({ length: c.rows }, (_, r) => (c.step * 64 + r) % data.train.count), c.x, c.y);
        await c.m.step(c.x, c.y, c.rows, { lr: 0.1, momentum: 0.9, batch: 64, signals });
      }
      if (b >= warm) c.cpu.push((threadCpuMs() - t0) / per);
    }
  }
  for (const c of cases) c.m.dispose();
  console.log(`\n## The work of an MNIST step, split: this thread's CPU per step (median of ${blocks} alternating blocks of ${per} steps)`);
  console.log(`| step | CPU us per step | 1 worker / this |`);
  console.log(`|---|---|---|`);
  const one = median(cases[0].cpu);
  for (const c of cases) console.log(`| ${c.name} | ${(median(c.cpu) * 1000).toFixed(0)} | ${(one / median(c.cpu)).toFixed(2)}x |`);
}
