#!/usr/bin/env node
// Channels-last kernels across channel counts: eval, train forward, backward and backward
// through the ReLU's bit mask on (rows, C) NHWC tensors of the same size (3M elements, 12 MiB),
// resident (WasmTensor) and with plain arrays, for the simd and simd-threads builds, against
// memory.copy of the same bytes; round-robin medians in one process (lib/timing.mjs).
//
// Why: the row kernels take two channels-last rows at a time only while that pays
// (`passes::rows_together` in batchnorm-core); two rows of 128+ channels in main memory had
// run every pass at about half the speed of 96 channels, and no other bench had a row wider
// than 64 channels. A width that falls far below its neighbours here is that kind of cliff.
//
//   node bench/channels.mjs [--channels=16,64,96,128,256,512,1024] [--builds=simd,simd-threads] [--plain]
//   node bench/channels.mjs --smoke     two widths, tiny tensors, 2 repetitions (checks the harness)
import os from "node:os";
import { measure } from "./lib/timing.mjs";
import { makeData } from "./lib/data.mjs";
import { wasmCopy } from "./lib/copy.mjs";
import { buildLabel, createOurEngine } from "./lib/ours.mjs";
import { batchNormEvalOn, batchNormTrainOn, batchNormBackwardOn, reluMaskLength, WasmTensor } from "../dist/index.js";

const arg = (k, d) => process.argv.slice(2).find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d;
const SMOKE = process.argv.includes("--smoke");
const PLAIN = process.argv.includes("--plain");
const CHANNELS = arg("channels", SMOKE ? "8,130" : "16,64,96,128,256,512,1024").split(",").map(Number);
const BUILDS = arg("builds", "simd,simd-threads").split(",");
const ELEMS = SMOKE ? 1 << 12 : 3 << 20;
const PLAN = SMOKE ? { warmup: 1, reps: 2, minRepMs: 0 } : { warmup: 2, reps: 11, minRepMs: 4, settle: 1 };
// Minimal traffic per element (bytes): eval reads x, writes y; train forward reads x twice
// (statistics, normalise) and writes y; backward reads dy and x twice and writes dx.
const BYTES = { eval: 8, train: 12, backward: 20, "backward (mask)": 20 };

/** The four operations on a (rows, C) NHWC tensor, resident or with plain arrays. */
function cases(eng, C, plain) {
  const shape = [Math.floor(ELEMS / C), C];
  const data = makeData(shape, "NHWC", 7);
  const n = data.x.length;
  const owned = [];
  const put = (a) => { if (plain) return a.slice(); const t = WasmTensor.from(a, eng); owned.push(t); return t; };
  const out = (len) => { if (plain) return new Float32Array(len); const t = WasmTensor.alloc(len, eng); owned.push(t); return t; };
  const x = put(data.x), dy = put(data.dy), weight = put(data.weight), bias = put(data.bias);
  const runningMean = put(data.runningMean), runningVar = put(data.runningVar);
  const y = out(n), dx = out(n), mask = out(reluMaskLength(shape, "NHWC"));
  const t = batchNormTrainOn(eng, x, shape, { weight, bias, layout: "NHWC", out: y, activation: "relu", outMask: mask });
  const saved = { weight, mean: t.mean, invStd: t.invStd, layout: "NHWC", out: dx };
  return {
    n,
    free: () => owned.forEach((o) => o.free()),
    ops: {
      eval: () => batchNormEvalOn(eng, x, shape, { weight, bias, runningMean, runningVar, layout: "NHWC", out: y }),
      train: () => batchNormTrainOn(eng, x, shape, { weight, bias, layout: "NHWC", out: y }),
      backward: () => batchNormBackwardOn(eng, dy, x, shape, saved),
      "backward (mask)": () => batchNormBackwardOn(eng, dy, x, shape, { ...saved, activation: "relu", mask }),
    },
  };
}

console.log(`# bench/channels.mjs: ${os.cpus()[0]?.model}, ${os.cpus().length} cores, load ${os.loadavg().map((v) => v.toFixed(1)).join(" ")}; ` +
  `(rows, C) NHWC, ${ELEMS} elements, ${PLAIN ? "plain arrays into preallocated outputs" : "resident"}; medians of ${PLAN.reps} round-robin repetitions`);
console.log("Melem/s (fraction of memory.copy's bandwidth at the op's minimal traffic)\n");
console.log(`| build | C | ${Object.keys(BYTES).join(" | ")} |`);
console.log(`|---|---|${Object.keys(BYTES).map(() => "---").join("|")}|`);
let failed = false;
for (const build of BUILDS) {
  const eng = await createOurEngine(build);
  for (const C of CHANNELS) {
    const c = cases(eng, C, PLAIN);
    const copy = wasmCopy(c.n);
    const m = await measure([{ id: "copy", fn: copy.fn, ...PLAN }, ...Object.entries(c.ops).map(([id, fn]) => ({ id, fn, ...PLAN }))], {});
    const copyBps = (8 * c.n) / m.get("copy").median;
    const cells = Object.keys(BYTES).map((op) => {
      const s = m.get(op).median;
      if (!(s > 0)) failed = true;
      return `${(c.n / s / 1e6).toFixed(0)} (${((BYTES[op] * c.n) / s / copyBps).toFixed(2)})`;
    });
    console.log(`| ${buildLabel(build)} | ${C} | ${cells.join(" | ")} |`);
    c.free();
  }
}
if (failed) {
  console.error("FAIL: a case did not produce a time");
  process.exit(1);
}
