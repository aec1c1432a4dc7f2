#!/usr/bin/env node
// The benchmark suite of batchnorm-wasm (issue 4).
//
//   node bench/run.mjs            full run (about 10 minutes on 2 cores)
//   node bench/run.mjs --smoke    every harness path on tiny shapes, 1-2 repetitions,
//                                 numerical agreement of every contender checked;
//                                 exits non-zero if any harness path fails
//   --sections=startup,memory,shapes,sweep,ort-threads,fused   run only some sections
//   --rerender                    rewrite the .md and .svg from the last .json (no measuring)
//
// Every comparison is measured in this one process, round-robin (see lib/timing.mjs),
// and reported as medians and ratios; results go to bench/results/ (gitignored):
// results.json, results.md, throughput.svg (smoke-*.json/md/svg in smoke mode).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import { measure, gc } from "./lib/timing.mjs";
import { makeData } from "./lib/data.mjs";
import { reference, compare } from "./lib/check.mjs";
import * as plain from "./lib/plainjs.mjs";
import { typedArraySet, wasmCopy } from "./lib/copy.mjs";
import { BUILDS, THREADS, buildLabel, createOurEngine, oursContender } from "./lib/ours.mjs";
import { writeReport } from "./lib/report.mjs";
import { fusedCases } from "./lib/fused.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const SMOKE = args.includes("--smoke");
const sectionsArg = args.find((a) => a.startsWith("--sections="));
const SECTIONS = new Set(
  sectionsArg ? sectionsArg.slice("--sections=".length).split(",") : ["startup", "memory", "shapes", "sweep", "ort-threads", "fused"],
);

const EPS = 1e-5;
const MOMENTUM = 0.1;
/** Minimal memory traffic of each kernel, bytes per element (f32): eval reads x and
 * writes y; train forward reads x twice (statistics, then normalise) and writes y;
 * backward reads dy and x twice (reduction, then elementwise) and writes dx; a step
 * is train forward + backward. */
const TRAFFIC = { eval: 8, train: 12, backward: 20, step: 32 };
const OPS = ["eval", "train", "backward", "step"];

// Repetition plan. Full: at least 10 timed repetitions everywhere except tfjs-cpu on
// tensors of more than 1M elements (3: one of its backward passes takes seconds).
const PLAN = SMOKE
  ? { warmup: 1, reps: 2, minRepMs: 0, slowReps: 1, slowWarmup: 1, slowBudgetMs: 1000, memSteps: 500, startupRuns: 1, sweepReps: 2 }
  : { warmup: 3, reps: 21, minRepMs: 4, slowReps: 3, slowWarmup: 1, slowBudgetMs: 8000, memSteps: 10_000, startupRuns: 7, sweepReps: 13 };
const SLOW_ELEMS = 1 << 20;

const SHAPES = SMOKE
  ? [
      { name: "(2,8,6,6) NCHW", shape: [2, 8, 6, 6], layout: "NCHW" },
      { name: "(2,6,6,8) NHWC", shape: [2, 6, 6, 8], layout: "NHWC" },
      { name: "(16,32)", shape: [16, 32], layout: "NCHW" },
      { name: "(2,16,3,3) NCHW", shape: [2, 16, 3, 3], layout: "NCHW" },
    ]
  : [
      { name: "(32,64,56,56) NCHW", shape: [32, 64, 56, 56], layout: "NCHW" },
      { name: "(32,56,56,64) NHWC", shape: [32, 56, 56, 64], layout: "NHWC" },
      { name: "(256,1024)", shape: [256, 1024], layout: "NCHW" },
      { name: "(8,256,14,14) NCHW", shape: [8, 256, 14, 14], layout: "NCHW" },
      // 32 elements: what every call costs besides the data (validation, glue, staging).
      { name: "(4,8) per-call overhead", shape: [4, 8], layout: "NCHW" },
      // Small layers of small models: per-call overhead dominates.
      { name: "(32,16) small", shape: [32, 16], layout: "NCHW" },
      { name: "(64,128) small", shape: [64, 128], layout: "NCHW" },
    ];
// Fused activation section: BN steps with and without ReLU / add + ReLU, fused and not.
const FUSED_SHAPES = SMOKE
  ? [{ name: "(2,8,6,6) NCHW", shape: [2, 8, 6, 6], layout: "NCHW" }, { name: "(2,6,6,8) NHWC", shape: [2, 6, 6, 8], layout: "NHWC" }]
  : [{ name: "(32,64,56,56) NCHW", shape: [32, 64, 56, 56], layout: "NCHW" }, { name: "(32,56,56,64) NHWC", shape: [32, 56, 56, 64], layout: "NHWC" }];
