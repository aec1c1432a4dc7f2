// A replica of the MNIST example for bench/workers.mjs: the example's replica API
// (examples/mnist/replica.js) plus this thread's CPU time, so that the speedup can be
// told apart from other processes taking the cores (Linux: /proc/thread-self/schedstat).
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { replicaApi } from "../examples/mnist/replica.js";

const api = replicaApi(async () => workerData.blob);
/**
 * CPU milliseconds this thread has run, or NaN where /proc is missing (Linux:
 * /proc/thread-self/schedstat, nanoseconds; /proc/thread-self/stat counts 10 ms ticks).
 */
api.cpuMs = () => {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
  } catch {
    return NaN;
  }
};
expose(api, nodeEndpoint(parentPort));
