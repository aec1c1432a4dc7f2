#!/usr/bin/env node
// Mutation check: proves the test suite notices wrong numbers. Each mutation wraps one
// exported function of the built package (dist/layers/functional.js) so that its first
// output element becomes NaN, runs the numeric test files, and expects them to FAIL;
// dist/ is restored afterwards, whatever happens. Not part of `npm test` (it runs the
// suites several times); run after a build:
//
//   node scripts/mutation-check.mjs            # every mutation, the default test files
//   node scripts/mutation-check.mjs test/builds.test.ts   # only these test files
//
// Exit status 0 when every mutation was caught (killed), 1 when one survived.
import { readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const target = `${root}dist/layers/functional.js`;
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ["test/builds.test.ts", "test/accuracy.test.ts", "test/module.test.ts", "test/gradcheck.test.ts", "test/workers.test.ts"];

// fn: the exported function to wrap; field: which output gets a NaN (undefined = the result itself).
const mutations = [
  { name: "NaN in train y[0]", fn: "batchNormTrainOn", field: "y" },
  { name: "NaN in eval y[0]", fn: "batchNormEvalOn", field: undefined },
  { name: "NaN in backward dx[0]", fn: "batchNormBackwardOn", field: "dx" },
  { name: "all three at once (the issue's patch)", fn: ["batchNormTrainOn", "batchNormEvalOn", "batchNormBackwardOn"], field: ["y", undefined, "dx"] },
];

function wrap(src, fn, field) {
  const decl = `export function ${fn}(`;
  if (!src.includes(decl)) throw new Error(`${target} has no "${decl}": update scripts/mutation-check.mjs`);
  const out = field === undefined ? "r" : `r.${field}`;
  return (
    src.replace(decl, `function __unmutated_${fn}(`) +
    `\nexport function ${fn}(...a) { const r = __unmutated_${fn}(...a); const o = ${out};` +
    ` if (o instanceof Float32Array) o[0] = NaN; else o.view[0] = NaN; return r; }\n`
  );
}

const original = readFileSync(target, "utf8");
const restore = () => writeFileSync(target, original);
process.on("SIGINT", () => { restore(); process.exit(130); });

let survived = 0;
try {
  for (const m of mutations) {
    const fns = [m.fn].flat();
    const fields = Array.isArray(m.field) ? m.field : [m.field];
    writeFileSync(target, fns.reduce((src, fn, i) => wrap(src, fn, fields[i]), original));
    const r = spawnSync("npx", ["vitest", "run", ...files], { cwd: root, encoding: "utf8" });
    restore();
    const out = (r.stdout + r.stderr).replace(/\x1b\[[0-9;]*m/g, "");
    const summary = out.match(/Tests\s+(.*)/)?.[1] ?? "no summary";
    const failedFiles = [...new Set([...out.matchAll(/(?:FAIL|❯)\s+(test\/[\w.-]+\.test\.ts)/g)].map((x) => x[1]))];
    const killed = r.status !== 0 && /failed/.test(summary);
    if (!killed) survived++;
    console.log(`${killed ? "killed  " : "SURVIVED"} ${m.name}: ${summary}${failedFiles.length ? `; failing files: ${failedFiles.join(", ")}` : ""}`);
  }
} finally {
  restore();
}
console.log(survived === 0 ? "every mutation was caught" : `${survived} mutation(s) survived: the tests do not check those outputs`);
process.exit(survived === 0 ? 0 : 1);