// Sweep: tensor sizes (bytes of x) from 4 KB to 64 MB in factors of 2.
const SWEEP_BYTES = SMOKE ? [4096, 16384, 65536] : Array.from({ length: 15 }, (_, i) => 4096 * 2 ** i);
const MEM_SHAPE = [8, 16, 8, 8];

const results = {
  meta: {},
  startup: {},
  memory: [],
  shapes: [],
  sweep: null,
  ortThreads: null,
  fused: [],
  failures: [],
};
const fail = (where, e) => {
  const msg = `${where}: ${e?.stack ?? e}`;
  results.failures.push(msg.split("\n").slice(0, 4).join("\n"));
  console.error(`FAIL ${msg}`);
};
const log = (...a) => console.log(...a);
const t0 = performance.now();

/** Quiets the tfjs "install the node backend" banner during backend creation. */
async function quietly(fn) {
  const { log: l, warn: w } = console;
  console.log = console.warn = () => {};
  try { return await fn(); } finally { console.log = l; console.warn = w; }
}

function machine() {
  const cpus = os.cpus();
  const caches = {};
  try {
    const base = "/sys/devices/system/cpu/cpu0/cache";
    for (const d of fs.readdirSync(base).filter((n) => n.startsWith("index"))) {
      const rd = (f) => fs.readFileSync(path.join(base, d, f), "utf8").trim();
      const type = rd("type");
      if (type === "Instruction") continue;
      caches[`L${rd("level")}${type === "Data" ? "d" : ""}`] = rd("size");
    }
  } catch { /* not Linux */ }
  const pkg = (name) => {
    try { return JSON.parse(fs.readFileSync(path.join(here, "..", "node_modules", name, "package.json"), "utf8")).version; } catch { return null; }
  };
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    caches,
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    load: os.loadavg().map((x) => Number(x.toFixed(2))),
    versions: {
      "batchnorm-wasm": JSON.parse(fs.readFileSync(path.join(here, "..", "package.json"), "utf8")).version,
      "@tensorflow/tfjs-core": pkg("@tensorflow/tfjs-core"),
      "@tensorflow/tfjs-backend-wasm": pkg("@tensorflow/tfjs-backend-wasm"),
      "@tensorflow/tfjs-backend-cpu": pkg("@tensorflow/tfjs-backend-cpu"),
      "onnxruntime-web": pkg("onnxruntime-web"),
    },
  };
}

const engines = {};

// ---------------------------------------------------------------- start-up
async function startup() {
  log(`== start-up: createEngine() per build, cold, each in ${PLAN.startupRuns} fresh process(es)`);
  const out = { ours: {}, peers: {} };
  const med = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
  for (const b of BUILDS) {
    const runs = [];
    for (let i = 0; i < PLAN.startupRuns; i++) {
      const r = spawnSync(process.execPath, [path.join(here, "lib", "startup-child.mjs"), b, String(THREADS)], { encoding: "utf8", timeout: 60_000 });
      if (r.status !== 0) { fail(`startup ${b}`, `child exit ${r.status}: ${r.stderr?.slice(0, 300)}`); break; }
      runs.push(JSON.parse(r.stdout.trim().split("\n").at(-1)));
    }
    if (!runs.length) continue;
    out.ours[b] = {
      createMedianMs: med(runs.map((r) => r.createMs)),
      createMinMs: Math.min(...runs.map((r) => r.createMs)),
      firstCallMedianMs: med(runs.map((r) => r.firstCallMs)),
      importMedianMs: med(runs.map((r) => r.importMs)),
      runs: runs.length, threads: runs[0].threads,
    };
    log(`  ${b}: createEngine median ${out.ours[b].createMedianMs.toFixed(1)} ms, first call ${out.ours[b].firstCallMedianMs.toFixed(2)} ms`);
  }
  // This process's own engines (the first createEngine() of each build here is cold too).
  for (const b of BUILDS) {
    const t = performance.now();
    engines[b] = await createOurEngine(b);
    if (out.ours[b]) out.ours[b].inProcessMs = performance.now() - t;
  }
  // Peers' one-time start-up (information only: each happens once per process).
  try {
    const tfjs = await import("./lib/tfjs.mjs");
    for (const be of ["wasm", "cpu"]) {
      const t = performance.now();
      await quietly(() => tfjs.initBackend(be));
      out.peers[`tfjs-${be}: setBackend (first)`] = performance.now() - t;
    }
  } catch (e) { fail("startup tfjs", e); }
  try {
    const { configureOrt, ortContender } = await import("./lib/ort.mjs");
    configureOrt(1);
    const spec = { shape: [2, 4, 3, 3], layout: "NCHW", eps: EPS, momentum: MOMENTUM };
    const t = performance.now();
    const c = await ortContender(spec, makeData(spec.shape, spec.layout));
    out.peers["onnxruntime-web: first InferenceSession.create (wasm init)"] = c.createMs;
    out.peers["onnxruntime-web: first session + training-mode session"] = performance.now() - t;
    c.free();
  } catch (e) { fail("startup ort", e); }
  results.startup = out;
}

