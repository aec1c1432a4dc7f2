#!/usr/bin/env node
// MNIST from the command line: the same network and training as the page, with and
// without batch norm on the same seed, data-parallel over `--workers` worker threads
// (each a replica with 1/N of every batch, SyncBatchNorm, gradients all-reduced).
// Run `npm run mnist -- --workers 2` (or, after `npm run build`,
// `node examples/mnist/train-node.mjs [--steps 600] [--batch 64] [--seed 42] [--lr 0.1]
// [--workers 1] [--transport auto|shared|message] [--no-compare] [--json]`).
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { proxy, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { mnistBlob } from "./data-node.js";
import { startReplicas, trainAll } from "./group.js";
import { DEFAULTS, VARIANTS } from "./train.js";

const { values: a } = parseArgs({
  options: {
    steps: { type: "string" }, batch: { type: "string" }, seed: { type: "string" }, lr: { type: "string" },
    workers: { type: "string" }, transport: { type: "string" }, "no-compare": { type: "boolean" }, json: { type: "boolean" },
  },
});
const num = (v, d) => (v === undefined ? d : Number(v));
const options = {
  steps: num(a.steps, DEFAULTS.steps), batch: num(a.batch, DEFAULTS.batch), seed: num(a.seed, DEFAULTS.seed),
  lr: num(a.lr, DEFAULTS.lr), workers: num(a.workers, DEFAULTS.workers), compare: !a["no-compare"],
};
if (!(Number.isInteger(options.workers) && options.workers >= 1 && options.workers <= options.batch)) {
  console.error(`--workers must be an integer in [1, batch = ${options.batch}]`);
  process.exit(2);
}

const t0 = performance.now();
const blob = mnistBlob();
const makeWorkers = () => Array.from({ length: options.workers }, () => new Worker(new URL("./replica-node.mjs", import.meta.url), { workerData: { blob } }));
// One kernel thread per replica when there are several: the replicas are the parallelism.
const threads = options.workers > 1 ? 1 : undefined;
const { group, replicas, info } = await startReplicas(makeWorkers, (w) => wrap(nodeEndpoint(w)), { init: { threads }, transport: a.transport ?? "auto" });
console.log(`batchnorm-wasm: ${info.build} (${info.threads} thread${info.threads === 1 ? "" : "s"}) in each of ${options.workers} worker${options.workers === 1 ? "" : "s"} (${group.transport} transport; ${availableParallelism()} cores)`);
console.log(`784 -> ${DEFAULTS.hidden.join(" -> ")} -> 10, batch ${options.batch} (${Math.ceil(options.batch / options.workers)} per worker), SGD lr ${options.lr} momentum ${DEFAULTS.momentum}, seed ${options.seed}, ${options.steps} steps`);

const tty = process.stdout.isTTY;
let lastDraw = 0;
let last;
function bar(step, results, done = false) {
  const now = performance.now();
  if (!results || (!done && now - lastDraw < (tty ? 100 : 2000))) return;
  lastDraw = now;
  const w = 30, filled = Math.round((w * step) / options.steps);
  const parts = Object.entries(results).map(([k, r]) => `${VARIANTS[k]}: loss ${r.loss.toFixed(3)} ${r.stepsPerSec.toFixed(0)} steps/s`);
  const line = `[${"#".repeat(filled)}${"-".repeat(w - filled)}] ${String(step).padStart(String(options.steps).length)}/${options.steps}  ${parts.join("  ")}`;
  if (tty) process.stdout.write(`\r${line}\x1b[K${done ? "\n" : ""}`);
  else console.log(line);
}

try {
  const summary = await trainAll(replicas, options, proxy((events) => {
    for (const e of events) if (e.type === "step") bar(e.step, (last = e.results));
  }));
  bar(summary.steps, last, true);
  for (const r of Object.values(summary.results)) {
    console.log(`${r.label.padEnd(10)}  test accuracy ${(100 * r.testAcc).toFixed(2)}%  test loss ${r.testLoss.toFixed(4)}  train loss (last 50 batches) ${r.trainLoss.toFixed(4)}  ${r.stepsPerSec.toFixed(0)} steps/s`);
  }
  if (options.workers > 1) {
    const share = summary.parallel.collectiveShare;
    console.log(`${options.workers} replicas: final weights ${summary.replicasAgree ? "identical on every replica" : "DIFFER between replicas"}; rank 0 spent ${(100 * share).toFixed(1)}% of its step time in collectives (waiting for the others included)`);
  }
  if (a.json) console.log(JSON.stringify(Object.fromEntries(Object.entries(summary.results).map(([k, r]) => [k, { ...r, losses: undefined }]))));
  if (!summary.replicasAgree) process.exitCode = 1;
} finally {
  group.dispose();
}
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
