// A replica of the MNIST example for bench/workers.mjs: the example's replica API
// (examples/mnist/replica.js) plus this thread's CPU time, so that the speedup can be
// told apart from other processes taking the cores.
import { parentPort, workerData } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { replicaApi } from "../examples/mnist/replica.js";
import { threadCpuMs } from "./lib/thread-cpu.mjs";

const api = replicaApi(async () => workerData.blob);
api.cpuMs = threadCpuMs;
expose(api, nodeEndpoint(parentPort));
