// Training for the CNN example, shared by the Node CLI (train-node.mjs) and the page's
// worker (train-worker.js). Every run is a Cnn (with or without batch norm) at some
// learning rate; all runs of a call train in lockstep on the same seeded batches from the
// same seeded weights, so they differ only in what is compared.
//   train():  with vs without batch norm at one learning rate.
//   lrSweep(): both variants at each of several learning rates (the experiment of the README).
import { gather, gatherInto, PIXELS } from "../mnist/data.js";
import { Rng } from "../mnist/nn.js";
import { Cnn } from "./model.js";

export const DEFAULTS = {
  seed: 42,
  steps: 300,
  batch: 32,
  lr: 0.03,
  momentum: 0.9,
  channels: [8, 16],
  /** Learning rates of lrSweep (log-spaced, 0.01 to 1). */
  lrs: [0.01, 0.03, 0.1, 0.3, 1],
};

export const VARIANTS = { bn: "with BN", plain: "without BN" };

/** A training loss this far above chance (ln 10 = 2.3) or not finite: the run diverged. */
const DIVERGED = 1e3;

/**
 * Trains `runs` ({ key, bn, lr }) in lockstep, then evaluates each on the test set.
 * @param {(e: object) => void} onEvent "start" (the runs), then "step" after every step
 *   with each run's loss (undefined once it diverged)
 * @param {() => boolean} shouldStop checked before every step
 * @param {() => (Promise<void> | void)} pause awaited after every step (a worker yields there)
 */
async function trainRuns(data, cfg, runs, onEvent, shouldStop, pause) {
  const models = runs.map((r) => new Cnn({ seed: cfg.seed, bn: r.bn, channels: cfg.channels }));
  const stats = runs.map((r) => ({ ...r, label: VARIANTS[r.bn ? "bn" : "plain"], ms: 0, losses: [], divergedAt: null }));
  const order = new Rng(cfg.seed ^ 0x5bd1e995);
  const perm = Array.from({ length: data.train.count }, (_, i) => i);
  const xb = new Float32Array(cfg.batch * PIXELS);
  const yb = new Uint8Array(cfg.batch);
  let cursor = perm.length, done = 0;
  onEvent({ type: "start", config: cfg, runs });
  try {
    for (let step = 1; step <= cfg.steps && !shouldStop(); step++) {
      if (cursor + cfg.batch > perm.length) {
        order.shuffle(perm);
        cursor = 0;
      }
      gatherInto(data.train, perm.slice(cursor, cursor + cfg.batch), xb, yb);
      cursor += cfg.batch;
      const losses = models.map((m, i) => {
        const s = stats[i];
        if (s.divergedAt !== null) return undefined; // a diverged run stays where it broke
        const t0 = performance.now();
        const { loss } = m.step(xb, yb, cfg.batch, { lr: s.lr, momentum: cfg.momentum });
        s.ms += performance.now() - t0;
        s.losses.push(loss);
        if (!(loss < DIVERGED)) s.divergedAt = step;
        return loss;
      });
      onEvent({ type: "step", step, losses, divergedAt: stats.map((s) => s.divergedAt) });
      done = step;
      await pause();
    }
    const test = gather(data.test, Array.from({ length: data.test.count }, (_, i) => i));
    for (const [i, m] of models.entries()) {
      Object.assign(stats[i], m.evaluate(test.x, test.y, data.test.count));
      await pause();
    }
  } finally {
    for (const m of models) m.dispose();
  }
  return {
    steps: done,
    config: cfg,
    runs: stats.map(({ ms, acc, loss, ...s }) => ({
      ...s,
      testAcc: acc,
      testLoss: loss,
      stepsPerSec: (1000 * s.losses.length) / ms,
    })),
  };
}

/** With and without batch norm at `lr`. */
export function train(data, options = {}, onEvent = () => {}, shouldStop = () => false, pause = () => {}) {
  const cfg = { ...DEFAULTS, ...options };
  const runs = [true, false].map((bn) => ({ key: bn ? "bn" : "plain", bn, lr: cfg.lr }));
  return trainRuns(data, cfg, runs, onEvent, shouldStop, pause);
}

/** With and without batch norm at each of `lrs`. */
export function lrSweep(data, options = {}, onEvent = () => {}, shouldStop = () => false, pause = () => {}) {
  const cfg = { ...DEFAULTS, ...options };
  const runs = cfg.lrs.flatMap((lr) => [true, false].map((bn) => ({ key: `${bn ? "bn" : "plain"}@${lr}`, bn, lr })));
  return trainRuns(data, cfg, runs, onEvent, shouldStop, pause);
}
