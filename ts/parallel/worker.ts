/**
 * The worker entry: runs inside a module Web Worker (browser) or a worker_threads Worker
 * (Node) and exposes {@link WorkerApi} through comlink. Start it with `BatchNormWorker`
 * rather than by hand.
 *
 * It hosts modules (by id) for whole-module work off the main thread: BatchNorm and the
 * per-sample normalisation layers (LayerNorm, RMSNorm, GroupNorm, InstanceNorm1d/2d/3d),
 * which need no collectives. (Data-parallel
 * training runs in the user's own workers: see `ProcessGroup` and `SyncBatchNorm`.)
 * @module
 */
import { expose, transfer } from "comlink";
import { init, getEngine, isNode, type InitOptions, type InitResult } from "../engine/loader.js";
import { BatchNorm, type BatchNormOptions, type StateDict } from "../layers/batchnorm.js";
import { WasmTensor } from "../engine/tensor.js";
import { InvalidArgumentError, StateError } from "../engine/errors.js";
import { LayerNorm } from "../layers/layernorm.js";
import { RMSNorm } from "../layers/rmsnorm.js";
import { GroupNorm } from "../layers/groupnorm.js";
import { InstanceNorm1d, InstanceNorm2d, InstanceNorm3d } from "../layers/instancenorm.js";
import type { NormStateDict } from "../layers/norm-module.js";

/** Class name of a normalisation module a worker can host ({@link BatchNormWorker.createNormModule}). */
export type NormKind = "LayerNorm" | "RMSNorm" | "GroupNorm" | "InstanceNorm1d" | "InstanceNorm2d" | "InstanceNorm3d";
/** The per-sample normalisation modules a worker can host, by class name. */
const NORM_CLASSES: Record<NormKind, unknown> = { LayerNorm, RMSNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d };
type Hosted = BatchNorm | LayerNorm | RMSNorm | GroupNorm | InstanceNorm1d;

const modules = new Map<number, Hosted>();
let nextId = 1;

function mod(id: number): Hosted {
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
  /** A LayerNorm, RMSNorm, GroupNorm or InstanceNorm1d/2d/3d: `args` are its constructor's
   * positional arguments, `opts` its options (without `engine`). */
  createNormModule(kind: NormKind, args: (number | number[])[], opts: Record<string, unknown> = {}): number {
    if (!Object.hasOwn(NORM_CLASSES, kind)) throw new InvalidArgumentError(`unknown module kind ${JSON.stringify(kind)}; known: ${Object.keys(NORM_CLASSES).join(", ")}`);
    const Cls = NORM_CLASSES[kind] as unknown as new (...a: unknown[]) => Hosted;
    const id = nextId++;
    modules.set(id, new Cls(...args, { ...opts, engine: getEngine() }));
    return id;
  },
  /** `z`: the residual input of a module with a fused activation (`y = relu(BN(x) + z)`). */
  forward(id: number, x: Float32Array, shape: number[], z?: Float32Array): Float32Array {
    return give(mod(id).forward(x, shape, z === undefined ? {} : { z }));
  },
  /** The gradient of the last forward's residual `z` (after backward), if it had one. */
  residualGrad(id: number): Float32Array | undefined {
    const m = mod(id);
    const g = m instanceof BatchNorm ? m.residualGrad : undefined;
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
  stateDict(id: number): StateDict | NormStateDict {
    return mod(id).stateDict();
  },
  loadStateDict(id: number, sd: StateDict | NormStateDict, strict = true): void {
    (mod(id) as { loadStateDict(sd: unknown, o: { strict: boolean }): void }).loadStateDict(sd, { strict });
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
