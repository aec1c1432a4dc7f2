// The training worker: loads batchnorm-wasm (simd-threads when the page is cross-origin
// isolated), fetches the digits, trains, and streams progress to the page via comlink.
import { expose } from "comlink";
import { init } from "batchnorm-wasm";
import { decodeMnist } from "./data.js";
import { train } from "./train.js";

let data;
let stopRequested = false;

// A macrotask yield that setTimeout's 4 ms clamp does not slow down: lets stop() in.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const yieldNow = () => new Promise((r) => { waiting.push(r); channel.port2.postMessage(0); });

const api = {
  async init() {
    const info = await init();
    return { ...info, crossOriginIsolated: self.crossOriginIsolated === true, cores: navigator.hardwareConcurrency };
  },

  /** Trains; `onEvents` (a comlink proxy) receives batches of train.js events every ~100 ms. */
  async train(options, onEvents) {
    data ??= decodeMnist(await (await fetch(new URL("mnist.bin", new URL(import.meta.env.BASE_URL, self.location.origin)))).arrayBuffer());
    stopRequested = false;
    let queue = [];
    let lastFlush = performance.now(), lastYield = lastFlush;
    const flush = () => {
      if (queue.length) onEvents(queue); // not awaited: training does not wait for the page
      queue = [];
      lastFlush = performance.now();
    };
    const summary = await train(data, options, (e) => {
      queue.push(e);
      const now = performance.now();
      if (now - lastFlush > 100 || e.type === "eval") flush();
    }, () => stopRequested, async () => {
      if (performance.now() - lastYield > 25) {
        await yieldNow();
        lastYield = performance.now();
      }
    });
    flush();
    return summary;
  },

  stop() {
    stopRequested = true;
  },
};

expose(api);
