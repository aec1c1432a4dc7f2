// The coordinating side of data-parallel training, shared by the page (main.js) and the
// Node CLI (train-node.mjs): make the started workers a process group, train on all of
// them, and check that every replica ended with the same weights.
import { ProcessGroup, startWithDeadlines } from "batchnorm-wasm";

/**
 * Starts the replicas' workers, loads batchnorm-wasm in each, and makes them a process
 * group. Workers that are not loaded by a deadline are ended and new ones made
 * (startWithDeadlines: Firefox can block a worker for good as it starts its thread pool).
 * @param {() => object[]} makeWorkers new workers running a replica (replica.js)
 * @param {(w: object) => object} wrap the comlink wrapper for one worker
 * @param {{ init?: object, transport?: "auto" | "shared" | "message" }} [opts]
 * @returns the group, the replicas, rank 0's `init()` result, and how many tries it took
 */
export async function startReplicas(makeWorkers, wrap, { init = {}, transport = "auto" } = {}) {
  let tries = 0;
  const { workers, replicas, infos } = await startWithDeadlines(() => {
    tries++;
    const workers = makeWorkers();
    const replicas = workers.map((w) => wrap(w));
    return {
      ready: Promise.all(replicas.map((r) => r.init(init))).then((infos) => ({ workers, replicas, infos })),
      abandon: () => workers.forEach((w) => w.terminate()),
    };
  });
  try {
    const joined = Promise.all(replicas.map((r) => r.join()));
    const group = await ProcessGroup.create(workers, { transport });
    await joined;
    return { group, replicas, info: infos[0], tries };
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
