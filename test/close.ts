import { expect } from "vitest";
import { worst } from "./reference.js";

/** Asserts elementwise |got - want| <= abs + rel * |want|, naming the first worst index. */
export function expectClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, abs = 1e-5, rel = 1e-4): void {
  const w = worst(got, want, abs, rel);
  const detail = w.at >= 0 ? `${name}[${w.at}]: got ${got[w.at]}, want ${want[w.at]} (${w.ratio.toFixed(2)}x tolerance)` : name;
  expect(w.ratio <= 1, detail).toBe(true);
}
