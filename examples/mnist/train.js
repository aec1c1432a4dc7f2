// The training loop shared by the Node CLI (train-node.mjs) and the page's worker
// (train-worker.js): one or two MLPs (with and without batch norm) trained in lockstep on
// the same seeded batches, from the same seeded initial weights.
import { gather, PIXELS } from "./data.js";
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
  /** Batch norm on a BatchNormPool (data-parallel workers) instead of BatchNorm1d. */
  pool: false,
  workers: 2,
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
 */
export async function train(data, options = {}, onEvent = () => {}, shouldStop = () => false, pause = () => {}) {
  const cfg = { ...DEFAULTS, ...options };
  const keys = cfg.compare ? ["bn", "plain"] : ["bn"];
  const models = {};
  for (const k of keys) {
    const bn = k === "plain" ? "none" : cfg.pool ? "pool" : "local";
    models[k] = await Mlp.create({ seed: cfg.seed, hidden: cfg.hidden, bn, workers: cfg.workers });
  }
  const test = gather(data.test, Array.from({ length: data.test.count }, (_, i) => i));
  const order = new Rng(cfg.seed ^ 0x5bd1e995);
  const perm = Array.from({ length: data.train.count }, (_, i) => i);
  const xb = new Float32Array(cfg.batch * PIXELS);
  const yb = new Uint8Array(cfg.batch);
  const stats = Object.fromEntries(keys.map((k) => [k, { ms: 0, losses: [], accs: [], test: [] }]));
  let cursor = perm.length;

  const evaluate = async (step) => {
    for (const k of keys) {
      const r = await models[k].evaluate(test.x, test.y, data.test.count);
      stats[k].test.push({ step, ...r });
      onEvent({ type: "eval", step, variant: k, loss: r.loss, acc: r.acc });
    }
  };

  let done = 0;
  try {
    for (let step = 1; step <= cfg.steps && !shouldStop(); step++) {
      if (cursor + cfg.batch > perm.length) {
        order.shuffle(perm);
        cursor = 0;
      }
      gather(data.train, perm.slice(cursor, cursor + cfg.batch), xb, yb);
      cursor += cfg.batch;
      const results = {};
      for (const k of keys) {
        const t0 = performance.now();
        const r = await models[k].step(xb, yb, cfg.batch, cfg);
        stats[k].ms += performance.now() - t0;
        stats[k].losses.push(r.loss);
        stats[k].accs.push(r.acc);
        results[k] = { ...r, stepsPerSec: (1000 * step) / stats[k].ms };
      }
      onEvent({ type: "step", step, results });
      done = step;
      await pause();
      if (cfg.evalEvery > 0 && step % cfg.evalEvery === 0 && step !== cfg.steps) await evaluate(step);
    }
    await evaluate(done);
  } finally {
    for (const k of keys) models[k].dispose();
  }
  const tail = (a) => a.slice(-50).reduce((s, v) => s + v, 0) / Math.max(1, Math.min(50, a.length));
  return {
    steps: done,
    /** For pool runs: the pool's size and what its workers loaded. */
    pool: models.bn.poolInfo && { workers: cfg.workers, ...models.bn.poolInfo },
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
      }];
    })),
  };
}
