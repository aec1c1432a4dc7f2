/** The comparison helper behind every numeric assertion must be able to fail, NaN included. */
import { describe, expect, it } from "vitest";
import { worst } from "./reference.js";

describe("worst()", () => {
  it("is 0 for identical finite values and reports the worst element otherwise", () => {
    expect(worst([1, 2, 3], [1, 2, 3], 0, 0)).toEqual({ ratio: 0, at: -1 });
    expect(worst([1, 2.5, 3.1], [1, 2, 3], 0.1, 0)).toEqual({ ratio: 5, at: 1 });
  });

  it("treats NaN in got as a failure wherever it stands (it used to be forgotten by the next element)", () => {
    expect(worst([10, NaN, 1], [0, 1, 1], 1, 0)).toEqual({ ratio: Infinity, at: 1 });
    expect(worst([NaN, 1, 1], [1, 1, 1], 1, 0).ratio).toBe(Infinity);
    expect(worst([1, 1, NaN], [1, 1, 1], 1, 0).ratio).toBe(Infinity);
  });

  it("treats NaN or an infinity in want, or a mismatched infinity, as a failure", () => {
    expect(worst([1, 1], [1, NaN], 1, 0)).toEqual({ ratio: Infinity, at: 1 });
    expect(worst([Infinity], [1], 1, 1).ratio).toBe(Infinity);
    expect(worst([1], [-Infinity], 1, 1).ratio).toBe(Infinity);
    expect(worst([Infinity], [-Infinity], 1, 1).ratio).toBe(Infinity);
  });

  it("accepts the same non-finite value on both sides (the reference says so)", () => {
    expect(worst([NaN, Infinity, -Infinity, 2], [NaN, Infinity, -Infinity, 2], 0, 0)).toEqual({ ratio: 0, at: -1 });
  });

  it("compares within abs + rel * |want|", () => {
    expect(worst([101], [100], 0, 0.01).ratio).toBeCloseTo(1, 12);
    expect(worst([102], [100], 0, 0.01).ratio).toBeCloseTo(2, 12);
    expect(() => worst([1], [1, 2], 0, 0)).toThrow(/length/);
  });
});
