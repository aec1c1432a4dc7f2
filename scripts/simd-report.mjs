// Counts f32x4 instructions in the wasm builds: per kernel function in the simd build
// before wasm-opt (Rust symbol names intact), and in total in each shipped .wasm.
// Run after a build: node scripts/simd-report.mjs [--json]
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const wasmDis = `${root}node_modules/.bin/wasm-dis`;

function disassemble(file) {
  return execFileSync(wasmDis, [file], { encoding: "utf8", maxBuffer: 1 << 28 });
}

/** `_RNvNtCs..._14batchnorm_core7moments7moments` -> `moments::moments` (v0 mangling, roughly). */
function demangle(sym) {
  const at = sym.indexOf("batchnorm_core");
  if (at < 0) return sym;
  const parts = [];
  const re = /(\d+)([A-Za-z_][A-Za-z0-9_]*)/y;
  re.lastIndex = at + "batchnorm_core".length;
  for (let m; (m = re.exec(sym)); ) {
    const len = Number(m[1]);
    parts.push(m[2].slice(0, len));
    re.lastIndex = m.index + m[1].length + len;
  }
  const closure = sym.startsWith("$_RNC") ? " (closure)" : "";
  return (parts.join("::") || "batchnorm_core") + closure;
}

/** f32x4 instruction counts per function of a disassembled module. */
export function f32x4PerFunction(wat) {
  const counts = new Map();
  let fn = "";
  for (const line of wat.split("\n")) {
    const f = /^ \(func (\$\S+)/.exec(line);
    if (f) fn = f[1];
    const n = line.match(/f32x4\./g)?.length ?? 0;
    if (n) counts.set(fn, (counts.get(fn) ?? 0) + n);
  }
  return counts;
}

export function report() {
  const raw = `${root}target/wasm-simd/wasm32-unknown-unknown/release/batchnorm_wasm.wasm`;
  const perFunction = existsSync(raw)
    ? [...f32x4PerFunction(disassemble(raw))]
        .filter(([f]) => f.includes("batchnorm_core"))
        .map(([f, n]) => ({ function: demangle(f), f32x4: n }))
        .sort((a, b) => b.f32x4 - a.f32x4)
    : [];
  const shipped = {};
  for (const b of ["scalar", "simd", "simd-threads"]) {
    const wat = disassemble(`${root}pkg/${b}/batchnorm_bg.wasm`);
    shipped[b] = { f32x4: wat.match(/f32x4\./g)?.length ?? 0, v128: wat.match(/v128\./g)?.length ?? 0 };
  }
  return { perFunction, shipped };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = report();
  if (process.argv.includes("--json")) {
    console.log(JSON.stringify(r, null, 2));
  } else {
    console.log("f32x4 instructions per kernel function (simd build, before wasm-opt):");
    for (const { function: f, f32x4 } of r.perFunction) console.log(`  ${String(f32x4).padStart(4)}  ${f}`);
    console.log("Shipped builds (after wasm-opt), whole module:");
    for (const [b, c] of Object.entries(r.shipped)) console.log(`  ${b.padEnd(13)} f32x4: ${c.f32x4}, v128: ${c.v128}`);
  }
}
