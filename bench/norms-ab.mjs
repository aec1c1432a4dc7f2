#!/usr/bin/env node
// A/B of two builds of the norm kernels in one process: LayerNorm, GroupNorm and BatchNorm (channels-first training) forward /
// backward (bench/norms.mjs's shapes, resident WasmTensors) on a base build (e.g. main's
// pkg/simd copied aside) against this checkout's pkg/simd, with memory.copy of the same
// elements as the yardstick.
//
//   cp -r <other checkout>/pkg/simd /tmp/base-simd
//   node bench/norms-ab.mjs --base=/tmp/base-simd [--cases="ln fwd,ln bwd,gn fwd,gn bwd,rows64 fwd"] [--rounds=200]
//
// Why paired CPU-time ratios and not bench/lib/timing.mjs's round-robin wall medians: on a
// shared, oversubscribed machine the wall time of one call swings by 2-4x with the other
// processes, and even 10-repetition medians drift between contenders. Here each round calls
// copy, base and new once each, back to back, timed by process CPU time (single-threaded
// builds only: a call's CPU time is its own), and the statistic is the median over rounds of
// the per-round ratio, so the load level cancels within each round.
// Cases: "ln" = LayerNorm (4096, 768); "gn" = GroupNorm(32, 256) on (16, 256, 28, 28);
// "gnl" = the same channels-last, (16, 28, 28, 256); "gnl64" = GroupNorm(8, 64) on
// channels-last (32, 56, 56, 64); "inl" = InstanceNorm channels-last on (16, 28, 28, 256);
// "in7" / "in14" = InstanceNorm channels-first on (32, 256, 7, 7) / (16, 256, 14, 14) (rows
// of 49 / 196 values, a row per (sample, channel));
// "rowsD" = LayerNorm over D features, 2^22 / D rows; "bnS" = BatchNorm channels-first
// training forward ("fwd") or backward ("bwd") on planes of S x S (bn4 (64, 64, 4, 4), bn7
// (32, 512, 7, 7), bn14 (32, 128, 14, 14), bn28 (32, 64, 28, 28), bn56 (32, 64, 56, 56)):
// the per-plane costs of small planes. "ofCopy" counts minimal traffic
// (forward 8 B/elem, backward 12 B/elem) against memory.copy's 8 B/elem. Before timing, each
// case's output (y or dx) from both builds is compared bit for bit ("sameBits").
import fs from "node:fs";
import path from "node:path";
import { wasmCopy } from "./lib/copy.mjs";
import { createOurEngine } from "./lib/ours.mjs";
import { layerNorm, layerNormBackward, groupNorm, groupNormBackward, batchNormTrainOn, batchNormBackwardOn, WasmTensor } from "../dist/index.js";

const args = process.argv.slice(2);
const opt = (k, d) => args.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d;
const BASE = opt("base", null);
if (!BASE) {
  console.error("usage: node bench/norms-ab.mjs --base=<directory holding batchnorm.js and batchnorm_bg.wasm of a simd build>");
  process.exit(2);
}
const CASES = opt("cases", "ln fwd,ln bwd,gn fwd,gn bwd").split(",");
const ROUNDS = +opt("rounds", 200);

/** An engine on the simd glue in `dir` (the shape of loader.ts's Engine, one thread). */
async function engineFrom(dir) {
  const glue = await import(path.resolve(dir, "batchnorm.js"));
  const { memory } = await glue.default({ module_or_path: fs.readFileSync(path.resolve(dir, "batchnorm_bg.wasm")) });
  return { glue, memory, build: "simd", threads: 1 };
}

let seed = 1;
function rand(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = (seed / 4294967296) * 4 - 2;
  }
  return a;
}

/** The GroupNorm / InstanceNorm cases. */
const GROUPS = {
  gn: { shape: [16, 256, 28, 28], groups: 32, layout: "NCHW" },
  gnl: { shape: [16, 28, 28, 256], groups: 32, layout: "NHWC" },
  gnl64: { shape: [32, 56, 56, 64], groups: 8, layout: "NHWC" },
  inl: { shape: [16, 28, 28, 256], groups: 256, layout: "NHWC" },
  in7: { shape: [32, 256, 7, 7], groups: 256, layout: "NCHW" },
  in14: { shape: [16, 256, 14, 14], groups: 256, layout: "NCHW" },
};

/** The BatchNorm channels-first cases (NCHW). */
const PLANES = {
  bn4: [64, 64, 4, 4],
  bn7: [32, 512, 7, 7],
  bn14: [32, 128, 14, 14],
  bn28: [32, 64, 28, 28],
  bn56: [32, 64, 56, 56],
};

