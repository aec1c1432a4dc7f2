/**
 * SyncBatchNorm on 1-4 ranks (Node worker_threads) against single-process BatchNorm on
 * the concatenated batch: outputs, dx, summed dWeight/dBias, running statistics (the
 * same bits on every rank), num_batches_tracked; several steps, uneven shards, both
 * layouts, both conventions, momentum null, large means, the fused ReLU with and without
 * a residual (its gradient too); eval mode; both transports.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  init, BatchNorm, SyncBatchNorm, WasmTensor, InvalidArgumentError, InvalidOptionError, LengthMismatchError, type Communicator, type Layout,
} from "../dist/index.js";
import { rng } from "./reference.js";
import { expectClose } from "./close.js";
import { disposeAll, startGroup, type Started } from "./workers/start.js";

beforeAll(async () => {
  await init({ build: "simd" });
});
afterEach(disposeAll);

/** Row ranges of `n` rows over `k` ranks, sizes differing by at most one (earlier ranks larger). */
function rowsOf(n: number, k: number): [number, number][] {
  const out: [number, number][] = [];
  let at = 0;
  for (let i = 0; i < k; i++) {
    const rows = Math.floor(n / k) + (i < n % k ? 1 : 0);
    out.push([at, at + rows]);
    at += rows;
  }
  return out;
}

interface Case {
  name: string;
  shape: number[];
  layout: Layout;
  opts: { momentum?: number | null; convention?: "pytorch" | "onnx"; eps?: number; activation?: "relu" };
  /** A residual input `z` in every forward (its gradient compared too). */
  residual?: boolean;
}

const CASES: Case[] = [
  { name: "NCHW, momentum null", shape: [7, 3, 5, 4], layout: "NCHW", opts: { momentum: null } },
  { name: "NHWC, momentum 0.1", shape: [7, 3, 2, 5], layout: "NHWC", opts: { momentum: 0.1 } },
  { name: "(N, C), onnx convention", shape: [9, 4], layout: "NCHW", opts: { convention: "onnx", eps: 1e-3 } },
  { name: "NCHW, fused ReLU and residual", shape: [7, 3, 5, 4], layout: "NCHW", opts: { activation: "relu" }, residual: true },
  { name: "NHWC, fused ReLU", shape: [7, 3, 2, 37], layout: "NHWC", opts: { activation: "relu" } },
];

async function compare(s: Started, c: Case, steps = 3) {
  const k = s.ranks.length;
  const C = c.layout === "NCHW" ? c.shape[1] : c.shape[c.shape.length - 1];
  const per = c.shape.slice(1).reduce((a, b) => a * b, 1);
  const size = c.shape[0] * per;
  const weight = Float32Array.from({ length: C }, (_, i) => 0.5 + i * 0.3 * (i % 2 ? -1 : 1));
  const bias = Float32Array.from({ length: C }, (_, i) => 0.1 * i);
  using single = new BatchNorm(C, { ...c.opts, layout: c.layout });
  single.weight!.view.set(weight);
  single.bias!.view.set(bias);
  await Promise.all(s.ranks.map((r) => r.bnCreate(C, { ...c.opts, layout: c.layout }, weight, bias)));
  const rows = rowsOf(c.shape[0], k);
  const slice = (a: Float32Array, i: number) => a.slice(rows[i][0] * per, rows[i][1] * per);
  const shapeOf = (i: number) => [rows[i][1] - rows[i][0], ...c.shape.slice(1)];
  const concat = (parts: Float32Array[]) => {
    const out = new Float32Array(size);
    parts.forEach((p, i) => out.set(p, rows[i][0] * per));
    return out;
  };
  for (let step = 0; step < steps; step++) {
    const r = rng(1000 * k + step);
    const x = r.normals(size, step * 300, 1 + step); // means up to 600: large against the spread
    const dy = r.normals(size);
    const z = c.residual ? r.normals(size) : undefined;
    const ys = await Promise.all(s.ranks.map((rk, i) => rk.bnForward(slice(x, i), shapeOf(i), z && slice(z, i))));
    const want = single.forward(x, c.shape, { z }) as Float32Array;
    expectClose(`${c.name} step ${step} y`, concat(ys), want, 1e-5, 1e-5);
    if (c.opts.activation) expect(want.some((v) => v === 0) && want.some((v) => v > 0), "the ReLU clips some outputs").toBe(true);
    const dxs = await Promise.all(s.ranks.map((rk, i) => rk.bnBackward(slice(dy, i))));
    expectClose(`${c.name} step ${step} dx`, concat(dxs), single.backward(dy) as Float32Array, 1e-5, 1e-4);
    const dzs = await Promise.all(s.ranks.map((rk) => rk.bnResidualGrad()));
    if (c.residual) expectClose(`${c.name} step ${step} dz`, concat(dzs as Float32Array[]), single.residualGrad as Float32Array, 0, 0);
    else expect(dzs.every((d) => d === undefined)).toBe(true);
  }
  const states = await Promise.all(s.ranks.map((r) => r.bnState()));
  for (const st of states) {
    // Identical on every rank, bit for bit; equal to the single process's.
    expect(st.sd).toEqual(states[0].sd);
    expect(st.sd.num_batches_tracked).toBe(BigInt(steps));
  }
  expectClose(`${c.name} running_mean`, states[0].sd.running_mean!, single.runningMean!.view, 1e-5, 1e-6);
  expectClose(`${c.name} running_var`, states[0].sd.running_var!, single.runningVar!.view, 1e-5, 1e-5);
  // Each rank holds its share of the parameter gradients; their sum is the batch's.
  const sum = (key: "weightGrad" | "biasGrad") => {
    const out = new Float64Array(C);
    for (const st of states) st[key]!.forEach((v, i) => (out[i] += v));
    return out;
  };
  expectClose(`${c.name} dWeight`, sum("weightGrad"), single.weightGrad!.view, 1e-4, 1e-5);
  expectClose(`${c.name} dBias`, sum("biasGrad"), single.biasGrad!.view, 1e-4, 1e-5);

  // Eval mode: running statistics, no collective (a rank may go alone).
  single.eval();
  await Promise.all(s.ranks.map((r) => r.bnTrain(false)));
  const x = rng(77).normals(size, 300, 2);
  const z = c.residual ? rng(78).normals(size) : undefined;
  const ys = await Promise.all(s.ranks.map((rk, i) => rk.bnForward(slice(x, i), shapeOf(i), z && slice(z, i))));
  expectClose(`${c.name} eval y`, concat(ys), single.forward(x, c.shape, { z }) as Float32Array, 1e-5, 1e-5);
}

