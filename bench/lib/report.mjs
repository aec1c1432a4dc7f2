// Writing the results: JSON (everything), a markdown report (tables of medians,
// ratios to each peer and to the copy limit), and an SVG plot of the sweep.
import fs from "node:fs";
import path from "node:path";

const OPS = ["eval", "train", "backward", "step"];
const OP_TITLE = { eval: "eval fwd", train: "train fwd", backward: "backward", step: "train step" };
const LIMIT_IDS = ["copy: TypedArray.set", "copy: wasm memory.copy"];

const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
/** A time with its unit: ms, or µs below 0.01 ms. */
const fmtT = (ms) => (ms >= 0.01 ? `${fmtMs(ms)} ms` : `${(ms * 1e3).toPrecision(2)} µs`);
const fmtRate = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtX = (r) => (Number.isFinite(r) ? `×${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)}` : "–");
const pct = (f) => `${(100 * f).toFixed(0)}%`;
const fmtBytes = (b) => {
  const [v, u] = b >= 2 ** 20 ? [b / 2 ** 20, "MiB"] : b >= 1024 ? [b / 1024, "KiB"] : [b, "B"];
  return `${Number.isInteger(v) ? v : v.toFixed(2)} ${u}`;
};
const row = (cells) => `| ${cells.join(" | ")} |`;
const table = (head, rows) => [row(head), row(head.map(() => "---")), ...rows.map(row)].join("\n");

/** The copy limit of one comparison: the faster of the two copies, in GB/s. */
function limitOf(opRes) {
  const g = LIMIT_IDS.map((id) => opRes?.[id]?.gbps).filter(Number.isFinite);
  return g.length ? Math.max(...g) : NaN;
}

function oursIds(shape) {
  const any = shape.ops.eval ?? Object.values(shape.ops)[0] ?? {};
  return Object.keys(any).filter((id) => id.startsWith("ours "));
}
const peerIds = (shape) => {
  const ids = new Set();
  for (const op of OPS) for (const id of Object.keys(shape.ops[op] ?? {})) if (!id.startsWith("ours ") && !id.startsWith("copy:")) ids.add(id);
  return [...ids];
};

/** The lines summarising one shape: key ratios (used at the top of the report). */
function keyRatios(shape) {
  const lines = [];
  const ours = oursIds(shape);
  const yard = ["simd resident", `simd-threads`].map((k) => ours.find((id) => id.includes(k) && id.endsWith("resident"))).filter(Boolean);
  const yardCopy = yard.map((id) => id.replace(/resident$/, "copy"));
  for (const op of OPS) {
    const res = shape.ops[op];
    if (!res || !yard.every((id) => res[id])) continue;
    const lim = limitOf(res);
    const parts = [`**${OP_TITLE[op]}**: ours ${yard.map((id) => `${id.replace(/^ours | resident$/g, "")} ${fmtT(res[id].medianMs)} (${pct(res[id].gbps / lim)} of copy limit)`).join(", ")}`];
    for (const p of peerIds(shape)) {
      const pr = res[p];
      if (!pr) continue;
      const ys = p.startsWith("ort") ? yardCopy : yard;
      parts.push(`${p} ${ys.map((id) => fmtX(pr.medianMs / res[id]?.medianMs)).join(" / ")}${p.startsWith("ort") ? " (vs our copy path: ORT copies too)" : ""}`);
    }
    lines.push(`- ${parts.join("; ")}`);
  }
  if (lines.length) lines.unshift("Ratios are peer time / ours, for ours simd / simd-threads(2):", "");
  return lines;
}

