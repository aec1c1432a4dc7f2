/**
 * Real headless Chromium and Firefox (Debian's, never downloaded ones; see browsers.ts):
 * the package loads straight from dist/ and pkg/ as ES modules. In a cross-origin isolated page a Web Worker gets
 * the simd-threads build and the main thread the simd build; without isolation both get
 * simd. Every run is checked against the ONNX conformance data.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROWSERS, launch, type TestBrowser } from "./browsers.js";
import { loadConformance } from "./conformance.js";
import { serve } from "./serve.js";
import { expectClose } from "./close.js";

const cases = loadConformance().map((c) => ({
  shape: c.x.dims, x: c.x.data, scale: c.scale.data, bias: c.bias.data, mean: c.mean.data, var: c.var.data,
  epsilon: c.epsilon, momentum: c.momentum, training: c.training, expected: c,
}));

describe.each(BROWSERS)("in $name", (spec) => {
  let browser: TestBrowser;
  beforeAll(async () => {
    if (!spec.skip) browser = await launch(spec);
  });
  afterAll(async () => browser?.close());

  async function runIn(isolated: boolean, where: "onMain" | "inWorker") {
    const server = await serve(isolated);
    const page = await browser.newPage();
    try {
      await page.goto(`${server.url}/test/browser/index.html`);
      await page.waitFor(() => (window as unknown as { ready?: boolean }).ready === true, 30_000);
      // The page really runs in the engine under test (not, say, a fallback browser).
      const ua = await page.evaluate(() => navigator.userAgent, null);
      expect(ua).toMatch(spec.name === "firefox" ? /Firefox\/\d+/ : /Chrome\/\d+/);
      const isolatedSeen = await page.evaluate(() => crossOriginIsolated, null);
      expect(isolatedSeen).toBe(isolated);
      const payload = cases.map(({ expected: _e, ...c }) => c);
      const result = await page.evaluate(([fn, cs]) => (window as unknown as Record<string, (c: unknown) => unknown>)[fn](cs), [where, payload] as const);
      expect(page.errors).toEqual([]);
      const r = result as { info: { build: string; threads: number }; outputs: { y: number[]; mean?: number[]; var?: number[] }[]; bigMean: number[]; tries?: string[][] };
      // A worker start that needed a fresh worker passes (that is what startWithDeadlines is
      // for) but is worth seeing, with how far each try got.
      if (r.tries && r.tries.length > 1) console.log(`${spec.name}: the worker started on try ${r.tries.length}; stages: ${JSON.stringify(r.tries)}`);
      return r;
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

  it.skipIf(spec.skip)("cross-origin isolated: a Web Worker runs simd-threads", async () => {
    const r = await runIn(true, "inWorker");
    expect(r.info).toEqual({ build: "simd-threads", threads: 2 });
    checkOutputs(r);
    const main = await runIn(true, "onMain");
    expect(main.info.build).toBe("simd"); // the main thread may not block
    checkOutputs(main);
    expectClose("threaded vs simd mean", r.bigMean, main.bigMean, 1e-6, 1e-6);
  });

  it.skipIf(spec.skip)("not isolated: simd in a worker too", async () => {
    const r = await runIn(false, "inWorker");
    expect(r.info.build).toBe("simd");
    checkOutputs(r);
  });
});
