// A replica of the MNIST example for bench/workers.mjs: the example's replica API
// (examples/mnist/replica.js) plus this thread's CPU time, so that the speedup can be
// told apart from other processes taking the cores (Linux: /proc/thread-self/stat).
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { replicaApi } from "../examples/mnist/replica.js";

const api = replicaApi(async () => workerData.blob);
/** CPU milliseconds (user + system) this thread has used, or NaN where /proc is missing. */
api.cpuMs = () => {
  try {
    const fields = readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
  } catch {
    return NaN;
  }
};
expose(api, nodeEndpoint(parentPort));
