/**
 * The worker entry: runs inside a module Web Worker (browser) or a worker_threads Worker
 * (Node) and exposes {@link WorkerApi} through comlink. Start it with `BatchNormWorker`
 * rather than by hand.
 *
 * It hosts modules (by id) for whole-module work off the main thread. (Data-parallel
 * training runs in the user's own workers: see `ProcessGroup` and `SyncBatchNorm`.)
 * @module
 */
import { expose, transfer } from "comlink";
import { init, getEngine, isNode, type InitOptions, type InitResult } from "../engine/loader.js";
import { BatchNorm, type BatchNormOptions, type StateDict } from "../layers/batchnorm.js";
import { WasmTensor } from "../engine/tensor.js";
import { StateError } from "../engine/errors.js";

const modules = new Map<number, BatchNorm>();
let nextId = 1;

function mod(id: number): BatchNorm {
  const m = modules.get(id);
  if (!m) throw new StateError(`no module with id ${id} in this worker (disposed?)`);
  return m;
}

/** A plain array result, transferred (not copied) back to the caller. */
function give(a: Float32Array | WasmTensor): Float32Array {
  const out = a instanceof WasmTensor ? a.toArray() : a;
  return transfer(out, [out.buffer as ArrayBuffer]);
}

const api = {
  init(opts: InitOptions = {}): Promise<InitResult> {
    return init(opts);
  },

  // ---- hosted modules ----
  createModule(numFeatures: number, opts: Omit<BatchNormOptions, "engine"> = {}): number {
    const id = nextId++;
    modules.set(id, new BatchNorm(numFeatures, { ...opts, engine: getEngine() }));
    return id;
  },
  /** `z`: the residual input of a module with a fused activation (`y = relu(BN(x) + z)`). */
  forward(id: number, x: Float32Array, shape: number[], z?: Float32Array): Float32Array {
    return give(mod(id).forward(x, shape, z === undefined ? {} : { z }));
  },
  /** The gradient of the last forward's residual `z` (after backward), if it had one. */
  residualGrad(id: number): Float32Array | undefined {
    const g = mod(id).residualGrad;
    return g === undefined ? undefined : give(g instanceof WasmTensor ? g : g.slice());
  },
  backward(id: number, dy: Float32Array): Float32Array {
    return give(mod(id).backward(dy));
  },
  /** forward + backward in one round trip. */
  step(id: number, x: Float32Array, shape: number[], dy: Float32Array): { y: Float32Array; dx: Float32Array } {
    const m = mod(id);
    const y = m.forward(x, shape);
    const dx = m.backward(dy);
    const ya = y instanceof WasmTensor ? y.toArray() : y;
    const dxa = dx instanceof WasmTensor ? dx.toArray() : dx;
    return transfer({ y: ya, dx: dxa }, [ya.buffer as ArrayBuffer, dxa.buffer as ArrayBuffer]);
  },
  grads(id: number): { weightGrad?: Float32Array; biasGrad?: Float32Array } {
    const m = mod(id);
    return { weightGrad: m.weightGrad?.toArray(), biasGrad: m.biasGrad?.toArray() };
  },
  zeroGrad(id: number): void {
    mod(id).zeroGrad();
  },
  setTraining(id: number, training: boolean): void {
    mod(id).train(training);
  },
  stateDict(id: number): StateDict {
    return mod(id).stateDict();
  },
  loadStateDict(id: number, sd: StateDict, strict = true): void {
    mod(id).loadStateDict(sd, { strict });
  },
  disposeModule(id: number): void {
    modules.get(id)?.dispose();
    modules.delete(id);
  },
};

export type WorkerApi = typeof api;

if (isNode) {
  const { parentPort } = await import("node:worker_threads");
  const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
  expose(api, nodeEndpoint(parentPort!));
} else {
  expose(api);
}
