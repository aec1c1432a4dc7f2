/**
 * The `Worker` that wasm-bindgen-rayon gets while it starts the `simd-threads` pool (see
 * `startPool` in loader.ts): a stand-in that wraps a real worker (a browser `Worker`, or
 * {@link NodeWebWorker} in Node) so that a pool worker that fails cannot hang `init()`.
 *
 * - **An error while a pool worker starts rejects `init()`** with {@link WorkerError}.
 *   wasm-bindgen-rayon waits for each pool worker's "ready" message and listens to
 *   nothing else, so a worker whose script failed to load (a 404, a blocked header, a
 *   syntax error in a bundle) left `init()` pending forever.
 * - **Every pool worker stays referenced** for the life of the realm: Firefox collects
 *   workers that share a wasm memory but are not referenced (bug 1702191), and
 *   wasm-bindgen-rayon keeps them only once all are ready.
 *
 * What it cannot catch: Firefox (153 ESR, seen here about once in 20 page loads under
 * load) sometimes blocks the spawning thread inside `new Worker()` for good, so nothing
 * in that thread runs again. Only the thread that started it can tell; see
 * `WorkerHandle.spawn` (remote.ts), which gives `init()` a deadline and tries again.
 * @module
 */
import { WorkerError } from "./errors.js";

/** What the pool needs of a worker: wasm-bindgen-rayon's use of `Worker`. */
export interface PoolWorkerLike {
  postMessage(data: unknown): void;
  addEventListener(type: string, fn: (ev: { data?: unknown; message?: string }) => void): void;
  terminate(): void;
}

/** A worker class: the browser's `Worker`, or `NodeWebWorker`. */
export type PoolWorkerClass = new (url: URL | string, options?: { type?: string }) => PoolWorkerLike;

/** Every pool worker started in this realm (see the module comment: Firefox). */
const kept: PoolWorkerLike[] = [];

/**
 * Starts pool workers on `Base`. `workerClass` is lent to wasm-bindgen-rayon for its
 * spawning call; `failed` rejects when a worker reports an error before the pool is up,
 * after which every worker of this start is terminated.
 */
export class PoolStart {
  readonly failed: Promise<never>;
  readonly workerClass: PoolWorkerClass;
  #fail!: (e: WorkerError) => void;
  #settled = false;
  readonly #workers: PoolWorkerLike[] = [];

  constructor(Base: PoolWorkerClass) {
    this.failed = new Promise<never>((_, reject) => (this.#fail = reject));
    this.failed.catch(() => {}); // observed by the caller's race; never an unhandled rejection
    const start = this;
    this.workerClass = class extends EventTarget {
      readonly #inner: PoolWorkerLike;
      constructor(url: URL | string, options?: { type?: string }) {
        super();
        const inner = (this.#inner = new Base(url, options));
        kept.push(inner);
        start.#workers.push(inner);
        inner.addEventListener("message", (ev) => this.dispatchEvent(Object.assign(new Event("message"), { data: ev.data })));
        inner.addEventListener("error", (ev) => start.#failWith(`a thread-pool worker failed to start: ${ev.message ?? "an error in its script"}`));
      }
      postMessage(data: unknown): void {
        this.#inner.postMessage(data);
      }
      terminate(): void {
        this.#inner.terminate();
      }
    } as unknown as PoolWorkerClass;
  }

  /** The pool is up (or gave up): later errors are the pool's own business. */
  settle(): void {
    this.#settled = true;
  }

  #failWith(reason: string): void {
    if (this.#settled) return;
    this.#settled = true;
    for (const w of this.#workers) w.terminate();
    this.#fail(new WorkerError(reason));
  }
}
