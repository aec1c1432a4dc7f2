#!/usr/bin/env node
// Quick fused-activation bench (issue 10), well under a minute: the training step (train
// forward + backward, resident tensors) of BN+ReLU and BN+add+ReLU, fused (with the 1-bit
// mask, and with the mask read from y) and unfused,
// as ratios to the BN step, plus each half (forward, backward) on its own, and the
// channels-last train forward against a wasm memory.copy of the same tensor. Every
// comparison of one shape and build is one round-robin measurement, by CPU time by default
// (see measureRoundRobin).
//
//   node bench/fused.mjs [--builds=simd,simd-threads] [--reps=15] [--shapes=nchw,nhwc] [--clock=cpu|wall]
//
// The full bench's `--sections=fused` measures the same steps (bench/lib/fused.mjs) with
// the full repetition plan and TF.js for reference.
import os from "node:os";
import { gc, median } from "./lib/timing.mjs";
import { makeData } from "./lib/data.mjs";
import { fusedCases } from "./lib/fused.mjs";
import { wasmCopy } from "./lib/copy.mjs";
import { buildLabel, createOurEngine } from "./lib/ours.mjs";
import { batchNormTrainOn, WasmTensor } from "../dist/index.js";

const arg = (k, d) => process.argv.slice(2).find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d;
const BUILDS = arg("builds", "simd").split(",");
const REPS = Number(arg("reps", "15"));
const ALL = { nchw: { shape: [32, 64, 56, 56], layout: "NCHW" }, nhwc: { shape: [32, 56, 56, 64], layout: "NHWC" } };
const SHAPES = arg("shapes", "nchw,nhwc").split(",").map((k) => ({ name: `(${ALL[k].shape}) ${ALL[k].layout}`, ...ALL[k] }));
const EPS = 1e-5;
const CLOCK = arg("clock", "cpu");

/**
 * Round-robin repetitions of every case (one call each, a full GC before it), timed by
 * the process's CPU time (`--clock=cpu`, default: user + system, so time the process
 * spends descheduled on this shared machine does not count; single-threaded builds only
 * make it comparable to wall time) or by wall time (`--clock=wall`). Medians in seconds.
 */
function measureRoundRobin(cases, reps, warmup = 3) {
  const samples = new Map(cases.map((c) => [c.id, []]));
  for (let r = 0; r < warmup + reps; r++) {
    for (const c of cases) {
      gc();
      const w = performance.now(), u = process.cpuUsage();
      c.fn();
      const cpu = process.cpuUsage(u);
      const dt = CLOCK === "cpu" ? (cpu.user + cpu.system) / 1e6 : (performance.now() - w) / 1e3;
      if (r >= warmup) samples.get(c.id).push(dt);
    }
  }
  return new Map([...samples].map(([id, xs]) => [id, { median: median(xs) }]));
}

console.log(`# bench/fused.mjs: ${os.cpus()[0]?.model}, ${os.cpus().length} cores, load ${os.loadavg().map((v) => v.toFixed(1)).join(" ")}; ` +
  `median of ${REPS} round-robin repetitions, ${CLOCK} time; ratios to BN alone in the same run`);
let failed = false;
for (const build of BUILDS) {
  const eng = await createOurEngine(build);
  const label = buildLabel(build);
  for (const s of SHAPES) {
    const spec = { ...s, eps: EPS, momentum: 0.1 };
    const data = makeData(s.shape, s.layout, 13);
    const n = data.x.length;
    const c = fusedCases(eng, spec, data, label);
    const problem = c.check();
    if (problem) { console.error(`FAIL ${s.name}: ${problem}`); failed = true; }
    // Train forward against a copy of the same bytes (the "fraction of copy" at 12 B/elem).
    const x = WasmTensor.from(data.x, eng), y = WasmTensor.alloc(n, eng);
    const copy = wasmCopy(n);
    const extra = [
      { id: `${label} train forward (no running stats)`, fn: () => batchNormTrainOn(eng, x, s.shape, { eps: EPS, layout: s.layout, out: y }) },
      { id: "copy: wasm memory.copy", fn: copy.fn },
    ];
    const all = [...c.cases, ...c.passes, ...extra];
    const m = measureRoundRobin(all, REPS);
    const t = (k) => m.get(`${label} ${k}`).median * 1e3;
    const r = (a, b) => (t(a) / t(b)).toFixed(2);
    console.log(`\n## ${s.name}, ${label}`);
    console.log(`step: BN ${t("BN step").toFixed(2)} ms | BN+ReLU fused ${r("BN+ReLU fused step", "BN step")}x (mask from y ${r("BN+ReLU fused step (mask from y)", "BN step")}x), unfused ${r("BN, ReLU unfused step", "BN step")}x` +
      ` | BN+add+ReLU fused ${r("BN+add+ReLU fused step", "BN step")}x (dz over dy ${r("BN+add+ReLU fused step (dz over dy)", "BN step")}x, mask from y ${r("BN+add+ReLU fused step (mask from y)", "BN step")}x), unfused ${r("BN, add+ReLU unfused step", "BN step")}x`);
    console.log(`forward: BN ${t("BN forward").toFixed(2)} ms | +ReLU (writing the bit mask) ${r("BN+ReLU fused forward", "BN forward")}x, without it ${r("BN+ReLU fused forward (no mask)", "BN forward")}x | +add+ReLU ${r("BN+add+ReLU fused forward", "BN forward")}x`);
    console.log(`backward: BN ${t("BN backward").toFixed(2)} ms | +ReLU from the bit mask ${r("BN+ReLU fused backward", "BN backward")}x, from y ${r("BN+ReLU fused backward (mask from y)", "BN backward")}x | +add+ReLU (dz) ${r("BN+add+ReLU fused backward", "BN backward")}x, dz over dy ${r("BN+add+ReLU fused backward (dz over dy)", "BN backward")}x`);
    const tc = m.get("copy: wasm memory.copy").median * 1e3;
    const tf = t("train forward (no running stats)");
    console.log(`train forward ${tf.toFixed(2)} ms, memory.copy ${tc.toFixed(2)} ms: ${((12 / 8) * tc / tf).toFixed(2)} of copy bandwidth (12 B/elem against 8)`);
    c.free(); x.free(); y.free();
  }
}
process.exit(failed ? 1 : 0);
