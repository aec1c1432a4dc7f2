/**
 * The CNN example page end to end in Chromium and Firefox: build it with Vite, serve it
 * with `vite preview` (COOP/COEP, so the page is cross-origin isolated), train in the
 * page's Web Worker with and without BatchNorm2d, then a two-rate learning-rate sweep.
 * Checks the build the worker loaded, the accuracy reached and the chart drawn. Saves
 * test-results/cnn-<browser>.png.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { build, preview, type PreviewServer } from "vite";
import { BROWSERS, launch, type TestBrowser, type TestPage } from "./browsers.js";

const repo = fileURLToPath(new URL("..", import.meta.url));
const configFile = join(repo, "examples/cnn/vite.config.js");

interface Run { key: string; bn: boolean; lr: number; label: string; testAcc: number; testLoss: number; stepsPerSec: number; divergedAt: number | null }
interface PageState {
  state: string;
  error: string | null;
  info: { build: string; threads: number; crossOriginIsolated: boolean } | null;
  summary: { steps: number; runs: Run[] } | null;
  svg: string | null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

let server: PreviewServer;
let outDir: string;
let url: string;

beforeAll(async () => {
  if (BROWSERS.every((b) => b.skip)) return;
  outDir = mkdtempSync(join(tmpdir(), "cnn-page-"));
  await build({ configFile, logLevel: "error", build: { outDir, emptyOutDir: true } });
  const port = await freePort();
  server = await preview({ configFile, logLevel: "error", build: { outDir }, preview: { host: "127.0.0.1", port, strictPort: true, open: false } });
  url = `http://127.0.0.1:${port}/`;
});
afterAll(async () => {
  await server?.close();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

async function runOnPage(page: TestPage, query: string, timeout: number): Promise<PageState> {
  await page.goto(`${url}?${query}`);
  await page.waitFor(() => {
    const s = (window as unknown as { __cnn?: PageState }).__cnn;
    return s?.state === "done" || s?.state === "error";
  }, timeout);
  const s = await page.evaluate(() => (window as unknown as { __cnn: PageState }).__cnn, null);
  expect(s.error).toBeNull();
  expect(page.errors).toEqual([]);
  return s;
}

describe.each(BROWSERS)("CNN example page (vite build + preview) in $name", (spec) => {
  let browser: TestBrowser;
  beforeAll(async () => {
    if (!spec.skip) browser = await launch(spec);
  });
  afterAll(async () => browser?.close());

  it.skipIf(spec.skip)("trains with and without BatchNorm2d in a worker on simd-threads", async () => {
    const page = await browser.newPage({ width: 1120, height: 900 });
    try {
      const s = await runOnPage(page, "autostart=compare&steps=80&seed=42&lr=0.03", 120_000);
      expect(s.info).toMatchObject({ build: "simd-threads", threads: 2, crossOriginIsolated: true });
      expect(s.summary!.steps).toBe(80);
      const [bn, plain] = s.summary!.runs;
      expect([bn.bn, plain.bn]).toEqual([true, false]);
      console.log(`${spec.name}, 80 steps at lr 0.03: with BN test acc ${bn.testAcc.toFixed(3)} (${bn.stepsPerSec.toFixed(1)} steps/s), ` +
        `without ${plain.testAcc.toFixed(3)} (${plain.stepsPerSec.toFixed(1)} steps/s)`);
      expect(bn.testAcc).toBeGreaterThan(0.6);
      expect(plain.testAcc).toBeGreaterThan(0.3);
      expect(s.svg).toMatch(/^<svg[^>]*>.*<polyline/s);
      mkdirSync(join(repo, "test-results"), { recursive: true });
      await page.screenshot(join(repo, `test-results/cnn-${spec.name}.png`));
    } finally {
      await page.close();
    }
  });

  it.skipIf(spec.skip)("runs the learning-rate experiment and draws its chart", async () => {
    const page = await browser.newPage({ width: 1120, height: 900 });
    try {
      const s = await runOnPage(page, "autostart=sweep&steps=15&seed=42&lrs=0.01,0.1", 120_000);
      expect(s.summary!.runs.map((r) => [r.lr, r.bn])).toEqual([[0.01, true], [0.01, false], [0.1, true], [0.1, false]]);
      for (const r of s.summary!.runs) expect(r.testAcc).toBeGreaterThanOrEqual(0);
      expect(s.svg).toContain("lr 0.01: training loss");
      expect(s.svg).toContain("lr 0.1: training loss");
    } finally {
      await page.close();
    }
  });
});