async function ensureEngines() {
  for (const b of BUILDS) engines[b] ??= await createOurEngine(b);
}

// ---------------------------------------------------------------- memory
async function memory() {
  log(`== memory: ${PLAN.memSteps} training steps (train forward + backward) on (${MEM_SHAPE}) per build and path`);
  const { batchNormTrainOn, batchNormBackwardOn, WasmTensor } = await import("../dist/index.js");
  const spec = { shape: MEM_SHAPE, layout: "NCHW" };
  const data = makeData(MEM_SHAPE, "NCHW", 3);
  const mib = (v) => Number((v / 2 ** 20).toFixed(1));
  const usage = () => { gc(); const u = process.memoryUsage(); return { rss: mib(u.rss), heapUsed: mib(u.heapUsed), heapTotal: mib(u.heapTotal) }; };
  await ensureEngines();
  for (const b of BUILDS) {
    // Runs before the large shapes, so wasm memory has not been grown by them yet.
    // (A second createEngine() of a build returns the same instance: no fresh one.)
    const eng = engines[b];
    for (const p of ["resident", "copy"]) {
      try {
        const put = (a) => (p === "copy" ? a.slice() : WasmTensor.from(a, eng));
        const x = put(data.x), dy = put(data.dy), w = put(data.weight), bias = put(data.bias);
        const rm = put(data.runningMean), rv = put(data.runningVar);
        const y = p === "copy" ? new Float32Array(data.x.length) : WasmTensor.alloc(data.x.length, eng);
        const dx = p === "copy" ? new Float32Array(data.x.length) : WasmTensor.alloc(data.x.length, eng);
        const step = () => {
          const r = batchNormTrainOn(eng, x, spec.shape, { weight: w, bias, runningMean: rm, runningVar: rv, momentum: MOMENTUM, eps: EPS, out: y });
          batchNormBackwardOn(eng, dy, x, spec.shape, { weight: w, mean: r.mean, invStd: r.invStd, out: dx });
        };
        for (let i = 0; i < PLAN.memSteps / 10; i++) step(); // warm-up: JIT, heap sizing
        const wasmBefore = eng.memory.buffer.byteLength, before = usage();
        const t = performance.now();
        for (let i = 0; i < PLAN.memSteps; i++) step();
        const secs = (performance.now() - t) / 1000;
        const wasmAfter = eng.memory.buffer.byteLength, after = usage();
        const row = {
          build: b, path: p, shape: MEM_SHAPE, steps: PLAN.memSteps, wasmBefore, wasmAfter,
          rssBeforeMB: before.rss, rssAfterMB: after.rss,
          heapUsedBeforeMB: before.heapUsed, heapUsedAfterMB: after.heapUsed,
          heapTotalBeforeMB: before.heapTotal, heapTotalAfterMB: after.heapTotal,
          // Flat: no wasm memory growth, and the JS heap in use (after a full GC) within 1 MiB.
          flat: wasmAfter === wasmBefore && after.heapUsed - before.heapUsed < 1,
          stepUs: Number(((secs / PLAN.memSteps) * 1e6).toFixed(1)),
        };
        results.memory.push(row);
        log(`  ${b} ${p}: wasm ${wasmBefore} -> ${wasmAfter} B, JS heap used ${before.heapUsed} -> ${after.heapUsed} MiB, rss ${before.rss} -> ${after.rss} MiB`);
        if (wasmAfter !== wasmBefore) fail(`memory ${b} ${p}`, `wasm memory grew from ${wasmBefore} to ${wasmAfter} bytes`);
        if (!row.flat) fail(`memory ${b} ${p}`, `JS heap in use grew from ${before.heapUsed} to ${after.heapUsed} MiB`);
        for (const t2 of [x, dy, w, bias, rm, rv, y, dx]) if (t2 instanceof WasmTensor) t2.free();
      } catch (e) { fail(`memory ${b} ${p}`, e); }
    }
  }
}