/** `{ n, bytes, fn, out }` for a case on an engine (`out`: the tensor it writes). */
function contender(eng, c) {
  const T = (a) => WasmTensor.from(a, eng);
  const [kind, dir] = c.split(" ");
  const bytes = dir === "bwd" ? 12 : 8;
  seed = 1; // the same data on both builds
  if (GROUPS[kind]) {
    const { shape, groups, layout } = GROUPS[kind];
    const n = shape.reduce((a, b) => a * b), C = layout === "NHWC" ? shape[3] : shape[1];
    const [X, DY, W, B] = [rand(n), rand(n), rand(C), rand(C)].map(T);
    const Y = T(new Float32Array(n)), DX = T(new Float32Array(n));
    const f = groupNorm(X, shape, groups, { weight: W, bias: B, layout, out: Y, engine: eng });
    const saved = { mean: T(f.mean), invStd: T(f.invStd) };
    const fwd = () => groupNorm(X, shape, groups, { weight: W, bias: B, layout, out: Y, engine: eng });
    const bwd = () => groupNormBackward(DY, X, shape, groups, { weight: W, ...saved, layout, out: DX, engine: eng });
    return { n, bytes, fn: dir === "fwd" ? fwd : bwd, out: dir === "fwd" ? Y : DX };
  }
  if (PLANES[kind]) {
    const shape = PLANES[kind], n = shape.reduce((a, b) => a * b), C = shape[1];
    const [X, DY, W, B] = [rand(n), rand(n), rand(C), rand(C)].map(T);
    const Y = T(new Float32Array(n)), DX = T(new Float32Array(n));
    const f = batchNormTrainOn(eng, X, shape, { weight: W, bias: B, out: Y });
    const fwd = () => batchNormTrainOn(eng, X, shape, { weight: W, bias: B, out: Y });
    const bwd = () => batchNormBackwardOn(eng, DY, X, shape, { weight: W, mean: f.mean, invStd: f.invStd, out: DX });
    return { n, bytes, fn: dir === "fwd" ? fwd : bwd, out: dir === "fwd" ? Y : DX };
  }
  const d = kind === "ln" ? 768 : Number(kind.slice(4));
  const rows = kind === "ln" ? 4096 : Math.floor((1 << 22) / d), n = rows * d;
  const [X, DY, W, B] = [rand(n), rand(n), rand(d), rand(d)].map(T);
  const Y = T(new Float32Array(n)), DX = T(new Float32Array(n));
  const f = layerNorm(X, [rows, d], d, { weight: W, bias: B, out: Y, engine: eng });
  const saved = { mean: T(f.mean), invStd: T(f.invStd) };
  const fwd = () => layerNorm(X, [rows, d], d, { weight: W, bias: B, out: Y, engine: eng });
  const bwd = () => layerNormBackward(DY, X, [rows, d], d, { weight: W, ...saved, out: DX, engine: eng });
  return { n, bytes, fn: dir === "fwd" ? fwd : bwd, out: dir === "fwd" ? Y : DX };
}

const median = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
const cpuMs = (f) => {
  const u = process.cpuUsage();
  f();
  const d = process.cpuUsage(u);
  return (d.user + d.system) / 1e3;
};

const base = await engineFrom(BASE);
const mine = await createOurEngine("simd");
for (const c of CASES) {
  const a = contender(base, c), b = contender(mine, c), copy = wasmCopy(a.n).fn;
  for (let i = 0; i < 30; i++) { copy(); a.fn(); b.fn(); }
  const [ba, bb] = [a.out.toArray(), b.out.toArray()].map((v) => new Uint32Array(v.buffer));
  const sameBits = ba.length === bb.length && ba.every((v, i) => v === bb[i]);
  const t = { copy: [], base: [], new: [] }, newOverBase = [], baseOfCopy = [], newOfCopy = [];
  for (let r = 0; r < ROUNDS; r++) {
    const tc = cpuMs(copy), ta = cpuMs(a.fn), tb = cpuMs(b.fn);
    t.copy.push(tc); t.base.push(ta); t.new.push(tb);
    newOverBase.push(tb / ta);
    baseOfCopy.push(((a.bytes / 8) * tc) / ta);
    newOfCopy.push(((b.bytes / 8) * tc) / tb);
  }
  console.log(JSON.stringify({
    case: c, elems: a.n, rounds: ROUNDS, sameBits,
    newOverBase: +median(newOverBase).toFixed(3),
    ofCopy: { base: +median(baseOfCopy).toFixed(2), new: +median(newOfCopy).toFixed(2) },
    cpuMs: { copy: +median(t.copy).toFixed(3), base: +median(t.base).toFixed(3), new: +median(t.new).toFixed(3) },
    MelemPerS: { base: Math.round(a.n / median(t.base) / 1e3), new: Math.round(b.n / median(t.new) / 1e3) },
  }));
}
process.exit(0);
