// Child process of run.mjs: onnxruntime-web with 2 threads (ORT fixes its thread count
// when it first initialises, so this cannot share a process with the 1-thread runs).
// Compared side by side with our copy path (ORT also copies in and out), so the
// main process's "ORT 1 thread vs ours simd copy" ratio and this one's
// "ORT 2 threads vs ours simd copy" ratio have the same yardstick.
import fs from "node:fs";
import { measure } from "./timing.mjs";
import { makeData } from "./data.mjs";
import { reference, compare } from "./check.mjs";
import { createOurEngine, oursContender, THREADS } from "./ours.mjs";
import { configureOrt, ortContender, ONNX_MOMENTUM, ort } from "./ort.mjs";

const cfg = JSON.parse(process.argv[2]);
const out = { threads: THREADS, shapes: [], failures: [] };
configureOrt(THREADS);
try {
  const simd = await createOurEngine("simd");
  const mt = await createOurEngine("simd-threads");
  for (const s of cfg.shapes) {
    const spec = { ...s, eps: cfg.eps, momentum: cfg.momentum };
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = makeData(s.shape, s.layout, 11);
    const o = await ortContender(spec, data);
    const a = oursContender(simd, spec, data, "copy");
    const b = oursContender(mt, spec, data, "copy");
    const entry = { name: s.name, elems: n, ortNumThreads: ort.env.wasm.numThreads, ops: {} };
    entry.check = compare(await o.check(), reference(spec, data, "onnx", ONNX_MOMENTUM));
    if (!entry.check.ok) out.failures.push(`${s.name} ORT 2 threads numerics ${JSON.stringify(entry.check.errs)}`);
    for (const op of ["eval", "train"]) {
      if (!o[op]) { entry.ops[op] = { error: o.trainError }; continue; }
      const m = await measure([
        { id: `ort-wasm(${THREADS} threads)`, fn: o[op] },
        { id: "ours simd copy", fn: a[op] },
        { id: `ours simd-threads(${THREADS}) copy`, fn: b[op] },
      ], cfg.plan);
      entry.ops[op] = Object.fromEntries([...m].map(([id, r]) => [id, { medianMs: r.median * 1e3, reps: r.reps, melems: n / r.median / 1e6 }]));
    }
    o.free(); a.free(); b.free();
    out.shapes.push(entry);
    console.log(`  ${s.name}: ORT(${THREADS}t) eval ${entry.ops.eval[`ort-wasm(${THREADS} threads)`].medianMs.toFixed(3)} ms vs ours simd copy ${entry.ops.eval["ours simd copy"].medianMs.toFixed(3)} ms`);
  }
} catch (e) {
  out.failures.push(String(e?.stack ?? e).split("\n").slice(0, 3).join(" "));
}
fs.writeFileSync(cfg.file, JSON.stringify(out));
process.exit(0);
