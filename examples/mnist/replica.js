// One replica of data-parallel training, as a worker's API (the page's train-worker.js and
// the Node CLI's replica-node.mjs expose it through comlink): load batchnorm-wasm, join
// the process group, train on this rank's slice of every batch. Rank 0 reports progress.
import { init, joinProcessGroup } from "batchnorm-wasm";
import { decodeMnist } from "./data.js";
import { train } from "./train.js";

/** A macrotask yield without setTimeout's clamp (>= 1 ms in Node, 4 ms nested in browsers). */
const immediate = () => new Promise((r) => (typeof setImmediate === "function" ? setImmediate(r) : setTimeout(r, 0)));

/**
 * @param {() => Promise<ArrayBuffer | Uint8Array>} loadData the digits (data.js format)
 * @param {() => Promise<void>} [yieldNow] lets messages in (stop) during training
 */
export function replicaApi(loadData, yieldNow = immediate) {
  let data, comm;
  let stopRequested = false;
  return {
    async init(opts = {}) {
      const info = await init(opts);
      const g = globalThis;
      return { ...info, crossOriginIsolated: g.crossOriginIsolated === true, cores: g.navigator?.hardwareConcurrency };
    },

    /** Joins the group the parent is creating; resolves to this rank's place in it. */
    async join() {
      comm = await joinProcessGroup();
      return { rank: comm.rank, worldSize: comm.worldSize, transport: comm.transport };
    },

    /** Trains (every rank with the same options); `onEvents` (rank 0's, a comlink proxy) gets batches of events. */
    async train(options, onEvents) {
      data ??= decodeMnist(await loadData());
      stopRequested = false;
      let queue = [];
      let lastFlush = performance.now(), lastYield = lastFlush;
      const flush = () => {
        if (queue.length && onEvents) void onEvents(queue); // not awaited: training does not wait for the page
        queue = [];
        lastFlush = performance.now();
      };
      const summary = await train(data, options, (e) => {
        if (!onEvents) return;
        queue.push(e);
        const now = performance.now();
        if (now - lastFlush > 250 || e.type === "eval") flush();
      }, () => stopRequested, async () => {
        if (performance.now() - lastYield > 25) {
          await yieldNow();
          lastYield = performance.now();
        }
      }, comm);
      flush();
      return summary;
    },

    stop() {
      stopRequested = true;
    },
  };
}