// ---------------------------------------------------------------- contenders
const oursId = (b, p) => `ours ${buildLabel(b)} ${p}`;

/** All contenders for one shape: { id, kind, ops: {eval, ...}, before?, check?, free?, reps? }. */
async function contenders(spec, data) {
  const list = [];
  const n = data.x.length;
  const slow = !SMOKE && n > SLOW_ELEMS;
  for (const b of BUILDS) {
    for (const p of b === "scalar" ? ["resident", "copy"] : ["resident", "copy", "new"]) {
      try {
        const c = oursContender(engines[b], spec, data, p);
        list.push({
          id: oursId(b, p), kind: "ours", build: b, path: p,
          ops: { eval: c.eval, train: c.train, backward: c.backward, step: c.step },
          check: (conv, mom) => c.check(conv, mom), free: c.free,
        });
      } catch (e) { fail(`${spec.name} ${oursId(b, p)} setup`, e); }
    }
  }
  try {
    const tfjs = await import("./lib/tfjs.mjs");
    for (const be of ["wasm", "cpu"]) {
      const c = await quietly(() => tfjs.tfjsContender(be, spec, data));
      const isSlow = be === "cpu" && slow;
      if (isSlow) c.skipCheck = true;
      list.push({
        id: `tfjs-${be}`, kind: "peer", path: "resident",
        note: (c.native ? "tf.batchNorm (channels last)" : "broadcast ops on [1,C,1,1] (tf.batchNorm broadcasts over the last axis only)") +
          "; train = tf.moments + the same; backward = tf.grads (which re-runs the forward: no backward-only API)" +
          (isSlow ? `; slow here: ${PLAN.slowReps} reps at most, fewer where a call takes over a second (time budget ${PLAN.slowBudgetMs / 1000} s per op, the warm-up call counted); numerics not re-checked at this size (checked at the smaller shapes and in smoke)` : ""),
        ops: { eval: c.eval, train: c.train, backward: c.backward, step: c.step },
        before: c.before, check: isSlow ? undefined : () => c.check(), free: c.free,
        reps: isSlow ? PLAN.slowReps : undefined, warmup: isSlow ? PLAN.slowWarmup : undefined,
        budgetMs: isSlow ? PLAN.slowBudgetMs : undefined,
      });
    }
  } catch (e) { fail(`${spec.name} tfjs setup`, e); }
  try {
    const { ortContender, ONNX_MOMENTUM } = await import("./lib/ort.mjs");
    const c = await ortContender(spec, data);
    if (c) {
      const ops = { eval: c.eval };
      if (c.train) ops.train = c.train;
      list.push({
        id: "ort-wasm(1 thread)", kind: "peer", path: "copy", ops, check: () => c.check(), free: c.free,
        convention: "onnx", momentum: ONNX_MOMENTUM,
        note: c.train ? "BatchNormalization opset 15; train = training_mode=1" : `training_mode=1 unsupported: ${c.trainError}`,
      });
    }
  } catch (e) { fail(`${spec.name} ort setup`, e); }
  {
    const d = plain.dimsOf(spec.shape, spec.layout);
    const y = new Float32Array(n), dx = new Float32Array(n);
    const rm = data.runningMean.slice(), rv = data.runningVar.slice();
    const s = plain.trainForward(data.x, y, d, data.weight, data.bias, rm.slice(), rv.slice(), MOMENTUM, EPS);
    const train = () => plain.trainForward(data.x, y, d, data.weight, data.bias, rm, rv, MOMENTUM, EPS);
    list.push({
      id: "plain JS", kind: "peer", path: "resident", note: "float64 accumulators; also the reference of the checks",
      ops: {
        eval: () => plain.evalForward(data.x, y, d, data.weight, data.bias, rm, rv, EPS),
        train,
        backward: () => plain.backward(data.dy, data.x, dx, d, data.weight, s.mean, s.invStd),
        step: () => { const r = train(); plain.backward(data.dy, data.x, dx, d, data.weight, r.mean, r.invStd); },
      },
    });
  }
  const set = typedArraySet(n), wc = wasmCopy(n);
  const copyOps = (c) => Object.fromEntries(OPS.map((o) => [o, c.fn]));
  list.push({ id: "copy: TypedArray.set", kind: "limit", ops: copyOps(set) });
  list.push({ id: "copy: wasm memory.copy", kind: "limit", ops: copyOps(wc) });
  return list;
}

