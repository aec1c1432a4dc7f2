/**
 * Runs inside a worker_thread started by {@link NodeWebWorker}: gives the module the
 * Web Worker globals it expects (`self`, `postMessage`, `addEventListener`), then imports it.
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";

type Listener = (ev: { data: unknown }) => void;
const port = parentPort!;
const wrapped = new Map<Listener, (data: unknown) => void>();
const g = globalThis as Record<string, unknown>;

g.self = globalThis;
g.postMessage = (data: unknown) => port.postMessage(data);
g.addEventListener = (type: string, fn: Listener) => {
  if (type !== "message") return;
  const w = (data: unknown) => fn({ data });
  wrapped.set(fn, w);
  port.on("message", w);
};
g.removeEventListener = (type: string, fn: Listener) => {
  const w = wrapped.get(fn);
  if (type !== "message" || !w) return;
  port.off("message", w);
  wrapped.delete(fn);
};

await import((workerData as { url: string }).url);
