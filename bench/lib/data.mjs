// Deterministic inputs shared by every contender of a comparison.
import { dimsOf } from "./plainjs.mjs";

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** x has a per-channel offset and spread (so normalising does something); dy ~ U(-1, 1). */
export function makeData(shape, layout, seed = 1) {
  const d = dimsOf(shape, layout);
  const rnd = mulberry32(seed);
  const C = d.channels;
  const off = Float32Array.from({ length: C }, () => 4 * rnd() - 2);
  const spread = Float32Array.from({ length: C }, () => 0.5 + 2 * rnd());
  const x = new Float32Array(d.size), dy = new Float32Array(d.size);
  for (let o = 0, i = 0; o < d.outer; o++) {
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < d.inner; k++, i++) {
        x[i] = off[c] + spread[c] * (2 * rnd() - 1);
        dy[i] = 2 * rnd() - 1;
      }
    }
  }
  return {
    x, dy,
    weight: Float32Array.from({ length: C }, () => 0.5 + rnd()),
    bias: Float32Array.from({ length: C }, () => rnd() - 0.5),
    runningMean: Float32Array.from({ length: C }, () => rnd() - 0.5),
    runningVar: Float32Array.from({ length: C }, () => 0.5 + rnd()),
  };
}
