// Plain arrays against resident tensors and the copy limit (issue 10), side by side in
// one process (round-robin medians, lib/timing.mjs): eval, train forward, backward and a
// step with Float32Array arguments into preallocated outputs ("copy") and into new arrays
// ("new"), the resident path, a BatchNorm module's training step (Float32Array or
// WasmTensor x, dy and outputs), TypedArray.set / memory.copy of the tensor, and a tight
// plain-JS eval loop writing into a preallocated array, and the cost of a new array of
// the tensor's size filled by TypedArray.set (the floor of every "new output" row: page
// faults of fresh memory and garbage collection, whoever fills it); the plain paths'
// copies alone, with no kernel (lib/boundary.mjs), through unshared memory (where the
// plain calls run on both builds) and through the threads build's shared memory, which
// bound what any plain-array path can reach on this machine; then per-call overhead on
// small shapes in microseconds.
//   node bench/plain.mjs [--quick]
import { measure } from "./lib/timing.mjs";
import { makeData } from "./lib/data.mjs";
import * as plain from "./lib/plainjs.mjs";
import { typedArraySet, wasmCopy } from "./lib/copy.mjs";
import { boundaryCopies } from "./lib/boundary.mjs";
import { buildLabel as label, createOurEngine, oursContender } from "./lib/ours.mjs";

const QUICK = process.argv.includes("--quick");
const PLAN = QUICK ? { warmup: 2, reps: 7, minRepMs: 4 } : { warmup: 3, reps: 15, minRepMs: 4 };
const BUILDS = ["simd", "simd-threads"];
const engines = Object.fromEntries(await Promise.all(BUILDS.map(async (b) => [b, await createOurEngine(b)])));
const EPS = 1e-5, MOMENTUM = 0.1;

async function compare(spec, ops, withLimits) {
  const data = makeData(spec.shape, spec.layout, 3);
  const n = data.x.length;
  const frees = [];
  const cases = [];
  for (const b of BUILDS) {
    for (const p of ["resident", "copy", "new"]) {
      const c = oursContender(engines[b], { ...spec, eps: EPS, momentum: MOMENTUM }, data, p);
      frees.push(c.free);
      for (const op of ops) cases.push({ id: `${label(b)} ${p} ${op}`, fn: c[op] });
    }
  }
  if (ops.includes("step")) {
    // A module training step (forward + backward): Float32Arrays in and out against
    // WasmTensors in and out.
    for (const b of BUILDS) {
      const { BatchNorm, WasmTensor } = await import("../dist/index.js");
      const C = data.weight.length;
      const m = new BatchNorm(C, { layout: spec.layout, engine: engines[b] });
      const xt = WasmTensor.from(data.x, engines[b]), dyt = WasmTensor.from(data.dy, engines[b]);
      const yt = WasmTensor.alloc(n, engines[b]), dxt = WasmTensor.alloc(n, engines[b]);
      const y = new Float32Array(n), dx = new Float32Array(n);
      frees.push(() => { m.dispose(); for (const t of [xt, dyt, yt, dxt]) t.free(); });
      cases.push({ id: `${label(b)} resident module step`, fn: () => { m.forward(xt, spec.shape, { out: yt }); m.backward(dyt, { out: dxt }); } });
      cases.push({ id: `${label(b)} copy module step`, fn: () => { m.forward(data.x, spec.shape, { out: y }); m.backward(data.dy, { out: dx }); } });
      cases.push({ id: `${label(b)} new module step`, fn: () => { m.forward(data.x, spec.shape); m.backward(data.dy); } });
    }
  }
  if (withLimits) {
    cases.push({ id: "copy: TypedArray.set", fn: typedArraySet(n).fn }, { id: "copy: wasm memory.copy", fn: wasmCopy(n).fn });
    // What any new output of this size costs before a single value is computed: a fresh
    // 25 MB ArrayBuffer whose pages the kernel maps on first touch, and its garbage.
    cases.push({ id: "alloc: new Float32Array + set", fn: () => new Float32Array(n).set(data.x) });
    const d = plain.dimsOf(spec.shape, spec.layout), y = new Float32Array(n);
    cases.push({ id: "plain JS eval", fn: () => plain.evalForward(data.x, y, d, data.weight, data.bias, data.runningMean, data.runningVar, EPS) });
    // The copies of each plain call alone: unshared memory (the simd build's, where both
    // builds run plain calls), and the threads build's shared memory.
    const arrays = { x: data.x, dy: data.dy, y, dx: new Float32Array(n) };
    for (const [mem, eng] of [["unshared", engines.simd], ["shared", engines["simd-threads"]]]) {
      for (const op of ["eval", "train", "backward"]) cases.push({ id: `copies alone ${mem} ${op}`, fn: boundaryCopies(eng, d, op, arrays) });
    }
  }
  const m = await measure(cases.map((c) => ({ ...c, ...PLAN })), {});
  for (const f of frees) f();
  return Object.fromEntries([...m].map(([id, r]) => [id, r.median * 1e3]));
}

