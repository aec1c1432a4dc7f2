// The coordinating side of data-parallel training, shared by the page (main.js) and the
// Node CLI (train-node.mjs): make the started workers a process group, train on all of
// them, and check that every replica ended with the same weights.
import { ProcessGroup } from "batchnorm-wasm";

/**
 * @param {object[]} workers started workers running a replica (replica.js)
 * @param {(w: object) => object} wrap the comlink wrapper for one worker
 * @param {{ init?: object, transport?: "auto" | "shared" | "message" }} [opts]
 */
export async function startReplicas(workers, wrap, { init = {}, transport = "auto" } = {}) {
  const replicas = workers.map((w) => wrap(w));
  try {
    const infos = await Promise.all(replicas.map((r) => r.init(init)));
    const joined = Promise.all(replicas.map((r) => r.join()));
    const group = await ProcessGroup.create(workers, { transport });
    await joined;
    return { group, replicas, info: infos[0] };
  } catch (e) {
    for (const w of workers) w.terminate();
    throw e;
  }
}

/**
 * Trains on every replica; resolves to rank 0's summary, with `replicasAgree`: whether
 * every replica's final weights have the same bits.
 */
export async function trainAll(replicas, options, onEvents) {
  const summaries = await Promise.all(replicas.map((r, i) => r.train(options, i === 0 ? onEvents : undefined)));
  const s = summaries[0];
  s.replicasAgree = summaries.every((o) => Object.keys(o.results).every((k) => o.results[k].checksum === s.results[k].checksum));
  return s;
}
