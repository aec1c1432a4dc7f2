// Worker overheads and pool scaling (issue 3's numbers), medians in one process.
//   node bench/workers.mjs [--smoke]
// 1. A (32,64,56,56) training forward: direct call vs the same module in a worker
//    (structured-clone copy in, transfer out), with { transfer: true }, and with the
//    input on a SharedArrayBuffer.
// 2. A training step (forward + backward) on a large batch: BatchNormPool with 1 and 2
//    workers (simd build each) against one direct call on this thread.
import os from "node:os";
import { init, BatchNorm, BatchNormWorker, BatchNormPool } from "../dist/index.js";

const smoke = process.argv.includes("--smoke");
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

{
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

{
  const shape = smoke ? [8, 8, 8, 8] : [64, 64, 56, 56];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.1) * 3);
  const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.3));
  const local = new BatchNorm(shape[1]);
  const direct = await time(() => {
    local.forward(x, shape);
    local.backward(dy);
  });
  const rows = [["direct call, this thread", direct]];
  for (const workers of [1, 2]) {
    const pool = await BatchNormPool.create(shape[1], { workers, init: { build: "simd" } });
    rows.push([`BatchNormPool, ${workers} worker(s)`, await time(async () => {
      await pool.forward(x, shape);
      await pool.backward(dy);
    })]);
    pool.dispose();
  }
  console.log(`\n## Training step (forward + backward) of (${shape}) = ${(n / 1e6).toFixed(1)} M elements, simd build`);
  console.log(`| path | median ms | speedup vs 1-worker pool | vs direct |`);
  console.log(`|---|---|---|---|`);
  const one = rows[1][1];
  for (const [name, ms] of rows) console.log(`| ${name} | ${ms.toFixed(1)} | ${(one / ms).toFixed(2)}x | ${(direct / ms).toFixed(2)}x |`);
}