/** Medians etc.; gbps = the minimal traffic of the op (8 B/elem for a copy) per second. */
function summarize(m, n, op) {
  const out = {};
  for (const [id, r] of m) {
    const bpe = id.startsWith("copy:") ? 8 : TRAFFIC[op];
    out[id] = {
      medianMs: r.median * 1e3, minMs: r.min * 1e3, maxMs: r.max * 1e3, reps: r.reps, iters: r.iters,
      melems: n / r.median / 1e6,
      gbps: (bpe * n) / r.median / 1e9,
    };
  }
  return out;
}

// ---------------------------------------------------------------- shapes
async function shapes() {
  await ensureEngines();
  for (const s of SHAPES) {
    const spec = { ...s, eps: EPS, momentum: MOMENTUM };
    const n = s.shape.reduce((a, b) => a * b, 1);
    log(`== ${s.name}: ${n} elements (${(n * 4 / 2 ** 20).toFixed(2)} MiB per tensor)`);
    const data = makeData(s.shape, s.layout, 11);
    const entry = { name: s.name, shape: s.shape, layout: s.layout, elems: n, bytes: 4 * n, checks: {}, notes: {}, ops: {} };
    results.shapes.push(entry);
    let list;
    try { list = await contenders(spec, data); } catch (e) { fail(`${s.name} contenders`, e); continue; }
    // Numerical agreement with the float64 reference (same computation everywhere).
    const refs = {};
    const refFor = (conv, mom) => (refs[`${conv}/${mom}`] ??= reference(spec, data, conv, mom));
    for (const c of list) {
      if (c.note) entry.notes[c.id] = c.note;
      if (!c.check) continue;
      try {
        if (c.before) await c.before();
        const conv = c.convention ?? "pytorch", mom = c.momentum ?? MOMENTUM;
        const r = compare(await c.check(conv, mom), refFor(conv, mom));
        entry.checks[c.id] = r;
        if (!r.ok) fail(`${s.name} ${c.id} numerics`, JSON.stringify(r.errs));
      } catch (e) { fail(`${s.name} ${c.id} check`, e); }
    }
    const tfTensors = async () => (await import("./lib/tfjs.mjs")).tf.memory().numTensors;
    const tensorsBefore = await tfTensors();
    // Each op: one round-robin comparison of every contender that has it, plus the copy limits.
    for (const op of OPS) {
      const cases = list.filter((c) => c.ops[op]).map((c) => ({
        id: c.id, fn: c.ops[op], before: c.before,
        warmup: c.warmup ?? PLAN.warmup, reps: c.reps ?? PLAN.reps, minRepMs: PLAN.minRepMs, budgetMs: c.budgetMs,
      }));
      try {
        const m = await measure(cases, {});
        entry.ops[op] = summarize(m, n, op);
        const best = list.filter((c) => c.kind === "ours").map((c) => entry.ops[op][c.id]?.medianMs);
        log(`  ${op}: ours best ${Math.min(...best).toFixed(3)} ms; ` +
          list.filter((c) => c.kind !== "ours" && entry.ops[op][c.id]).map((c) => `${c.id} ${entry.ops[op][c.id].medianMs.toFixed(3)}`).join(", "));
      } catch (e) { fail(`${s.name} ${op} measure`, e); }
    }
    const tensorsAfter = await tfTensors();
    if (tensorsAfter !== tensorsBefore) fail(`${s.name} tfjs`, `live tensors grew from ${tensorsBefore} to ${tensorsAfter} while timing`);
    for (const c of list) { try { c.free?.(); } catch (e) { fail(`${s.name} ${c.id} free`, e); } }
  }
}

