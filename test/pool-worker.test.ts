/**
 * The pool's worker constructor (ts/engine/pool-worker.ts) with fake workers: it gives
 * wasm-bindgen-rayon the real worker; an error while the pool starts fails the start with
 * WorkerError and terminates every worker of it; settle() removes its listener, so an
 * error after the pool is up does nothing. (That a Node process still exits once the pool
 * is up is checked in init.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { WorkerError } from "../ts/engine/errors.js";
import { PoolStart, type PoolWorkerLike } from "../ts/engine/pool-worker.js";

type Listener = (ev: { data?: unknown; message?: string }) => void;

function fakeWorkers() {
  const made: Fake[] = [];
  class Fake implements PoolWorkerLike {
    readonly received: unknown[] = [];
    readonly listeners = new Map<string, Listener[]>();
    terminated = false;
    constructor(readonly url: URL | string) {
      made.push(this);
    }
    postMessage(data: unknown): void {
      this.received.push(data);
    }
    addEventListener(type: string, fn: Listener): void {
      this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
    }
    removeEventListener(type: string, fn: Listener): void {
      this.listeners.set(type, (this.listeners.get(type) ?? []).filter((f) => f !== fn));
    }
    emit(type: "message" | "error", ev: { data?: unknown; message?: string }): void {
      for (const f of this.listeners.get(type) ?? []) f(ev);
    }
    terminate(): void {
      this.terminated = true;
    }
  }
  return { Fake, made };
}

describe("the thread pool's worker stand-in", () => {
  it("gives the caller the real worker, made from the same URL and options", () => {
    const { Fake, made } = fakeWorkers();
    const start = new PoolStart(Fake);
    const w = new start.workerClass("pool.js", { type: "module" });
    expect(made.length).toBe(1);
    expect(w).toBe(made[0]);
    expect(String(made[0].url)).toBe("pool.js");
  });

  it("fails the start with WorkerError on a worker's error, terminating every worker of the start", async () => {
    const { Fake, made } = fakeWorkers();
    const start = new PoolStart(Fake);
    new start.workerClass("pool.js");
    new start.workerClass("pool.js");
    made[1].emit("error", { message: "boom" });
    await expect(start.failed).rejects.toThrow(WorkerError);
    await expect(start.failed).rejects.toThrow(/failed to start: boom/);
    expect(made.map((w) => w.terminated)).toEqual([true, true]);
  });

  it("stops listening once settled: a later error does nothing", async () => {
    const { Fake, made } = fakeWorkers();
    const start = new PoolStart(Fake);
    new start.workerClass("pool.js");
    expect(made[0].listeners.get("error")?.length).toBe(1);
    start.settle();
    expect(made[0].listeners.get("error")?.length).toBe(0);
    made[0].emit("error", { message: "later" });
    const outcome = await Promise.race([start.failed.then(() => "failed", () => "failed"), new Promise((r) => setTimeout(() => r("pending"), 20))]);
    expect(outcome).toBe("pending");
    expect(made[0].terminated).toBe(false);
  });
});
