// A training worker of the page: one replica (replica.js) exposed to the page via comlink.
// It loads batchnorm-wasm (simd-threads when the page is cross-origin isolated) and fetches
// the digits itself.
import { expose } from "comlink";
import { replicaApi } from "./replica.js";

// A macrotask yield that setTimeout's 4 ms clamp does not slow down: lets stop() in.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const yieldNow = () => new Promise((r) => { waiting.push(r); channel.port2.postMessage(0); });

const base = new URL(import.meta.env.BASE_URL, self.location.origin);
expose(replicaApi(async () => (await fetch(new URL("mnist.bin", base))).arrayBuffer(), yieldNow));
