// The training loop of every replica (replica.js, run by the Node CLI's workers and the
// page's workers): one or two MLPs (with and without batch norm) trained in lockstep on
// the same seeded batches, from the same seeded initial weights. With a communicator this
// rank takes its slice of every batch (data-parallel); without one, the whole batch.
import { gather, gatherInto, PIXELS } from "./data.js";
import { Mlp, Rng } from "./nn.js";

export const DEFAULTS = {
  seed: 42,
  steps: 600,
  batch: 64,
  lr: 0.1,
  momentum: 0.9,
  hidden: [128, 64],
  /** Also train the same network without batch norm. */
  compare: true,
  /** Data-parallel workers (replicas); each takes 1/workers of every batch. */
  workers: 1,
  /** Evaluate on the test set every this many steps (and at the end); 0: only at the end. */
  evalEvery: 100,
};

export const VARIANTS = { bn: "with BN", plain: "without BN" };

/**
 * @param {{train: import("./data.js").Split, test: import("./data.js").Split}} data
 * @param {Partial<typeof DEFAULTS>} options
 * @param {(e: object) => void} [onEvent] "step" after every step, "eval" after each test evaluation
 * @param {() => boolean} [shouldStop] checked before every step
 * @param {() => (Promise<void> | void)} [pause] awaited after every step (a worker yields there)
 * @param {import("batchnorm-wasm").Communicator} [group] this replica's rank in the group
 *   (every rank must call train with the same options)
 */
export async function train(data, options = {}, onEvent = () => {}, shouldStop = () => false, pause = () => {}, group = undefined) {
  const cfg = { ...DEFAULTS, ...options };
  // One replica alone trains as plain single-worker code: no collectives at all.
  const comm = group && group.worldSize > 1 ? timed(group) : undefined;
  const rank = comm?.rank ?? 0, world = comm?.worldSize ?? 1;
  // This rank's rows of every batch: [lo, hi), sizes differing by at most one.
  const lo = Math.floor((cfg.batch * rank) / world), hi = Math.floor((cfg.batch * (rank + 1)) / world);
  const keys = cfg.compare ? ["bn", "plain"] : ["bn"];
  const models = {};
  const stop = new Float64Array(1);
  for (const k of keys) models[k] = await Mlp.create({ seed: cfg.seed, hidden: cfg.hidden, bn: k === "bn", comm, signals: stop.length });
  const test = gather(data.test, Array.from({ length: data.test.count }, (_, i) => i));
  const order = new Rng(cfg.seed ^ 0x5bd1e995);
  const perm = Array.from({ length: data.train.count }, (_, i) => i);
  const xb = new Float32Array((hi - lo) * PIXELS);
  const yb = new Uint8Array(hi - lo);
  const stats = Object.fromEntries(keys.map((k) => [k, { ms: 0, stepMs: [], losses: [], accs: [], test: [] }]));
  let cursor = perm.length;

  const evaluate = async (step) => {
    for (const k of keys) {
      const r = await models[k].evaluate(test.x, test.y, data.test.count);
      stats[k].test.push({ step, ...r });
      onEvent({ type: "eval", step, variant: k, loss: r.loss, acc: r.acc });
    }
  };

  let done = 0;
  let collectiveMs = 0;
  try {
    for (let step = 1; step <= cfg.steps; step++) {
      // Every rank stops after the same step: rank 0's decision, summed with the first
      // model's loss (no collective of its own).
      stop[0] = rank === 0 && shouldStop() ? 1 : 0;
      if (cursor + cfg.batch > perm.length) {
        order.shuffle(perm);
        cursor = 0;
      }
      gatherInto(data.train, perm.slice(cursor + lo, cursor + hi), xb, yb);
      cursor += cfg.batch;
      const results = {};
      const inCollectives = comm?.ms ?? 0;
      for (const k of keys) {
        const t0 = performance.now();
        const r = await models[k].step(xb, yb, hi - lo, { ...cfg, batch: cfg.batch, signals: k === keys[0] ? stop : undefined });
        const ms = performance.now() - t0;
        stats[k].ms += ms;
        stats[k].stepMs.push(ms);
        stats[k].losses.push(r.loss);
        stats[k].accs.push(r.acc);
        results[k] = { ...r, stepsPerSec: (1000 * step) / stats[k].ms };
      }
      collectiveMs += (comm?.ms ?? 0) - inCollectives;
      onEvent({ type: "step", step, results });
      done = step;
      await pause();
      if (stop[0] > 0) break;
      if (cfg.evalEvery > 0 && step % cfg.evalEvery === 0 && step !== cfg.steps) await evaluate(step);
    }
    await evaluate(done);
    for (const k of keys) stats[k].checksum = models[k].checksum();
  } finally {
    for (const k of keys) models[k].dispose();
  }
  const tail = (a) => a.slice(-50).reduce((s, v) => s + v, 0) / Math.max(1, Math.min(50, a.length));
  return {
    steps: done,
    /** Data-parallel: the group's size and transport; the share of the training steps' time
     * this rank spent in collectives (waiting for the other ranks included). */
    parallel: { workers: world, transport: comm?.transport ?? "none", collectiveShare: collectiveMs / Object.values(stats).reduce((a, s) => a + s.ms, 0) },
    config: cfg,
    results: Object.fromEntries(keys.map((k) => {
      const s = stats[k], last = s.test[s.test.length - 1];
      return [k, {
        label: VARIANTS[k],
        testAcc: last.acc,
        testLoss: last.loss,
        trainLoss: tail(s.losses), // mean of the last 50 training batches
        trainAcc: tail(s.accs),
        stepsPerSec: (1000 * done) / s.ms,
        /** Every step's training loss (the whole batch's). */
        losses: s.losses,
        /** Every step's time (ms): the JIT's warm-up shows in the first few hundred. */
        stepMs: s.stepMs,
        /** Of the final weights' bits: equal on every replica. */
        checksum: s.checksum,
      }];
    })),
  };
}

/** The communicator, counting the milliseconds spent in its collectives (`.ms`). */
function timed(comm) {
  const t = { rank: comm.rank, worldSize: comm.worldSize, transport: comm.transport, ms: 0, segment: (n) => comm.segment(n) };
  for (const k of ["allReduce", "allGather", "broadcast", "barrier", "reduceScatter", "allGatherSegments"]) {
    t[k] = async (...args) => {
      const t0 = performance.now();
      try {
        return await comm[k](...args);
      } finally {
        t.ms += performance.now() - t0;
      }
    };
  }
  return t;
}
