// The MNIST example page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): steps/s of 1 worker against 2 data-parallel workers, over shared
// memory and over MessagePorts, the page's plots drawing throughout, alternating runs.
//   node bench/mnist-page.mjs [--steps=1000] [--rounds=3] [--smoke]
// The page is built with Vite and served by `vite preview` (COOP/COEP: cross-origin
// isolated, so the "auto" transport is shared memory); `?transport=message` forces
// MessagePorts on the same page. Each worker loads the build the page picks
// (simd-threads, its pool sharing the cores out among the workers).
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build, preview } from "vite";
import { steadyFrom, steadyStepsPerSec } from "./lib/steady.mjs";

const arg = (k, d) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const smoke = process.argv.includes("--smoke");
const steps = arg("steps", smoke ? 10 : 1000);
const from = steadyFrom(steps);
const rounds = arg("rounds", smoke ? 1 : 3);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

const configFile = fileURLToPath(new URL("../examples/mnist/vite.config.js", import.meta.url));
const outDir = mkdtempSync(join(os.tmpdir(), "mnist-page-bench-"));
await build({ configFile, logLevel: "error", build: { outDir, emptyOutDir: true } });
const server = await preview({ configFile, logLevel: "error", build: { outDir }, preview: { host: "127.0.0.1", port: 0, open: false } });
const url = server.resolvedUrls.local[0];
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});

const cases = [
  { name: "1 worker", workers: 1, transport: "auto" },
  { name: "2 workers, shared memory", workers: 2, transport: "auto" },
  { name: "2 workers, MessagePorts", workers: 2, transport: "message" },
];
for (const c of cases) c.runs = [];
try {
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      const page = await browser.newPage({ viewport: { width: 1040, height: 680 } });
      try {
        await page.goto(`${url}?autostart=1&steps=${steps}&compare=0&seed=42&workers=${c.workers}&transport=${c.transport}`);
        await page.waitForFunction(() => ["done", "error"].includes(window.__mnist?.state), undefined, { timeout: 600_000, polling: 200 });
        const s = await page.evaluate(() => window.__mnist);
        if (s.error) throw new Error(`${c.name}: ${s.error}`);
        const bn = s.summary.results.bn;
        c.runs.push({
          whole: bn.stepsPerSec, steady: steadyStepsPerSec(bn.stepMs, from), share: s.summary.parallel.collectiveShare,
          transport: s.info.transport, build: `${s.info.build} (${s.info.threads} thread${s.info.threads === 1 ? "" : "s"})`,
          acc: bn.testAcc, agree: s.summary.replicasAgree,
        });
      } finally {
        await page.close();
      }
    }
  }
} finally {
  await browser.close();
  await server.close();
  rmSync(outDir, { recursive: true, force: true });
}

const version = browser.version();
console.log(`# ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, Chromium ${version} headless`);
console.log(`\n## MNIST page, batch 64, BN model, ${steps} steps per run, ${rounds} alternating runs each, median`);
console.log(`Whole: steps/s of the whole training; steady: steps ${from + 1}-${steps} of it (after V8's JIT warm-up).`);
console.log(`| run | transport | build per worker | steps/s, whole (runs) | speedup | steps/s, steady (runs) | speedup | rank 0 in collectives | test accuracy | replicas identical |`);
console.log(`|---|---|---|---|---|---|---|---|---|---|`);
const base = (f) => median(cases[0].runs.map(f));
for (const c of cases) {
  const m = (f) => median(c.runs.map(f));
  const list = (f) => c.runs.map((r) => f(r).toFixed(0)).join(", ");
  console.log(`| ${c.name} | ${c.workers === 1 ? "-" : c.runs[0].transport} | ${c.runs[0].build} | ${m((r) => r.whole).toFixed(0)} (${list((r) => r.whole)}) | ${(m((r) => r.whole) / base((r) => r.whole)).toFixed(2)}x | ${m((r) => r.steady).toFixed(0)} (${list((r) => r.steady)}) | ${(m((r) => r.steady) / base((r) => r.steady)).toFixed(2)}x | ${c.workers === 1 ? "-" : `${(100 * m((r) => r.share)).toFixed(0)}%`} | ${m((r) => r.acc).toFixed(4)} | ${c.runs.every((r) => r.agree)} |`);
}
console.log(`(load average at the end: ${os.loadavg().map((v) => v.toFixed(1)).join(", ")} on ${os.availableParallelism()} cores)`);
