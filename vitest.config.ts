import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each file in its own child process: wasm instances, worker_threads and the
    // FinalizationRegistry test (which needs --expose-gc) stay isolated.
    pool: "forks",
    execArgv: ["--expose-gc"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
