/**
 * The MNIST example trained data-parallel in Node (worker_threads replicas, as
 * `npm run mnist -- --workers N`): 2 and 3 replicas follow the loss curve of one worker
 * training on the whole batch, over both transports, and every replica ends with the
 * same weights.
 */
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { proxy, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
// @ts-expect-error: plain JavaScript example modules
import { mnistBlob } from "../examples/mnist/data-node.js";
// @ts-expect-error: plain JavaScript example modules
import { startReplicas, trainAll } from "../examples/mnist/group.js";

interface Summary {
  steps: number;
  replicasAgree: boolean;
  parallel: { workers: number; transport: string };
  results: Record<string, { losses: number[]; testAcc: number; checksum: number }>;
}

let blob: Uint8Array;
beforeAll(() => {
  blob = mnistBlob();
});

async function run(workers: number, transport: string, steps: number): Promise<Summary> {
  const makeWorkers = () => Array.from({ length: workers }, () => new Worker(new URL("../examples/mnist/replica-node.mjs", import.meta.url), { workerData: { blob } }));
  const { group, replicas } = await startReplicas(makeWorkers, (w: Worker) => wrap(nodeEndpoint(w)), { init: { build: "simd" }, transport });
  try {
    let events = 0;
    const s: Summary = await trainAll(replicas, { steps, batch: 64, seed: 7, compare: true, evalEvery: 0 }, proxy((e: unknown[]) => void (events += e.length)));
    expect(events).toBeGreaterThan(0); // rank 0 reported progress
    return s;
  } finally {
    group.dispose();
  }
}

describe("MNIST data-parallel (Node worker_threads)", () => {
  let one: Summary;
  beforeAll(async () => {
    one = await run(1, "auto", 200);
  });
  afterAll(() => undefined);

  it.each([[2, "shared"], [3, "message"]] as const)("%i replicas (%s) follow one worker's loss curve within 1e-4 over 200 steps, identical weights", async (n, transport) => {
    const s = await run(n, transport, 200);
    expect(s.parallel).toMatchObject({ workers: n, transport });
    expect(s.steps).toBe(200);
    expect(s.replicasAgree).toBe(true);
    for (const k of ["bn", "plain"]) {
      const a = s.results[k].losses, b = one.results[k].losses;
      expect(a).toHaveLength(200);
      let worst = 0;
      for (let i = 0; i < 200; i++) {
        const d = Math.abs(a[i] - b[i]);
        worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
      }
      console.log(`${n} replicas (${transport}), ${k}: max |loss - 1-worker loss| over 200 steps = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
    }
    expect(s.results.bn.testAcc).toBeGreaterThan(0.85);
  });
});