// ---------------------------------------------------------------- sweep
async function sweep() {
  await ensureEngines();
  log(`== sweep: ${SWEEP_BYTES.length} sizes, ${SWEEP_BYTES[0]} B .. ${SWEEP_BYTES.at(-1)} B (NCHW (N,16,64); tfjs on its NHWC twin (N,64,16))`);
  const tfjs = await import("./lib/tfjs.mjs");
  const { ortContender } = await import("./lib/ort.mjs");
  const series = {};
  const add = (id, row) => (series[id] ??= []).push(row);
  for (const bytes of SWEEP_BYTES) {
    const n = bytes / 4;
    const N = n / 1024;
    const spec = { name: `sweep ${bytes}`, shape: [N, 16, 64], layout: "NCHW", eps: EPS, momentum: MOMENTUM };
    const twin = { ...spec, shape: [N, 64, 16], layout: "NHWC" };
    const data = makeData(spec.shape, spec.layout, 5);
    const cases = [];
    const frees = [];
    try {
      for (const b of BUILDS) {
        const c = oursContender(engines[b], spec, data, "resident");
        frees.push(c.free);
        const name = buildLabel(b);
        cases.push({ id: `ours ${name} eval`, fn: c.eval }, { id: `ours ${name} train`, fn: c.train }, { id: `ours ${name} backward`, fn: c.backward });
        if (b === "simd") {
          const cc = oursContender(engines[b], spec, data, "copy");
          frees.push(cc.free);
          cases.push({ id: "ours simd eval (copy path)", fn: cc.eval });
        }
      }
      const tw = await tfjs.tfjsContender("wasm", twin, data);
      frees.push(tw.free);
      cases.push({ id: "tfjs-wasm eval (NHWC twin)", fn: tw.eval, before: tw.before });
      const oc = await ortContender(spec, data);
      frees.push(oc.free);
      cases.push({ id: "ort-wasm(1 thread) eval", fn: oc.eval });
      const d = plain.dimsOf(spec.shape, spec.layout), y = new Float32Array(n);
      cases.push({ id: "plain JS eval", fn: () => plain.evalForward(data.x, y, d, data.weight, data.bias, data.runningMean, data.runningVar, EPS) });
      cases.push({ id: "copy: TypedArray.set", fn: typedArraySet(n).fn }, { id: "copy: wasm memory.copy", fn: wasmCopy(n).fn });
      const m = await measure(cases.map((c) => ({ ...c, warmup: PLAN.warmup, reps: PLAN.sweepReps, minRepMs: PLAN.minRepMs })), {});
      for (const [id, r] of m) add(id, { bytes, elems: n, medianMs: r.median * 1e3, melems: n / r.median / 1e6, reps: r.reps, iters: r.iters });
      log(`  ${bytes} B: simd eval ${(n / m.get("ours simd eval").median / 1e6).toFixed(0)} Melem/s, memory.copy ${(n / m.get("copy: wasm memory.copy").median / 1e6).toFixed(0)} Melem/s`);
    } catch (e) { fail(`sweep ${bytes}`, e); }
    for (const f of frees) { try { f(); } catch (e) { fail(`sweep ${bytes} free`, e); } }
  }
  results.sweep = { sizesBytes: SWEEP_BYTES, shape: "(N,16,64) NCHW; tfjs: (N,64,16) NHWC", series };
}

// ---------------------------------------------------------------- ORT with 2 threads (child process)
function ortThreads() {
  log("== onnxruntime-web with 2 threads (a child process: ORT's thread count is fixed per process)");
  const file = path.join(os.tmpdir(), `bn-ort-child-${process.pid}.json`);
  const shapes = SHAPES.filter((s) => s.layout === "NCHW");
  const r = spawnSync(process.execPath, [path.join(here, "lib", "ort-child.mjs"), JSON.stringify({
    file, shapes, eps: EPS, momentum: MOMENTUM,
    plan: { warmup: PLAN.warmup, reps: SMOKE ? PLAN.reps : 11, minRepMs: PLAN.minRepMs },
  })], { stdio: ["ignore", "inherit", "inherit"], timeout: 300_000 });
  if (r.status !== 0) { fail("ort-threads child", `exit ${r.status} ${r.signal ?? ""} ${r.error ?? ""}`); return; }
  results.ortThreads = JSON.parse(fs.readFileSync(file, "utf8"));
  fs.rmSync(file, { force: true });
  for (const f of results.ortThreads.failures ?? []) results.failures.push(`ort-threads child: ${f}`);
}

