// A replica of the Node CLI (train-node.mjs), in a worker_threads worker: replica.js
// exposed through comlink; the digits come from the parent (one copy per worker).
import { parentPort, workerData } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { replicaApi } from "./replica.js";

expose(replicaApi(async () => workerData.blob), nodeEndpoint(parentPort));
