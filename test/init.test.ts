/** init(): picks the best build, is idempotent, and refuses to switch builds. */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { init, loaded, batchNormTrain, StateError, InvalidOptionError } from "../dist/index.js";

describe("init", () => {
  it("throws StateError before init", () => {
    expect(loaded()).toBeUndefined();
    expect(() => batchNormTrain(new Float32Array(4), [2, 2])).toThrow(StateError);
    expect(() => batchNormTrain(new Float32Array(4), [2, 2])).toThrow(/call `await init\(\)` first/);
  });
  it("rejects an unknown build or a bad thread count", async () => {
    await expect(init({ build: "gpu" as never })).rejects.toThrow(InvalidOptionError);
    await expect(init({ threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
  });
  it("loads simd-threads in Node by default, once", async () => {
    const a = await init({ threads: 2 });
    expect(a).toEqual({ build: "simd-threads", threads: 2 });
    expect(await init()).toEqual(a);
    expect(loaded()).toEqual(a);
    await expect(init({ build: "scalar" })).rejects.toThrow(/already initialised with simd-threads/);
  });
  it("lets a Node process exit once the simd-threads pool is up and a kernel ran on it", () => {
    // The idle pool's worker_threads must not keep the process alive: a script (or a
    // benchmark: bench/norms.mjs hung so) that is done must end.
    const script = fileURLToPath(new URL("./workers/init-and-exit.mjs", import.meta.url));
    const r = spawnSync(process.execPath, [script], { timeout: 30_000, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("done simd-threads 2");
    expect(r.signal).toBeNull(); // not killed by the timeout
    expect(r.status).toBe(0);
  });
});

describe("createEngine", () => {
  it("loads each build once per realm and refuses a second pool size", async () => {
    const { createEngine } = await import("../dist/index.js");
    const a = await createEngine("simd");
    expect(await createEngine("simd")).toBe(a);
    const t = await createEngine("simd-threads"); // the one init() loaded above
    expect(t.threads).toBe(2);
    await expect(createEngine("simd-threads", 3)).rejects.toThrow(/already loaded with 2 threads/);
  });
});
