#!/usr/bin/env node
// MNIST from the command line: the same network and training as the page, with and
// without batch norm on the same seed. Run `npm run mnist` (or, after `npm run build`,
// `node examples/mnist/train-node.mjs [--steps 600] [--batch 64] [--seed 42] [--lr 0.05]
// [--pool] [--workers 2] [--no-compare]`).
import { parseArgs } from "node:util";
import { init } from "batchnorm-wasm";
import { loadMnist } from "./data-node.js";
import { DEFAULTS, VARIANTS, train } from "./train.js";

const { values: a } = parseArgs({
  options: {
    steps: { type: "string" }, batch: { type: "string" }, seed: { type: "string" }, lr: { type: "string" },
    workers: { type: "string" }, pool: { type: "boolean" }, "no-compare": { type: "boolean" }, json: { type: "boolean" },
  },
});
const num = (v, d) => (v === undefined ? d : Number(v));
const options = {
  steps: num(a.steps, DEFAULTS.steps), batch: num(a.batch, DEFAULTS.batch), seed: num(a.seed, DEFAULTS.seed),
  lr: num(a.lr, DEFAULTS.lr), workers: num(a.workers, DEFAULTS.workers), pool: !!a.pool, compare: !a["no-compare"],
};

const info = await init();
const t0 = performance.now();
const data = loadMnist();
console.log(`batchnorm-wasm: ${info.build} (${info.threads} threads)` + (options.pool ? `; BN on a BatchNormPool of ${options.workers} workers` : ""));
console.log(`MNIST (npm "mnist"): ${data.train.count} training / ${data.test.count} test digits, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
console.log(`784 -> ${DEFAULTS.hidden.join(" -> ")} -> 10, batch ${options.batch}, SGD lr ${options.lr} momentum ${DEFAULTS.momentum}, seed ${options.seed}, ${options.steps} steps`);

const tty = process.stdout.isTTY;
let lastDraw = 0;
function bar(step, results, done = false) {
  const now = performance.now();
  if (!done && now - lastDraw < (tty ? 100 : 2000)) return;
  lastDraw = now;
  const w = 30, filled = Math.round((w * step) / options.steps);
  const parts = Object.entries(results).map(([k, r]) => `${VARIANTS[k]}: loss ${r.loss.toFixed(3)} ${r.stepsPerSec.toFixed(0)} steps/s`);
  const line = `[${"#".repeat(filled)}${"-".repeat(w - filled)}] ${String(step).padStart(String(options.steps).length)}/${options.steps}  ${parts.join("  ")}`;
  if (tty) process.stdout.write(`\r${line}\x1b[K${done ? "\n" : ""}`);
  else console.log(line);
}

let last;
const summary = await train(data, options, (e) => {
  if (e.type === "step") bar(e.step, (last = e.results));
});
bar(summary.steps, last, true);
for (const r of Object.values(summary.results)) {
  console.log(`${r.label.padEnd(10)}  test accuracy ${(100 * r.testAcc).toFixed(2)}%  test loss ${r.testLoss.toFixed(4)}  train loss (last 50 batches) ${r.trainLoss.toFixed(4)}  ${r.stepsPerSec.toFixed(0)} steps/s`);
}
if (summary.pool) console.log(`BatchNormPool: ${summary.pool.workers} workers, each on ${summary.pool.build} (${summary.pool.threads} thread${summary.pool.threads === 1 ? "" : "s"})`);
if (a.json) console.log(JSON.stringify(summary.results));
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
