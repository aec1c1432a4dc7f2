/**
 * The browsers the browser tests run in, behind one small interface: Debian's Chromium
 * driven by playwright-core (CDP) and Debian's Firefox ESR driven by puppeteer-core
 * (WebDriver BiDi). Neither tool downloads a browser. playwright-core cannot drive a stock
 * Firefox (it needs its own patched build) and Firefox refuses CDP, hence two drivers.
 *
 * A test file loops over {@link BROWSERS} and uses {@link launch}; the interface covers only
 * what the tests need (navigate, evaluate, wait for a condition, collect page errors,
 * screenshot), so the two drivers' different signatures stay in this file.
 */
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import puppeteer from "puppeteer-core";

export type BrowserName = "chromium" | "firefox";

export interface BrowserSpec {
  name: BrowserName;
  executablePath: string;
  /**
   * Skip this browser's tests: only when it is not installed AND we are not in CI. CI
   * installs both (scripts/setup.sh --browser), so there a missing browser fails the run.
   */
  skip: boolean;
}

const PATHS: Record<BrowserName, string> = { chromium: "/usr/bin/chromium", firefox: "/usr/bin/firefox-esr" };

export const BROWSERS: BrowserSpec[] = (Object.keys(PATHS) as BrowserName[]).map((name) => ({
  name,
  executablePath: PATHS[name],
  skip: !existsSync(PATHS[name]) && process.env.CI !== "true",
}));

export interface TestPage {
  goto(url: string): Promise<void>;
  /** Runs `fn(arg)` in the page (`arg` must be JSON-like) and returns its awaited result. */
  evaluate<A, R>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  /** Resolves once `fn()` is truthy in the page, polling every 100 ms; rejects after `timeoutMs`. */
  waitFor(fn: () => unknown, timeoutMs: number): Promise<void>;
  /** Types `value` into the input matched by `selector` (replacing what it held). */
  fill(selector: string, value: string): Promise<void>;
  /** Clicks the element matched by `selector`. */
  click(selector: string): Promise<void>;
  /** Uncaught errors of the page so far (not of its workers: those reach the page's handlers). */
  readonly errors: string[];
  screenshot(path: string): Promise<void>;
  close(): Promise<void>;
}

export interface TestBrowser {
  readonly name: BrowserName;
  newPage(viewport?: { width: number; height: number }): Promise<TestPage>;
  close(): Promise<void>;
}

const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

// puppeteer's Firefox profile already turns off updates, telemetry, safe browsing and the
// first-run pages; these close the remaining network paths a test machine has no use for.
const FIREFOX_PREFS = {
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "browser.region.network.url": "",
  "extensions.getAddons.cache.enabled": false,
  "media.gmp-manager.url": "",
};

export async function launch(spec: BrowserSpec): Promise<TestBrowser> {
  return spec.name === "chromium" ? launchChromium(spec.executablePath) : launchFirefox(spec.executablePath);
}

async function launchChromium(executablePath: string): Promise<TestBrowser> {
  const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  return {
    name: "chromium",
    async newPage(viewport) {
      const page = await browser.newPage(viewport ? { viewport } : {});
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      return {
        errors,
        goto: async (url) => void (await page.goto(url)),
        evaluate: (fn, arg) => page.evaluate(fn as never, arg) as never,
        waitFor: async (fn, timeout) => void (await page.waitForFunction(fn, undefined, { timeout, polling: 100 })),
        fill: (selector, value) => page.fill(selector, value),
        click: (selector) => page.click(selector),
        screenshot: async (path) => void (await page.screenshot({ path, fullPage: true })),
        close: () => page.close(),
      };
    },
    close: () => browser.close(),
  };
}

async function launchFirefox(executablePath: string): Promise<TestBrowser> {
  const browser = await puppeteer.launch({ browser: "firefox", executablePath, headless: true, extraPrefsFirefox: FIREFOX_PREFS });
  return {
    name: "firefox",
    async newPage(viewport) {
      const page = await browser.newPage();
      if (viewport) await page.setViewport(viewport);
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      return {
        errors,
        goto: async (url) => void (await page.goto(url)),
        evaluate: (fn, arg) => page.evaluate(fn as never, arg) as never,
        waitFor: async (fn, timeout) => void (await page.waitForFunction(fn, { timeout, polling: 100 })),
        fill: (selector, value) => page.locator(selector).fill(value),
        click: (selector) => page.click(selector),
        screenshot: async (path) => void (await page.screenshot({ path: path as `${string}.png`, fullPage: true })),
        close: () => page.close(),
      };
    },
    close: () => browser.close(),
  };
}
