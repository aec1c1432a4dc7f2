/**
 * startWithDeadlines (ts/parallel/start.ts): a try that stays silent past its deadline is
 * abandoned and a new one started; a failing try is abandoned and its error thrown (not
 * retried); when every try is late, WorkerError; a try that is ready in time is kept; a
 * bad list of deadlines is InvalidArgumentError before any try.
 * The Firefox case it exists for (a worker blocked inside `new Worker()`) is exercised by
 * test/mnist-e2e.test.ts, whose page starts its workers through it.
 */
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, StateError, WorkerError } from "../ts/engine/errors.js";
import { startWithDeadlines } from "../ts/parallel/start.js";

/** Tries that behave as `plan` says, in order; records which were abandoned. */
function tries(plan: Array<"silent" | "ready" | "fail">) {
  const abandoned: number[] = [];
  let n = 0;
  const attempt = () => {
    const i = n++;
    const ready = new Promise<number>((resolve, reject) => {
      if (plan[i] === "ready") setTimeout(() => resolve(i), 1);
      if (plan[i] === "fail") setTimeout(() => reject(new StateError(`try ${i} failed`)), 1);
    });
    return { ready, abandon: () => abandoned.push(i) };
  };
  return { attempt, abandoned, made: () => n };
}

describe("startWithDeadlines", () => {
  it("keeps a try that is ready in time", async () => {
    const t = tries(["ready"]);
    expect(await startWithDeadlines(t.attempt, [200, 200])).toBe(0);
    expect(t.made()).toBe(1);
    expect(t.abandoned).toEqual([]);
  });

  it("abandons a silent try at its deadline and starts another", async () => {
    const t = tries(["silent", "silent", "ready"]);
    expect(await startWithDeadlines(t.attempt, [10, 10, 200])).toBe(2);
    expect(t.abandoned).toEqual([0, 1]);
  });

  it("throws a failing try's error at once, without retrying", async () => {
    const t = tries(["fail", "ready"]);
    await expect(startWithDeadlines(t.attempt, [200, 200])).rejects.toThrow(/try 0 failed/);
    expect(t.made()).toBe(1);
    expect(t.abandoned).toEqual([0]);
  });

  it("rejects with WorkerError when every try is late, having abandoned each", async () => {
    const t = tries(["silent", "silent"]);
    await expect(startWithDeadlines(t.attempt, [5, 5])).rejects.toThrow(WorkerError);
    expect(t.abandoned).toEqual([0, 1]);
  });

  it.each([[[]], [[0]], [[100, -1]], [[NaN]], [[Infinity]]])("rejects deadlines %j with InvalidArgumentError, starting no try", async (deadlines) => {
    const t = tries(["ready"]);
    await expect(startWithDeadlines(t.attempt, deadlines)).rejects.toThrow(InvalidArgumentError);
    expect(t.made()).toBe(0);
  });
});
