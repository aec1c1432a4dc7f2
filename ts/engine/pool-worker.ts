/**
 * The `Worker` that wasm-bindgen-rayon gets while it starts the `simd-threads` pool (see
 * `startPool` in loader.ts): a constructor that makes the real worker (a browser `Worker`,
 * or {@link NodeWebWorker} in Node) and watches it, so that a pool worker that fails
 * cannot hang `init()`.
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
 * in that thread runs again. Only the thread that started it can tell: `startWithDeadlines`
 * (parallel/start.ts) gives the worker's `init()` a deadline and starts a fresh worker.
 * @module
 */
import { WorkerError } from "./errors.js";

/** What the pool needs of a worker: wasm-bindgen-rayon's use of `Worker`. */
export interface PoolWorkerLike {
  postMessage(data: unknown): void;
  addEventListener(type: string, fn: (ev: { data?: unknown; message?: string }) => void): void;
  removeEventListener(type: string, fn: (ev: { data?: unknown; message?: string }) => void): void;
  terminate(): void;
}

/** A worker class: the browser's `Worker`, or `NodeWebWorker`. */
export type PoolWorkerClass = new (url: URL | string, options?: { type?: string }) => PoolWorkerLike;

/** Every pool worker started in this realm (see the module comment: Firefox). */
const kept: PoolWorkerLike[] = [];

/**
 * Starts pool workers on `Base`. `workerClass` is lent to wasm-bindgen-rayon for its
 * spawning call; `failed` rejects when a worker reports an error before the pool is up,
 * after which every worker of this start is terminated. `settle()` stops listening.
 */
export class PoolStart {
  readonly failed: Promise<never>;
  readonly workerClass: PoolWorkerClass;
  #fail!: (e: WorkerError) => void;
  #settled = false;
  readonly #workers: PoolWorkerLike[] = [];
  readonly #onError = (ev: { message?: string }) => this.#failWith(`a thread-pool worker failed to start: ${ev.message ?? "an error in its script"}`);

  constructor(Base: PoolWorkerClass) {
    this.failed = new Promise<never>((_, reject) => (this.#fail = reject));
    this.failed.catch(() => {}); // observed by the caller's race; never an unhandled rejection
    const start = this;
    // The real worker with an error listener (until settle()). Listeners are the real
    // worker's own: a lasting listener of ours would keep a Node process alive (a
    // worker_threads port with a message listener is ref'd).
    this.workerClass = function PoolWorker(url: URL | string, options?: { type?: string }): PoolWorkerLike {
      const w = new Base(url, options);
      kept.push(w);
      start.#workers.push(w);
      w.addEventListener("error", start.#onError);
      return w;
    } as unknown as PoolWorkerClass;
  }

  /** The pool is up (or gave up): stop listening for errors. */
  settle(): void {
    this.#settled = true;
    for (const w of this.#workers) w.removeEventListener("error", this.#onError);
  }

  #failWith(reason: string): void {
    if (this.#settled) return;
    this.settle();
    for (const w of this.#workers) w.terminate();
    this.#fail(new WorkerError(reason));
  }
}
