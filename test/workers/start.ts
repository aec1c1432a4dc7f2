/**
 * Starting a process group of test ranks (test/workers/rank.mjs) on Node worker_threads,
 * each driven through comlink; groups started here are disposed by `disposeAll()`.
 */
import { Worker } from "node:worker_threads";
import { expect } from "vitest";
import { wrap, type Remote } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { ProcessGroup, type ProcessGroupOptions, type StateDict } from "../../dist/index.js";

export const RANK = new URL("./rank.mjs", import.meta.url);

type Buf = Float32Array | Float64Array;
export interface Outcome {
  ok: boolean;
  name?: string;
  message?: string;
}

/** What test/workers/rank.mjs exposes. */
export interface RankApi {
  join(): Promise<{ rank: number; worldSize: number; transport: string }>;
  allReduce(a: Buf, op: "sum" | "mean"): Promise<Buf>;
  broadcast(a: Buf, root: number): Promise<Buf>;
  allGather(a: Buf): Promise<Buf[]>;
  reduceScatter(a: Buf, op: "sum" | "mean"): Promise<Buf>;
  allGatherSegments(a: Buf): Promise<Buf>;
  segment(length: number): Promise<[number, number]>;
  barrier(): Promise<void>;
  broken(): Promise<string | undefined>;
  outcome(kind: string, a?: Buf, arg?: unknown): Promise<Outcome>;
  exit(code: number): Promise<void>;
  bucketed(kind: "reduce" | "broadcast", sizes: number[], seed: number, opts: object): Promise<Float32Array[]>;
  bnCreate(numFeatures: number, opts: object, weight?: Float32Array, bias?: Float32Array): Promise<void>;
  bnTrain(mode: boolean): Promise<void>;
  bnForward(x: Float32Array, shape: number[], z?: Float32Array): Promise<Float32Array>;
  bnBackward(dy: Float32Array): Promise<Float32Array>;
  /** The layer's residualGrad after the last backward. */
  bnResidualGrad(): Promise<Float32Array | undefined>;
  bnState(): Promise<{ sd: StateDict; weightGrad?: Float32Array; biasGrad?: Float32Array }>;
  bnOutcome(x: Float32Array, shape: number[]): Promise<Outcome>;
}

export interface Started {
  group: ProcessGroup;
  ranks: Remote<RankApi>[];
  workers: Worker[];
}

const live: Started[] = [];

export async function startGroup(n: number, opts: ProcessGroupOptions = {}): Promise<Started> {
  const workers = Array.from({ length: n }, () => new Worker(RANK));
  const ranks = workers.map((w) => wrap<RankApi>(nodeEndpoint(w)));
  const joined = Promise.all(ranks.map((r) => r.join()));
  const group = await ProcessGroup.create(workers, opts);
  const info = await joined;
  info.forEach((x, i) => expect(x).toEqual({ rank: i, worldSize: n, transport: group.transport }));
  const s = { group, ranks, workers };
  live.push(s);
  return s;
}

export function disposeAll(): void {
  for (const s of live.splice(0)) s.group.dispose();
}