describe.each([1, 2, 3, 4])("SyncBatchNorm on %i rank(s) (shared memory)", (n) => {
  it.each(CASES)("equals BatchNorm on the concatenated batch: $name", async (c) => {
    await compare(await startGroup(n, { transport: "shared" }), c);
  });
});

describe("SyncBatchNorm over MessagePorts", () => {
  it("equals BatchNorm on the concatenated batch (3 ranks, uneven)", async () => {
    await compare(await startGroup(3, { transport: "message" }), CASES[0]);
  });
});

describe("SyncBatchNorm statistics span the group", () => {
  it("one row per rank trains (2 values per channel over 2 ranks); one row on one rank is TooFewValuesError", async () => {
    const two = await startGroup(2);
    await Promise.all(two.ranks.map((r) => r.bnCreate(3, {})));
    const ys = await Promise.all(two.ranks.map((r, i) => r.bnForward(Float32Array.of(i, 2 * i, 3 * i), [1, 3])));
    using single = new BatchNorm(3);
    const want = single.forward(Float32Array.of(0, 0, 0, 1, 2, 3), [2, 3]) as Float32Array;
    expectClose("y", Float32Array.of(...ys[0], ...ys[1]), want, 1e-6, 1e-6);
    expect(Math.abs(want[0] + 1)).toBeLessThan(1e-3); // (0 - 0.5) / 0.5
    const one = await startGroup(1);
    await one.ranks[0].bnCreate(3, {});
    const r = await one.ranks[0].bnOutcome(Float32Array.of(1, 2, 3), [1, 3]);
    expect(r).toMatchObject({ ok: false, name: "TooFewValuesError" });
    expect((await one.ranks[0].bnState()).sd.num_batches_tracked).toBe(0n);
  });
});

describe("SyncBatchNorm across mismatched ranks", () => {
  it("ranks with different channel counts: every rank rejects, nothing changes, the group stays usable", async () => {
    const { ranks } = await startGroup(2);
    await ranks[0].bnCreate(3, {});
    await ranks[1].bnCreate(4, {});
    const out = await Promise.all([ranks[0].bnOutcome(rng(1).normals(6), [2, 3]), ranks[1].bnOutcome(rng(2).normals(8), [2, 4])]);
    for (const o of out) {
      expect(o).toMatchObject({ ok: false, name: "CollectiveMismatchError" });
      expect(o.message).toMatch(/rank 0 allGather\(7 float64\), rank 1 allGather\(9 float64\)/);
    }
    for (const r of ranks) expect((await r.bnState()).sd.num_batches_tracked).toBe(0n);
    await ranks[1].bnCreate(3, {});
    const ys = await Promise.all(ranks.map((r, i) => r.bnForward(rng(3 + i).normals(6), [2, 3])));
    expect(ys.map((y) => y.length)).toEqual([6, 6]);
  });
});

