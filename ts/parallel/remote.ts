/**
 * Running batch norm in workers: {@link BatchNormWorker} hosts modules in one worker
 * (module Web Worker in browsers, worker_threads in Node), driven through comlink.
 *
 * Faults: a call whose worker throws rejects with the worker's error, re-created as the
 * same {@link BatchNormError} subclass. A worker that dies (crashes or is terminated)
 * rejects every pending call with {@link WorkerError}, and every later call at once: no
 * call hangs. `terminate()` ends the worker.
 *
 * Data: `Float32Array` arguments are copied to the worker by structured clone, unless
 * the call is given `{ transfer: true }` (the array's buffer moves to the worker and is
 * detached here: no copy). Arrays backed by a `SharedArrayBuffer` are never copied: the
 * worker reads them in place. Results are transferred back, never copied.
 * @module
 */
import { transfer, wrap, type Remote } from "comlink";
import * as errors from "../engine/errors.js";
import { StateError, WorkerError, type BatchNormError } from "../engine/errors.js";
import { INIT_KEYS, isNode, type InitOptions, type InitResult } from "../engine/loader.js";
import { checkOptionKeys, optionKeys } from "../engine/validate.js";
import { startWithDeadlines } from "./start.js";
import type { BatchNormOptions, StateDict } from "../layers/batchnorm.js";
import type { NormKind, WorkerApi } from "./worker.js";
import type { NormStateDict } from "../layers/norm-module.js";

export { WorkerError };

const errorClasses = errors as unknown as Record<string, new (m: string) => Error>;

/** Re-creates an error thrown in the worker as its own class (comlink sends name + message). */
function revive(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const Cls = errorClasses[e.name];
  const err: Error = e;
  if (!Cls || (err as unknown) instanceof Cls) return err;
  const r = new Cls(err.message);
  r.stack = err.stack;
  return r;
}

/** A live worker: its comlink proxy, plus death tracking so no call waits forever. */
export class WorkerHandle {
  readonly #api: Remote<WorkerApi>;
  readonly #terminate: () => void;
  #dead?: WorkerError;
  #onDeath: Array<(e: WorkerError) => void> = [];

  private constructor(api: Remote<WorkerApi>, terminate: () => void) {
    this.#api = api;
    this.#terminate = terminate;
  }