const load = (await import("node:os")).loadavg().map((v) => v.toFixed(2)).join(" ");
console.log(`# bench/plain.mjs ${QUICK ? "--quick" : ""}: medians (ms) of ${PLAN.reps} round-robin repetitions; load ${load}`);
for (const spec of [
  { name: "(32,64,56,56) NCHW", shape: [32, 64, 56, 56], layout: "NCHW" },
  { name: "(32,56,56,64) NHWC", shape: [32, 56, 56, 64], layout: "NHWC" },
]) {
  const t = await compare(spec, ["eval", "train", "backward", "step"], true);
  const copy = Math.min(t["copy: TypedArray.set"], t["copy: wasm memory.copy"]);
  console.log(`\n## ${spec.name}: copy limit ${copy.toFixed(2)} ms (best of TypedArray.set ${t["copy: TypedArray.set"].toFixed(2)}, memory.copy ${t["copy: wasm memory.copy"].toFixed(2)}); plain JS eval ${t["plain JS eval"].toFixed(2)} ms; a new array (new Float32Array + set) ${t["alloc: new Float32Array + set"].toFixed(2)} ms`);
  console.log("| build | op | resident | copy (out) | new output | copy / resident | new / resident | eval: copy limit / time | eval: plain JS / time |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const b of BUILDS.map(label)) {
    for (const op of ["eval", "train", "backward", "step", "module step"]) {
      const [r, c, nw] = ["resident", "copy", "new"].map((p) => t[`${b} ${p} ${op}`]);
      const ev = op === "eval" ? [`${(copy / c).toFixed(2)} (new ${(copy / nw).toFixed(2)})`, `${(t["plain JS eval"] / c).toFixed(2)}x`] : ["", ""];
      console.log(`| ${b} | ${op} | ${r.toFixed(2)} | ${c.toFixed(2)} | ${nw.toFixed(2)} | ${(r / c).toFixed(2)} | ${(r / nw).toFixed(2)} | ${ev.join(" | ")} |`);
    }
  }
  // The ceilings: no plain call is faster than its copies, so "copy / resident" cannot
  // exceed resident / copies-alone (and eval's "of copy", copy limit / copies-alone).
  console.log(`\nThe plain paths' copies alone (no kernel, the same windows), and the ceilings they set on the ratios above:`);
  console.log("| op | copies, unshared memory | copies, shared memory | ceiling simd | ceiling simd-threads(2), unshared / shared |");
  console.log("|---|---|---|---|---|");
  for (const op of ["eval", "train", "backward"]) {
    const [u, sh] = ["unshared", "shared"].map((mem) => t[`copies alone ${mem} ${op}`]);
    const ceil = (b, c) => (op === "eval" ? copy : t[`${b} resident ${op}`]) / c;
    const th = label("simd-threads");
    console.log(`| ${op}${op === "eval" ? " (of copy)" : " (copy / resident)"} | ${u.toFixed(2)} | ${sh.toFixed(2)} | ${ceil("simd", u).toFixed(2)} | ${ceil(th, u).toFixed(2)} / ${ceil(th, sh).toFixed(2)} |`);
  }
}
console.log("\n## per-call overhead (µs per call), small shapes");
console.log("| shape | build | path | eval | train | backward |");
console.log("|---|---|---|---|---|---|");
for (const spec of [{ name: "(32,16)", shape: [32, 16], layout: "NCHW" }, { name: "(64,128)", shape: [64, 128], layout: "NCHW" }]) {
  const t = await compare(spec, ["eval", "train", "backward"], false);
  for (const b of BUILDS.map(label)) {
    for (const p of ["resident", "copy", "new"]) {
      console.log(`| ${spec.name} | ${b} | ${p} | ${["eval", "train", "backward"].map((op) => (t[`${b} ${p} ${op}`] * 1e3).toFixed(1)).join(" | ")} |`);
    }
  }
}
process.exit(0);
