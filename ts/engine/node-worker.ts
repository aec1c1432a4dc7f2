/**
 * Just enough of the Web Worker API, on Node's worker_threads, for wasm-bindgen-rayon to
 * start its pool in Node: `new Worker(moduleUrl, { type: "module" })`, `postMessage`,
 * and `message` listeners. The threads are `unref()`ed: a pool of idle rayon workers
 * must not keep the process alive.
 * @module
 */
import { Worker } from "node:worker_threads";

type Listener = (ev: { data: unknown }) => void;

export class NodeWebWorker {
  readonly #worker: Worker;
  readonly #wrapped = new Map<Listener, (data: unknown) => void>();

  constructor(url: URL | string, _options?: { type?: string }) {
    this.#worker = new Worker(new URL("./node-worker-bootstrap.js", import.meta.url), {
      workerData: { url: String(url) },
    });
    this.#worker.unref();
  }

  postMessage(data: unknown): void {
    this.#worker.postMessage(data);
  }

  addEventListener(type: string, fn: Listener): void {
    if (type !== "message") return;
    const w = (data: unknown) => fn({ data });
    this.#wrapped.set(fn, w);
    this.#worker.on("message", w);
  }

  removeEventListener(type: string, fn: Listener): void {
    const w = this.#wrapped.get(fn);
    if (type !== "message" || !w) return;
    this.#worker.off("message", w);
    this.#wrapped.delete(fn);
  }

  terminate(): void {
    void this.#worker.terminate();
  }
}
