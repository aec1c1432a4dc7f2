/**
 * The worker entry: runs inside a module Web Worker (browser) or a worker_threads Worker
 * (Node) and exposes {@link WorkerApi} through comlink. Start it with `BatchNormWorker`
 * or `BatchNormPool` rather than by hand.
 *
 * It hosts modules (by id) for whole-module work off the main thread, and one shard of a
 * data-parallel batch for `BatchNormPool`.
 * @module
 */
import { expose, transfer } from "comlink";
import { init, getEngine, isNode, type InitOptions, type InitResult } from "../engine/loader.js";
import { BatchNorm, type BatchNormOptions, type StateDict } from "../layers/batchnorm.js";
import { WasmTensor } from "../engine/tensor.js";
import { StateError } from "../engine/errors.js";
import {
  shardBackwardApply, shardGradSums, shardMoments, shardNormalize, updateRunning,
  type ShardGradSums, type ShardMoments,
} from "./shard.js";
import type { Convention, Layout } from "../engine/validate.js";

const modules = new Map<number, BatchNorm>();
let nextId = 1;

/** What this worker keeps of its shard between the pool's phases. */
interface Shard {
  x: WasmTensor;
  dy?: WasmTensor;
  shape: number[];
  layout: Layout;
  mean?: Float32Array;
  invStd?: Float32Array;
}
let shard: Shard | undefined;

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

/** Copies `data` into a resident tensor, reusing `old` when it has the right size. */
function resident(old: WasmTensor | undefined, data: Float32Array): WasmTensor {
  let t = old;
  if (!t || t.length !== data.length) {
    old?.free();
    t = WasmTensor.alloc(data.length);
  }
  t.view.set(data);
  return t;
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
  forward(id: number, x: Float32Array, shape: number[]): Float32Array {
    return give(mod(id).forward(x, shape));
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

  // ---- one shard of a data-parallel batch (BatchNormPool) ----
  /** Keeps x; returns its per-channel moments. */
  shardMoments(x: Float32Array, shape: number[], layout: Layout): ShardMoments {
    shard = { x: resident(shard?.x, x), dy: shard?.dy, shape, layout };
    return shardMoments(getEngine(), shard.x, shape, layout);
  },
  /** Normalises the kept x with global statistics (f64 mean) and keeps them for backward. */
  shardNormalize(p: { weight?: Float32Array; bias?: Float32Array; mean: Float64Array; invStd: Float32Array }): Float32Array {
    const s = current();
    s.mean = Float32Array.from(p.mean);
    s.invStd = p.invStd;
    return give(shardNormalize(getEngine(), s.x, s.shape, s.layout, p));
  },
  /** Keeps dy; returns its sums against the kept global mean. */
  shardGradSums(dy: Float32Array): ShardGradSums {
    const s = current();
    if (!s.mean) throw new StateError("backward before forward on this shard");
    s.dy = resident(s.dy, dy);
    return shardGradSums(getEngine(), s.dy, s.x, s.shape, s.layout, s.mean);
  },
  shardBackwardApply(p: { weight?: Float32Array; sums: ShardGradSums; count: number }): Float32Array {
    const s = current();
    if (!s.dy || !s.mean || !s.invStd) throw new StateError("backward before forward on this shard");
    return give(shardBackwardApply(getEngine(), s.dy, s.x, s.shape, s.layout, { ...p, mean: s.mean, invStd: s.invStd }));
  },
  /** The running-statistics rule of the kernels, applied to merged moments. */
  updateRunning(rm: Float32Array, rv: Float32Array, m: ShardMoments, momentum: number, convention: Convention): { rm: Float32Array; rv: Float32Array } {
    updateRunning(getEngine(), rm, rv, m, momentum, convention);
    return { rm, rv };
  },
};

function current(): Shard {
  if (!shard) throw new StateError("this worker holds no shard: run the pool's forward first");
  return shard;
}

export type WorkerApi = typeof api;

if (isNode) {
  const { parentPort } = await import("node:worker_threads");
  const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
  expose(api, nodeEndpoint(parentPort!));
} else {
  expose(api);
}
