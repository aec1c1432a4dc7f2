/**
 * Real headless Chromium (Debian's, never a downloaded one): the package loads straight
 * from dist/ and pkg/ as ES modules. In a cross-origin isolated page a Web Worker gets
 * the simd-threads build and the main thread the simd build; without isolation both get
 * simd. Every run is checked against the ONNX conformance data.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser } from "playwright-core";
import { loadConformance } from "./conformance.js";
import { serve } from "./serve.js";
import { expectClose } from "./close.js";

const CHROMIUM = "/usr/bin/chromium";
const cases = loadConformance().map((c) => ({
  shape: c.x.dims, x: c.x.data, scale: c.scale.data, bias: c.bias.data, mean: c.mean.data, var: c.var.data,
  epsilon: c.epsilon, momentum: c.momentum, training: c.training, expected: c,
}));

// CI installs chromium (scripts/setup.sh --browser); a missing browser there is a failure.
const skip = !existsSync(CHROMIUM) && process.env.CI !== "true";

describe.skipIf(skip)("in Chromium", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
    });
  });
  afterAll(async () => browser?.close());

  async function runIn(isolated: boolean, where: "onMain" | "inWorker") {
    const server = await serve(isolated);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    try {
      await page.goto(`${server.url}/test/browser/index.html`);
      await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
      const isolatedSeen = await page.evaluate(() => crossOriginIsolated);
      expect(isolatedSeen).toBe(isolated);
      const payload = cases.map(({ expected: _e, ...c }) => c);
      const result = await page.evaluate(([fn, cs]) => (window as never)[fn as string](cs), [where, payload] as const);
      expect(errors).toEqual([]);
      return result as { info: { build: string; threads: number }; outputs: { y: number[]; mean?: number[]; var?: number[] }[]; bigMean: number[] };
    } finally {
      await page.close();
      await server.close();
    }
  }

  function checkOutputs(r: Awaited<ReturnType<typeof runIn>>) {
    cases.forEach((c, i) => {
      expectClose(`${c.expected.name} y`, r.outputs[i].y, c.expected.y.data);
      if (c.training) {
        expectClose(`${c.expected.name} running mean`, r.outputs[i].mean!, c.expected.outputMean!.data);
        expectClose(`${c.expected.name} running var`, r.outputs[i].var!, c.expected.outputVar!.data);
      }
    });
    expect(r.bigMean).toHaveLength(8);
  }

  it("cross-origin isolated: a Web Worker runs simd-threads", async () => {
    const r = await runIn(true, "inWorker");
    expect(r.info).toEqual({ build: "simd-threads", threads: 2 });
    checkOutputs(r);
    const main = await runIn(true, "onMain");
    expect(main.info.build).toBe("simd"); // the main thread may not block
    checkOutputs(main);
    expectClose("threaded vs simd mean", r.bigMean, main.bigMean, 1e-6, 1e-6);
  });

  it("not isolated: simd in a worker too", async () => {
    const r = await runIn(false, "inWorker");
    expect(r.info.build).toBe("simd");
    checkOutputs(r);
  });
});