  /**
   * Starts a worker running `worker.js` and loads a wasm build in it; a worker that does
   * not finish loading in time is ended and another started (start.ts says why).
   */
  static async spawn(opts: InitOptions = {}): Promise<{ handle: WorkerHandle; info: InitResult }> {
    checkOptionKeys("worker spawn", opts, INIT_KEYS); // before a worker exists
    const node = isNode
      ? { Worker: (await import("node:worker_threads")).Worker, endpoint: (await import("comlink/dist/esm/node-adapter.mjs")).default }
      : undefined;
    return startWithDeadlines(() => {
      let handle: WorkerHandle;
      if (node) {
        const w = new node.Worker(new URL("./worker.js", import.meta.url));
        handle = new WorkerHandle(wrap<WorkerApi>(node.endpoint(w)), () => void w.terminate());
        w.on("error", (e) => handle.#die(`the worker crashed: ${e.message}`));
        w.on("exit", (code) => handle.#die(`the worker exited (code ${code})`));
      } else {
        // Written in one piece, as bundlers (Vite, webpack) need to find and bundle the worker.
        const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
        handle = new WorkerHandle(wrap<WorkerApi>(w), () => w.terminate());
        w.addEventListener("error", (e) => handle.#die(`the worker crashed: ${e.message}`));
      }
      return {
        ready: handle.call((api) => api.init(opts)).then((info) => ({ handle, info })),
        abandon: () => handle.terminate("the worker did not start in time"),
      };
    });
  }

  #die(reason: string): void {
    if (this.#dead) return;
    this.#dead = new WorkerError(reason);
    for (const f of this.#onDeath) f(this.#dead);
    this.#onDeath = [];
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  /** Runs `f` against the worker; rejects with WorkerError if it dies first. */
  call<T>(f: (api: Remote<WorkerApi>) => Promise<T>): Promise<T> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise<T>((resolve, reject) => {
      const onDeath = (e: WorkerError) => reject(e);
      this.#onDeath.push(onDeath);
      f(this.#api).then(
        (v) => resolve(v),
        (e) => reject(revive(e)),
      ).finally(() => {
        this.#onDeath = this.#onDeath.filter((g) => g !== onDeath);
      });
    });
  }

  /** Ends the worker; pending and later calls reject with WorkerError. */
  terminate(reason = "the worker was terminated"): void {
    this.#die(reason);
    this.#terminate();
  }
}

/** Whether `a` lives on a SharedArrayBuffer (workers then read it in place, no copy). */
export function isShared(a: Float32Array): boolean {
  return typeof SharedArrayBuffer !== "undefined" && a.buffer instanceof SharedArrayBuffer;
}

/** Transfers a Float32Array's buffer when asked to (it is detached on this side). */
export function send(a: Float32Array, move: boolean | undefined): Float32Array {
  return move && !isShared(a) ? transfer(a, [a.buffer as ArrayBuffer]) : a;
}

/** How a `Float32Array` argument reaches a worker. */
export interface SendOptions {
  /** Move (transfer) the argument's buffer to the worker instead of copying it. */
  transfer?: boolean;
}

const SEND_KEYS = optionKeys<SendOptions>({ transfer: true });
const FORWARD_SEND_KEYS = [...SEND_KEYS, "z"];

/**
 * A module that lives in a worker; the same methods as the local one, async. Made by
 * {@link BatchNormWorker.createModule} (a `BatchNorm`) or
 * {@link BatchNormWorker.createNormModule} (LayerNorm, RMSNorm, GroupNorm, InstanceNorm).
 */
export class RemoteBatchNorm {
  #disposed = false;
  /**
   * @param worker The worker hosting the module.
   * @param id The module's id in that worker.
   * @param numFeatures Channels (C).
   */
  constructor(readonly worker: BatchNormWorker, readonly id: number, readonly numFeatures: number) {}

  #call<T>(f: (api: Remote<WorkerApi>) => Promise<T>): Promise<T> {
    if (this.#disposed) return Promise.reject(new StateError("this module was disposed"));
    return this.worker.handle.call(f);
  }

  /** Rejects (rather than throws) on an unknown option key, as every method here is async. */
  #checkKeys(what: string, o: object, keys: readonly string[]): Promise<never> | undefined {
    try {
      checkOptionKeys(what, o, keys);
    } catch (e) {
      return Promise.reject(e);
    }
    return undefined;
  }

  /** {@link BatchNorm.forward} in the worker; resolves to `y`. `o.z`: the residual input of a module created with `activation: "relu"` (`y = relu(BN(x) + z)`). */
  forward(x: Float32Array, shape: number[], o: SendOptions & { z?: Float32Array } = {}): Promise<Float32Array> {
    const bad = this.#checkKeys("forward", o, FORWARD_SEND_KEYS);
    if (bad) return bad;
    return this.#call((api) => api.forward(this.id, send(x, o.transfer), shape, o.z === undefined ? undefined : send(o.z, o.transfer)));
  }
  /** Gradient of the last forward's residual `z`, after `backward` (undefined without one). */
  residualGrad(): Promise<Float32Array | undefined> {
    return this.#call((api) => api.residualGrad(this.id));
  }
  /** {@link BatchNorm.backward} in the worker; resolves to `dx`. */
  backward(dy: Float32Array, o: SendOptions = {}): Promise<Float32Array> {
    const bad = this.#checkKeys("backward", o, SEND_KEYS);
    if (bad) return bad;
    return this.#call((api) => api.backward(this.id, send(dy, o.transfer)));
  }
  /** forward + backward in one round trip. */
  step(x: Float32Array, shape: number[], dy: Float32Array, o: SendOptions = {}): Promise<{
    /** The forward output. */
    y: Float32Array;
    /** The input gradient. */
    dx: Float32Array;
  }> {
    const bad = this.#checkKeys("step", o, SEND_KEYS);
    if (bad) return bad;
    return this.#call((api) => api.step(this.id, send(x, o.transfer), shape, send(dy, o.transfer)));
  }
  /** Copies of the accumulated parameter gradients (absent unless `affine`). */
  grads(): Promise<{
    /** Accumulated gradient of `weight`. */
    weightGrad?: Float32Array;
    /** Accumulated gradient of `bias`. */
    biasGrad?: Float32Array;
  }> {
    return this.#call((api) => api.grads(this.id));
  }
  /** {@link BatchNorm.zeroGrad} in the worker. */
  zeroGrad(): Promise<void> {
    return this.#call((api) => api.zeroGrad(this.id));
  }
  /** {@link BatchNorm.train} in the worker. */
  train(mode = true): Promise<void> {
    return this.#call((api) => api.setTraining(this.id, mode));
  }
  /** {@link BatchNorm.eval} in the worker. */
  eval(): Promise<void> {
    return this.train(false);
  }
  /** The hosted module's `stateDict()` (a copy, with PyTorch's names). */
  stateDict(): Promise<StateDict | NormStateDict> {
    return this.#call((api) => api.stateDict(this.id));
  }
  /** The hosted module's `loadStateDict()`. */
  loadStateDict(sd: StateDict | NormStateDict, { strict = true } = {}): Promise<void> {
    return this.#call((api) => api.loadStateDict(this.id, sd, strict));
  }
  /** Frees the module in the worker (the worker keeps running). Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!this.worker.handle.dead) await this.worker.handle.call((api) => api.disposeModule(this.id));
  }
}

/**
 * One worker hosting batch-norm modules.
 *
 * @example
 * ```ts
 * const worker = await BatchNormWorker.spawn();
 * const bn = await worker.createModule(16);
 * const y = await bn.forward(x, [32, 16, 28, 28], { transfer: true });
 * worker.terminate();
 * ```
 */
export class BatchNormWorker {
  /**
   * @param handle The live worker (internal).
   * @param info The build the worker loaded.
   */
  private constructor(
    /** @internal */
    readonly handle: WorkerHandle,
    readonly info: InitResult,
  ) {}

  /** Starts a worker and loads a wasm build there (`simd-threads` where allowed). */
  static async spawn(opts: InitOptions = {}): Promise<BatchNormWorker> {
    const { handle, info } = await WorkerHandle.spawn(opts);
    return new BatchNormWorker(handle, info);
  }

  /** Creates a module in the worker (options as for `new BatchNorm`, except `engine`). */
  async createModule(numFeatures: number, opts: Omit<BatchNormOptions, "engine"> = {}): Promise<RemoteBatchNorm> {
    const id = await this.handle.call((api) => api.createModule(numFeatures, opts));
    return new RemoteBatchNorm(this, id, numFeatures);
  }

  /**
   * Hosts a LayerNorm, RMSNorm, GroupNorm or InstanceNorm1d/2d/3d: `args` are the
   * constructor's positional arguments.
   *
   * @example
   * const ln = await worker.createNormModule("LayerNorm", [768], { eps: 1e-6 });
   * const y = await ln.forward(x, [8, 128, 768]);
   */
  async createNormModule(kind: NormKind, args: (number | number[])[], opts: Record<string, unknown> = {}): Promise<RemoteBatchNorm> {
    const id = await this.handle.call((api) => api.createNormModule(kind, args, opts));
    // The feature count: GroupNorm's channels (its second argument), else the first
    // argument (a normalized shape counts its elements).
    const n = kind === "GroupNorm" ? args[1] : args[0];
    return new RemoteBatchNorm(this, id, typeof n === "number" ? n : n.reduce((a, b) => a * b, 1));
  }

  /** Terminates the worker (and with it every module it hosts). */
  terminate(): void {
    this.handle.terminate("the worker was terminated by terminate()");
  }

  /** Same as {@link terminate}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.terminate();
  }
}