// ---------------------------------------------------------------- fused activation
async function fused() {
  await ensureEngines();
  log("== fused BN+ReLU and BN+add+ReLU training steps vs BN then separate ReLU (add) passes, resident; TF.js tf.relu(tf.batchNorm) eval for reference");
  const tfjs = await import("./lib/tfjs.mjs");
  for (const s of FUSED_SHAPES) {
    const spec = { ...s, eps: EPS, momentum: MOMENTUM };
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = makeData(s.shape, s.layout, 13);
    const frees = [];
    const cases = [];
    try {
      for (const b of ["simd", "simd-threads"]) {
        const label = buildLabel(b);
        const c = fusedCases(engines[b], spec, data, label);
        frees.push(c.free);
        const problem = c.check();
        if (problem) fail(`fused ${s.name} numerics`, problem);
        cases.push(...c.cases);
      }
      // TF.js for reference: eval forward + ReLU (its fastest op here), wasm backend.
      const tw = await quietly(() => tfjs.tfjsContender("wasm", spec, data));
      frees.push(tw.free);
      cases.push({ id: "tfjs-wasm eval BN", fn: tw.eval, before: tw.before });
      cases.push({ id: "tfjs-wasm eval tf.relu(BN)", fn: tw.evalRelu, before: tw.before });
      const m = await measure(cases.map((c) => ({ ...c, warmup: PLAN.warmup, reps: PLAN.reps, minRepMs: PLAN.minRepMs })), {});
      const row = { name: s.name, shape: s.shape, layout: s.layout, elems: n, ms: {} };
      for (const [id, r] of m) row.ms[id] = r.median * 1e3;
      results.fused.push(row);
      for (const b of ["simd", `simd-threads(${THREADS})`]) {
        const t = (k) => row.ms[`${b} ${k}`];
        log(`  ${s.name} ${b}: BN step ${t("BN step").toFixed(2)} ms; BN+ReLU fused ${(t("BN+ReLU fused step") / t("BN step")).toFixed(2)}x ` +
          `(unfused ${(t("BN, ReLU unfused step") / t("BN step")).toFixed(2)}x); BN+add+ReLU fused ${(t("BN+add+ReLU fused step") / t("BN step")).toFixed(2)}x ` +
          `(unfused ${(t("BN, add+ReLU unfused step") / t("BN step")).toFixed(2)}x)`);
      }
    } catch (e) { fail(`fused ${s.name}`, e); }
    for (const f of frees) { try { f(); } catch (e) { fail(`fused ${s.name} free`, e); } }
  }
}

// ---------------------------------------------------------------- main
async function main() {
  if (args.includes("--rerender")) {
    const dir = path.join(here, "results");
    const prefix = SMOKE ? "smoke-" : "";
    const res = JSON.parse(fs.readFileSync(path.join(dir, `${prefix}results.json`), "utf8"));
    log(`rewrote ${writeReport(res, dir, prefix).join(", ")}`);
    process.exit(0);
  }
  results.meta = {
    date: new Date().toISOString(),
    mode: SMOKE ? "smoke" : "full",
    machine: machine(),
    plan: { ...PLAN, slowAbove: SLOW_ELEMS },
    traffic: TRAFFIC,
    eps: EPS, momentum: MOMENTUM, threads: THREADS,
  };
  const m = results.meta.machine;
  log(`batchnorm-wasm bench (${results.meta.mode}): ${m.cpu}, ${m.cores} cores, Node ${m.node}`);
  const run = async (name, fn) => {
    if (!SECTIONS.has(name)) return;
    try { await fn(); } catch (e) { fail(name, e); }
  };
  await run("startup", startup);
  await run("memory", memory);
  await run("shapes", shapes);
  await run("sweep", sweep);
  await run("ort-threads", ortThreads);
  await run("fused", fused);
  results.meta.durationS = Number(((performance.now() - t0) / 1000).toFixed(1));
  const dir = path.join(here, "results");
  fs.mkdirSync(dir, { recursive: true });
  const prefix = SMOKE ? "smoke-" : "";
  const files = writeReport(results, dir, prefix);
  log(`wrote ${files.join(", ")} in ${results.meta.durationS} s`);
  if (results.failures.length) {
    console.error(`${results.failures.length} harness failure(s):\n  ${results.failures.join("\n  ")}`);
    process.exit(1);
  }
  process.exit(0); // the simd-threads pools' workers would keep the process alive
}

main().catch((e) => { console.error(e); process.exit(1); });
