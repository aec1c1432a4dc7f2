// The CNN page's training worker: loads batchnorm-wasm (simd-threads when the page is
// cross-origin isolated), fetches the digits, trains (train.js) and streams every step's
// losses to the page through comlink.
import { expose } from "comlink";
import { init } from "batchnorm-wasm";
import { decodeMnist } from "../mnist/data.js";
import { lrSweep, train } from "./train.js";

let data;
let stopRequested = false;

expose({
  async init() {
    const info = await init();
    return { ...info, crossOriginIsolated: self.crossOriginIsolated === true };
  },

  /** `kind`: "compare" (train()) or "sweep" (lrSweep()); `onEvent` is a comlink proxy. */
  async run(kind, options, onEvent) {
    data ??= decodeMnist(await (await fetch(new URL("mnist.bin", new URL(import.meta.env.BASE_URL, self.location.origin)))).arrayBuffer());
    stopRequested = false;
    return (kind === "sweep" ? lrSweep : train)(
      data, options,
      (e) => void onEvent(e), // not awaited: training does not wait for the page
      () => stopRequested,
      () => new Promise((r) => setTimeout(r)), // lets stop() and the events through
    );
  },

  stop() {
    stopRequested = true;
  },
});
