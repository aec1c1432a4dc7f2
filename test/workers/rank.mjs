// A rank of a process group for the tests (Node worker_threads): joins the group, then
// runs what the test asks through comlink.
import { parentPort } from "node:worker_threads";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { init, joinProcessGroup, BatchNorm, SyncBatchNorm, WasmTensor, allReduceGradients, broadcastParameters } from "../../dist/index.js";

let comm;
const api = {
  async join() {
    await init({ build: "simd" });
    comm = await joinProcessGroup();
    return { rank: comm.rank, worldSize: comm.worldSize, transport: comm.transport };
  },
  allReduce: (a, op) => comm.allReduce(a, { op }),
  broadcast: (a, root) => comm.broadcast(a, root),
  allGather: (a) => comm.allGather(a),
  reduceScatter: (a, op) => comm.reduceScatter(a, { op }),
  allGatherSegments: (a) => comm.allGatherSegments(a),
  segment: (n) => comm.segment(n),
  barrier: () => comm.barrier(),
  broken: () => comm.broken,
  /** A collective, then the outcome (so a rejection can be inspected after a kill). */
  async outcome(kind, a, arg) {
    try {
      await (kind === "barrier" ? comm.barrier() : comm[kind](a, arg));
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message };
    }
  },
};
expose(api, nodeEndpoint(parentPort));
api.exit = (code) => process.exit(code);

// ---- one SyncBatchNorm layer (test/sync-batchnorm.test.ts) ----
let bn;
Object.assign(api, {
  /** A SyncBatchNorm, converted from a BatchNorm with these parameters (the convert helper). */
  bnCreate(numFeatures, opts, weight, bias) {
    bn?.dispose();
    const local = new BatchNorm(numFeatures, opts);
    if (weight) local.weight.view.set(weight);
    if (bias) local.bias.view.set(bias);
    bn = SyncBatchNorm.from(local, comm);
    local.dispose();
  },
  bnTrain: (mode) => void bn.train(mode),
  bnForward: (x, shape, z) => bn.forward(x, shape, z ? { z } : {}),
  bnBackward: (dy) => bn.backward(dy),
  bnResidualGrad: () => bn.residualGrad,
  bnState: () => ({ sd: bn.stateDict(), weightGrad: bn.weightGrad?.toArray(), biasGrad: bn.biasGrad?.toArray() }),
  async bnOutcome(x, shape) {
    try {
      await bn.forward(x, shape);
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message };
    }
  },
});

// ---- bucketed gradient all-reduce ----
Object.assign(api, {
  /** Arrays of `sizes` (the last one a WasmTensor) filled from `seed`, reduced or broadcast. */
  async bucketed(kind, sizes, seed, opts) {
    let s = seed;
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    const arrays = sizes.map((n) => Float32Array.from({ length: n }, next));
    const last = WasmTensor.from(arrays[arrays.length - 1]);
    const tensors = [...arrays.slice(0, -1), last];
    if (kind === "reduce") await allReduceGradients(comm, tensors, opts);
    else await broadcastParameters(comm, tensors, opts);
    const out = [...arrays.slice(0, -1), last.toArray()];
    last.free();
    return out;
  },
});