export function markdown(res) {
  const m = res.meta.machine;
  const L = [];
  L.push(`# batchnorm-wasm benchmark (${res.meta.mode})`, "");
  L.push(`${res.meta.date} · ${m.cpu}, ${m.cores} logical cores (availableParallelism ${m.availableParallelism}), ${m.memoryGiB} GiB · ` +
    `caches ${Object.entries(m.caches).map(([k, v]) => `${k} ${v}`).join(", ") || "unknown"} · Node ${m.node} (V8 ${m.v8}) · ${m.platform} · ` +
    `load average at start ${m.load.join(" / ")} · run took ${res.meta.durationS} s`);
  L.push("", `Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(", ")}.`);
  const p = res.meta.plan;
  L.push("", "**Method.** Each comparison (one shape, one operation) runs in this one process: every contender is warmed up " +
    `(${p.warmup} calls), its inner loop is calibrated to at least ${p.minRepMs} ms per repetition, then the repetitions go ` +
    `round-robin (${p.reps} per contender; tfjs-cpu on tensors above ${p.slowAbove} elements: at most ${p.slowReps}, and fewer where one call ` +
    `takes over a second (${p.slowBudgetMs / 1000} s per op, its warm-up call counted as the first), marked †), with a full GC ` +
    "before each. Reported: the median time per call; Melem/s = elements / median seconds; ratios = peer median / our median " +
    "(×2 = ours is twice as fast); the machine is shared and noisy, so the absolute times are indications, the ratios the result. " +
    `Copy limit = the faster of TypedArray.prototype.set and wasm memory.copy of the same bytes (8 B/elem moved), measured in the same ` +
    `round-robin; a kernel's fraction of it is computed from its minimal traffic (eval ${res.meta.traffic.eval}, train forward ` +
    `${res.meta.traffic.train}, backward ${res.meta.traffic.backward}, step ${res.meta.traffic.step} B/elem). ` +
    "\"resident\": WasmTensor arguments (zero copy); \"copy\": Float32Array arguments copied into wasm memory and back on every call. " +
    `Threads: simd-threads uses a ${res.meta.threads}-thread pool; the copy limit is single-threaded.`);
  if (res.failures.length) L.push("", `**Harness failures (${res.failures.length}):**`, "", ...res.failures.map((f) => `- ${f.split("\n")[0]}`));

  if (res.shapes.length) {
    L.push("", "## Key ratios", "");
    for (const s of res.shapes.slice(0, 2)) L.push(`**${s.name}**`, "", ...keyRatios(s), "");
  }

  if (res.startup?.ours && Object.keys(res.startup.ours).length) {
    L.push("## Start-up", "", "Cold `createEngine()` in fresh processes (a second `createEngine()` of a build in one process returns " +
      "the same wasm-bindgen instance, so each run is its own process; `dist/index.js` already imported).", "");
    L.push(table(["build", "createEngine() median (ms)", "min (ms)", "first eval call after it (ms)", "runs", "threads", "in this process (ms)"],
      Object.entries(res.startup.ours).map(([b, r]) => [b, r.createMedianMs.toFixed(1), r.createMinMs.toFixed(1),
        r.firstCallMedianMs.toFixed(2), r.runs, r.threads, r.inProcessMs?.toFixed(1) ?? "–"])));
    if (Object.keys(res.startup.peers ?? {}).length) {
      L.push("", "Peers (once per process, for information): " +
        Object.entries(res.startup.peers).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join("; ") + ".");
    }
    L.push("");
  }

  if (res.memory.length) {
    const r0 = res.memory[0];
    L.push(`## Memory: ${r0.steps} training steps (train forward + backward) on (${r0.shape})`, "");
    L.push(table(["build", "path", "wasm memory before → after (bytes)", "JS heap used (MiB)", "JS heap reserved (MiB)", "RSS (MiB)", "flat", "µs/step"],
      res.memory.map((r) => [r.build, r.path, `${r.wasmBefore} → ${r.wasmAfter}`, `${r.heapUsedBeforeMB} → ${r.heapUsedAfterMB}`,
        `${r.heapTotalBeforeMB} → ${r.heapTotalAfterMB}`, `${r.rssBeforeMB} → ${r.rssAfterMB}`, r.flat ? "yes" : "**NO**", r.stepUs])));
    L.push("", "Measured before the large shapes run (so wasm memory has not been grown by them), after a warm-up of a tenth as many steps; " +
      "memory figures after a full GC; RSS is the whole process's. Flat = no wasm memory growth and JS heap in use within 1 MiB " +
      "(RSS also follows V8's reserved heap, which grows with the allocation rate, not with live data). The copy path stages its " +
      "Float32Arrays through scratch allocations on every call.", "");
  }

  for (const s of res.shapes) {
    L.push(`## ${s.name}: ${s.elems.toLocaleString("en")} elements, ${fmtBytes(s.bytes)} per tensor`, "");
    const ids = [...new Set(OPS.flatMap((op) => Object.keys(s.ops[op] ?? {})))];
    L.push("Median time per call · Melem/s", "");
    L.push(table(["contender", ...OPS.map((o) => OP_TITLE[o])], ids.map((id) => [id, ...OPS.map((op) => {
      const r = s.ops[op]?.[id];
      if (!r) return "–";
      return `${fmtT(r.medianMs)} · ${fmtRate(r.melems)}${r.reps < res.meta.plan.reps ? ` (${r.reps} reps†)` : ""}`;
    })])));
    const ours = oursIds(s);
    const peers = peerIds(s);
    if (peers.length && ours.length) {
      L.push("", "Ratios: peer median / our median (> 1: ours faster)", "");
      const rows = [];
      for (const pid of peers) {
        for (const op of OPS) {
          const pr = s.ops[op]?.[pid];
          if (!pr) continue;
          rows.push([pid, OP_TITLE[op], ...ours.map((oid) => fmtX(pr.medianMs / s.ops[op]?.[oid]?.medianMs))]);
        }
      }
      L.push(table(["peer", "op", ...ours.map((o) => o.replace(/^ours /, ""))], rows));
    }
    if (ours.length && s.bytes < 4096) {
      L.push("", "(No bandwidth fractions: at this size every call is overhead, not traffic.)");
    } else if (ours.length) {
      L.push("", "Fraction of the copy limit at minimal traffic (GB/s of minimal traffic)", "");
      const rows = ours.map((id) => [id, ...OPS.map((op) => {
        const r = s.ops[op]?.[id];
        return r ? `${pct(r.gbps / limitOf(s.ops[op]))} · ${r.gbps.toFixed(1)}` : "–";
      })]);
      rows.push(["copy limit (GB/s)", ...OPS.map((op) => (Number.isFinite(limitOf(s.ops[op])) ? limitOf(s.ops[op]).toFixed(1) : "–"))]);
      L.push(table(["ours", ...OPS.map((o) => `${OP_TITLE[o]} (${res.meta.traffic[o]} B/elem)`)], rows));
    }
    const notes = Object.entries(s.notes ?? {});
    const checks = Object.entries(s.checks ?? {});
    if (notes.length) L.push("", ...notes.map(([k, v]) => `- ${k}: ${v}`));
    if (checks.length) {
      const worst = Math.max(...checks.flatMap(([, c]) => Object.values(c.errs).filter((e) => typeof e === "number")));
      const bad = checks.filter(([, c]) => !c.ok).map(([k]) => k);
      L.push(`- numerical check against the float64 plain-JS reference: ${checks.length} contenders, ` +
        (bad.length ? `**MISMATCH: ${bad.join(", ")}**` : `all agree (worst scaled error ${worst.toExponential(1)})`));
    }
    L.push("");
  }

  if (res.sweep) {
    const ser = res.sweep.series;
    const ids = Object.keys(ser);
    L.push(`## Sweep: throughput (Melem/s) by tensor size`, "", `Shape ${res.sweep.shape}. See throughput.svg.`, "");
    L.push(table(["x size", ...ids], res.sweep.sizesBytes.map((b) => [fmtBytes(b), ...ids.map((id) => {
      const r = ser[id].find((q) => q.bytes === b);
      return r ? fmtRate(r.melems) : "–";
    })])));
    L.push("");
  }

  if (res.ortThreads) {
    const o = res.ortThreads;
    L.push(`## onnxruntime-web with ${o.threads} threads (child process)`, "");
    const rows = [];
    for (const s of o.shapes) {
      const main = res.shapes.find((q) => q.name === s.name);
      for (const op of ["eval", "train"]) {
        const r = s.ops[op];
        if (!r || r.error) { rows.push([s.name, op, r?.error ?? "–", "", "", "", ""]); continue; }
        const ort2 = r[`ort-wasm(${o.threads} threads)`], simd = r["ours simd copy"], mt = r[`ours simd-threads(${o.threads}) copy`];
        const m1 = main?.ops[op]?.["ort-wasm(1 thread)"], ms = main?.ops[op]?.["ours simd copy"];
        const r1 = m1 && ms ? m1.medianMs / ms.medianMs : NaN;
        const r2 = ort2.medianMs / simd.medianMs;
        rows.push([s.name, op, fmtT(ort2.medianMs), fmtX(r2), fmtX(ort2.medianMs / mt.medianMs), fmtX(r1), fmtX(r1 / r2)]);
      }
    }
    L.push(table(["shape", "op", `ORT ${o.threads} threads`, "ORT / ours simd copy", `ORT / ours simd-threads(${o.threads}) copy`,
      "ORT 1 thread / ours simd copy (main process)", "implied ORT 2-thread speed-up"], rows));
    L.push("", "ORT's thread count is fixed per process, so 1 vs 2 threads are compared through the same yardstick (our simd copy path) in each process.", "");
  }
  if (res.fused?.length) {
    L.push("## Fused activation: training step (forward + backward), resident", "");
    const rows = [];
    const x2 = (r) => (Number.isFinite(r) ? `×${r.toFixed(2)}` : "–");
    for (const f of res.fused) {
      const builds = [...new Set(Object.keys(f.ms).filter((k) => k.endsWith(" BN step")).map((k) => k.slice(0, -" BN step".length)))];
      for (const b of builds) {
        const t = (k) => f.ms[`${b} ${k}`];
        const base = t("BN step");
        rows.push([f.name, b, fmtT(base), x2(t("BN+ReLU fused step") / base), x2(t("BN, ReLU unfused step") / base),
          x2(t("BN+add+ReLU fused step") / base), x2(t("BN, add+ReLU unfused step") / base)]);
      }
      const tb = f.ms["tfjs-wasm eval BN"], tr = f.ms["tfjs-wasm eval tf.relu(BN)"];
      if (tb && tr) rows.push([f.name, "tfjs-wasm (eval only)", fmtT(tb), x2(tr / tb), "", "", ""]);
    }
    L.push(table(["shape", "build", "BN step", "BN+ReLU fused / BN", "BN, ReLU unfused / BN", "BN+add+ReLU fused / BN", "BN, add+ReLU unfused / BN"], rows));
    L.push("", "Unfused: BN, then a separate ReLU (add + ReLU) pass and a separate ReLU-gradient pass, in wasm. " +
      "Fused: the ReLU (and add) in the normalisation pass, its mask (from the saved output y) in both backward passes. " +
      "tfjs-wasm row: eval forward only, tf.relu(BN) / BN.", "");
  }
  return L.join("\n") + "\n";
}