describe("SyncBatchNorm options", () => {
  it("unknown keys and a training eps of 0 are InvalidOptionError, as for BatchNorm", async () => {
    const comm = { rank: 0, worldSize: 1 } as Communicator; // never reached: the checks come first
    expect(() => new SyncBatchNorm(3, comm, { epsilon: 1e-3 } as never)).toThrow(/unknown option "epsilon" \(did you mean "eps"\?\) in SyncBatchNorm options/);
    using bn = new SyncBatchNorm(3, comm, { eps: 0 });
    await expect(bn.forward(new Float32Array(6), [2, 3])).rejects.toThrow(InvalidOptionError);
    expect(bn.numBatchesTracked).toBe(0);
  });
});

describe("SyncBatchNorm out", () => {
  /** One rank in-process: collectives that return this rank's own numbers, and count the calls. */
  function soloComm() {
    const calls = { n: 0 };
    const comm = {
      rank: 0,
      worldSize: 1,
      allGather: async (b: Float64Array) => { calls.n++; return [b.slice()]; },
      allReduce: async (b: Float64Array) => { calls.n++; return b; },
    } as unknown as Communicator;
    return { comm, calls };
  }
  const shape = [6, 3, 2, 2];
  const n = 6 * 3 * 2 * 2;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 3 + (i % 3));
  const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.9));

  it("forward and backward write into out (Float32Array or WasmTensor), return it, and equal the calls without it", async () => {
    for (const kind of ["array", "tensor"] as const) {
      const make = () => (kind === "array" ? new Float32Array(n) : WasmTensor.alloc(n));
      const values = (t: Float32Array | WasmTensor): Float32Array => (t instanceof Float32Array ? t : t.toArray());
      using a = new SyncBatchNorm(3, soloComm().comm, { activation: "relu" });
      using b = new SyncBatchNorm(3, soloComm().comm, { activation: "relu" });
      for (let step = 0; step < 2; step++) {
        const yOut = make(), dxOut = make();
        const y = await a.forward(x, shape, { out: yOut });
        expect(y).toBe(yOut);
        const dx = await a.backward(dy, { out: dxOut });
        expect(dx).toBe(dxOut);
        const yRef = await b.forward(x, shape);
        const dxRef = await b.backward(dy);
        expect(Array.from(values(y))).toEqual(Array.from(yRef));
        expect(Array.from(values(dx))).toEqual(Array.from(dxRef));
        expect(values(y).some((v) => v !== 0)).toBe(true);
        if (yOut instanceof WasmTensor) yOut.free();
        if (dxOut instanceof WasmTensor) dxOut.free();
      }
      expect(Array.from(a.runningMean!.view)).toEqual(Array.from(b.runningMean!.view));
      expect(Array.from(a.weightGrad!.view)).toEqual(Array.from(b.weightGrad!.view));
      // Eval mode: no collective, out still honoured.
      a.eval();
      b.eval();
      const yOut = new Float32Array(n);
      expect(await a.forward(x, shape, { out: yOut })).toBe(yOut);
      expect(Array.from(yOut)).toEqual(Array.from(await b.forward(x, shape)));
    }
  });

  it("a wrong-sized or aliasing out is rejected before any collective, changing nothing", async () => {
    const { comm, calls } = soloComm();
    using bn = new SyncBatchNorm(3, comm);
    await expect(bn.forward(x, shape, { out: new Float32Array(n - 1) })).rejects.toThrow(LengthMismatchError);
    using xt = WasmTensor.from(x);
    await expect(bn.forward(xt, shape, { out: xt })).rejects.toThrow(InvalidArgumentError);
    await expect(bn.forward(x, shape, { out: bn.runningMean! } as never)).rejects.toThrow(LengthMismatchError);
    expect(calls.n).toBe(0);
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!.view)).toEqual([0, 0, 0]);
    await bn.forward(x, shape);
    expect(calls.n).toBe(1);
    using dyt = WasmTensor.from(dy);
    await expect(bn.backward(dyt, { out: dyt })).rejects.toThrow(InvalidArgumentError);
    await expect(bn.backward(dy, { out: new Float32Array(n + 1) })).rejects.toThrow(LengthMismatchError);
    await expect(bn.backward(dy, { outZ: new Float32Array(n) } as never)).rejects.toThrow(InvalidOptionError);
    expect(calls.n).toBe(1);
    expect(Array.from(bn.weightGrad!.view)).toEqual([0, 0, 0]);
    const dx = await bn.backward(dy);
    expect(calls.n).toBe(2);
    expect(dx).toBeInstanceOf(Float32Array);
  });
});
