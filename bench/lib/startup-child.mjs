// Child process of run.mjs: one cold createEngine() of one build in a fresh process
// (wasm-bindgen initialises a build's glue once per process, so a second createEngine()
// of the same build returns the same instance: cold start-up needs fresh processes).
// Prints JSON: { importMs, createMs, firstCallMs }.
import { performance } from "node:perf_hooks";

const [build, threads] = [process.argv[2], Number(process.argv[3] ?? 2)];
let t = performance.now();
const bn = await import("../../dist/index.js");
const importMs = performance.now() - t;
t = performance.now();
const eng = build === "simd-threads" ? await bn.createEngine(build, threads) : await bn.createEngine(build);
const createMs = performance.now() - t;
// Time to the first result: a small eval call right after creation.
const shape = [2, 4, 8, 8];
const x = new Float32Array(512).map((_, i) => Math.sin(i));
const c = new Float32Array(4);
t = performance.now();
bn.batchNormEvalOn(eng, x, shape, { runningMean: c, runningVar: c.map(() => 1) });
const firstCallMs = performance.now() - t;
console.log(JSON.stringify({ build, threads: eng.threads, importMs, createMs, firstCallMs }));
process.exit(0);