// ---------------------------------------------------------------- SVG
const COLORS = {
  "ours scalar": "#8c8c8c", "ours simd-threads": "#d62728", "ours simd": "#1f77b4",
  "tfjs-wasm": "#ff7f0e", "ort-wasm": "#2ca02c", "plain JS": "#9467bd",
};
const colorOf = (id) => {
  for (const [k, c] of Object.entries(COLORS)) if (id.startsWith(k)) return c;
  return "#333";
};
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function svg(res) {
  const sw = res.sweep;
  if (!sw) return null;
  const S = sw.series;
  const sizes = sw.sizesBytes;
  const limit = sizes.map((b) => {
    const v = LIMIT_IDS.map((id) => S[id]?.find((r) => r.bytes === b)?.melems).filter(Number.isFinite);
    return v.length ? Math.max(...v) : NaN;
  });
  const traffic = res.meta.traffic;
  const panels = ["eval", "train", "backward"].map((op) => {
    const lines = Object.keys(S).filter((id) => id.endsWith(` ${op}`) || (op === "eval" && id.includes(" eval ")))
      .map((id) => ({ id, pts: S[id].map((r) => [r.bytes, r.melems]), dash: id.includes("copy path") ? "5,3" : null }));
    lines.push({ id: `copy limit at ${traffic[op]} B/elem`, pts: sizes.map((b, i) => [b, (limit[i] * 8) / traffic[op]]), dash: "2,3", color: "#000" });
    return { op, lines };
  });
  const all = panels.flatMap((p) => p.lines.flatMap((l) => l.pts.map((q) => q[1]))).filter((v) => Number.isFinite(v) && v > 0);
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const pw = 380, ph = 330, top = 64, left = 70, gap = 48;
  const W = left + 3 * pw + 2 * gap + 20, H = top + ph + 100;
  const xMin = Math.log2(sizes[0]), xMax = Math.log2(sizes.at(-1));
  const X = (b, i) => left + i * (pw + gap) + ((Math.log2(b) - xMin) / Math.max(1, xMax - xMin)) * pw;
  const Y = (v) => top + ph - ((Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * ph;
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  const m = res.meta.machine;
  o.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">batchnorm-wasm: throughput vs tensor size, ${esc(sw.shape)}</text>`);
  o.push(`<text x="${left}" y="40" fill="#555">${esc(`${m.cpu}, ${m.cores} cores, Node ${m.node}; medians of ${res.meta.plan.sweepReps} round-robin reps; ${res.meta.date.slice(0, 10)}. Dashed verticals: cache sizes (the working set is 2-3 tensors).`)}</text>`);
  const caches = Object.entries(m.caches ?? {}).map(([k, v]) => {
    const n = parseInt(v, 10) * (/M/i.test(v) ? 2 ** 20 : /K/i.test(v) ? 1024 : 1);
    return [k, n];
  }).filter(([, n]) => n >= sizes[0] && n <= sizes.at(-1));
  panels.forEach((p, i) => {
    const x0 = left + i * (pw + gap);
    o.push(`<text x="${x0 + pw / 2}" y="${top - 6}" text-anchor="middle" font-size="13" font-weight="bold">${OP_TITLE[p.op]}</text>`);
    for (let d = Math.log10(yMin); d <= Math.log10(yMax); d++) {
      for (const k of [1, 2, 5]) {
        const v = k * 10 ** d;
        if (v > yMax) break;
        o.push(`<line x1="${x0}" x2="${x0 + pw}" y1="${Y(v)}" y2="${Y(v)}" stroke="${k === 1 ? "#ccc" : "#eee"}"/>`);
        if (i === 0 && (k === 1 || Math.log10(yMax / yMin) <= 3)) o.push(`<text x="${x0 - 6}" y="${Y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`);
      }
    }
    sizes.forEach((b, j) => {
      if (j % 2 && sizes.length > 8) return;
      o.push(`<line x1="${X(b, i)}" x2="${X(b, i)}" y1="${top}" y2="${top + ph}" stroke="#f0f0f0"/>`);
      o.push(`<text x="${X(b, i)}" y="${top + ph + 14}" text-anchor="middle">${esc(fmtBytes(b).replace(" ", ""))}</text>`);
    });
    for (const [k, n] of caches) {
      o.push(`<line x1="${X(n, i)}" x2="${X(n, i)}" y1="${top}" y2="${top + ph}" stroke="#999" stroke-dasharray="6,4"/>`);
      o.push(`<text x="${X(n, i) + 3}" y="${top + 12}" fill="#777">${esc(k)}</text>`);
    }
    o.push(`<rect x="${x0}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
    for (const l of p.lines) {
      const pts = l.pts.filter((q) => Number.isFinite(q[1]) && q[1] > 0);
      if (!pts.length) continue;
      const c = l.color ?? colorOf(l.id);
      o.push(`<polyline fill="none" stroke="${c}" stroke-width="${l.id.startsWith("ours") ? 2.2 : 1.6}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""} points="${pts.map((q) => `${X(q[0], i).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(" ")}"><title>${esc(l.id)}</title></polyline>`);
      for (const q of pts) o.push(`<circle cx="${X(q[0], i).toFixed(1)}" cy="${Y(q[1]).toFixed(1)}" r="2" fill="${c}"/>`);
    }
  });
  o.push(`<text x="${left + (3 * pw + 2 * gap) / 2}" y="${top + ph + 32}" text-anchor="middle">tensor size (bytes of x; log scale)</text>`);
  o.push(`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle">Melem/s (log scale)</text>`);
  // Legend: every distinct line label, without the op suffix.
  const seen = new Map();
  for (const p of panels) for (const l of p.lines) {
    const key = l.id.startsWith("copy limit") ? "copy limit (faster of set / memory.copy) at the kernel's minimal traffic" : l.id.replace(/ (eval|train|backward)( \(.*\))?$/, (s0, _op, rest) => rest ?? "");
    if (!seen.has(key)) seen.set(key, { color: l.color ?? colorOf(l.id), dash: l.dash });
  }
  let lx = left, ly = top + ph + 56;
  for (const [k, v] of seen) {
    const w = 36 + k.length * 6.2;
    if (lx + w > W - 20) { lx = left; ly += 18; }
    o.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${v.color}" stroke-width="2.2"${v.dash ? ` stroke-dasharray="${v.dash}"` : ""}/>`);
    o.push(`<text x="${lx + 30}" y="${ly}">${esc(k)}</text>`);
    lx += w;
  }
  o.push("</svg>");
  return o.join("\n") + "\n";
}

export function writeReport(res, dir, prefix = "") {
  const files = [];
  const put = (name, text) => {
    const f = path.join(dir, prefix + name);
    fs.writeFileSync(f, text);
    files.push(path.relative(process.cwd(), f));
  };
  put("results.json", JSON.stringify(res, null, 1));
  put("results.md", markdown(res));
  const s = svg(res);
  if (s) put("throughput.svg", s);
  return files;
}
