/**
 * What every transport of a process group shares: the collective descriptors that let
 * every rank check that all ranks made the same call, the deterministic reduction (ranks
 * summed in rank order, in float64, rounded once), and the errors collectives throw.
 * @module
 */
import { BatchNormError } from "../engine/errors.js";

/** A buffer a collective works on. */
export type CollectiveBuffer = Float32Array | Float64Array;

/** Reduction of {@link Communicator.allReduce}: the sum, or the sum divided by the world size. */
export type ReduceOp = "sum" | "mean";

/**
 * The ranks did not make the same collective call (a different collective, buffer length,
 * element type or root). Every rank of the call throws it, with every rank's call in the
 * message; the group stays usable.
 */
export class CollectiveMismatchError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "CollectiveMismatchError";
}

/**
 * A collective did not complete within the group's `timeoutMs` (a rank never made the
 * call). The group is broken afterwards: every rank's pending and later collectives
 * reject with `WorkerError`.
 */
export class CollectiveTimeoutError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "CollectiveTimeoutError";
}

/** The kinds of collective, as numbers so the shared-memory transport can store them. */
export const Op = {
  allReduceSum: 1, allReduceMean: 2, broadcast: 3, barrier: 4, allGather: 5,
  reduceScatterSum: 6, reduceScatterMean: 7, allGatherSegments: 8,
} as const;

/** One rank's call: which collective, element type (4 or 8 bytes), length, root. */
export interface Descriptor {
  op: number;
  bytes: number;
  length: number;
  root: number;
}

/** A call as a person reads it: `allReduce(sum, 128 float32)`. */
export function describe(d: Descriptor): string {
  const type = d.bytes === 8 ? "float64" : "float32";
  switch (d.op) {
    case Op.allReduceSum: return `allReduce(sum, ${d.length} ${type})`;
    case Op.allReduceMean: return `allReduce(mean, ${d.length} ${type})`;
    case Op.broadcast: return `broadcast(root ${d.root}, ${d.length} ${type})`;
    case Op.allGather: return `allGather(${d.length} ${type})`;
    case Op.reduceScatterSum: return `reduceScatter(sum, ${d.length} ${type})`;
    case Op.reduceScatterMean: return `reduceScatter(mean, ${d.length} ${type})`;
    case Op.allGatherSegments: return `allGatherSegments(${d.length} ${type})`;
    case Op.barrier: return "barrier()";
    default: return `unknown collective ${d.op}`;
  }
}

/** Throws {@link CollectiveMismatchError} unless all ranks' descriptors are equal. */
export function checkSameCall(all: readonly Descriptor[], rank: number): void {
  const me = all[rank];
  const same = all.every((d) => d.op === me.op && d.bytes === me.bytes && d.length === me.length && d.root === me.root);
  if (!same) {
    throw new CollectiveMismatchError(
      `the ranks made different collective calls: ${all.map((d, r) => `rank ${r} ${describe(d)}`).join(", ")}`,
    );
  }
}

/** This rank's call, for the other ranks to compare (bytes 0 and length 0 without a buffer). */
export function descriptorOf(op: number, buf: CollectiveBuffer | undefined, root = 0): Descriptor {
  return { op, bytes: buf ? buf.BYTES_PER_ELEMENT : 0, length: buf ? buf.length : 0, root };
}

/**
 * Rank `rank`'s segment `[lo, hi)` of a buffer of `length` elements split over
 * `worldSize` ranks: contiguous, in rank order, sizes differing by at most one.
 */
export function segmentOf(length: number, rank: number, worldSize: number): [number, number] {
  return [Math.floor((length * rank) / worldSize), Math.floor((length * (rank + 1)) / worldSize)];
}

/**
 * `out[i] = parts[0][i] + parts[1][i] + ...` for `i` in `[lo, hi)`, in rank order and in
 * float64 (one rounding per element for float32), divided by the number of parts for
 * `"mean"`. Every rank that runs it on the same parts gets the same bits.
 */
export function reduceInto(out: CollectiveBuffer, parts: readonly CollectiveBuffer[], lo: number, hi: number, mean: boolean): void {
  const n = parts.length;
  const p0 = parts[0];
  if (n === 2) {
    if (out instanceof Float32Array && !mean) add2F32(out, p0 as Float32Array, parts[1] as Float32Array, lo, hi);
    else if (out instanceof Float32Array) sum2F32(out, p0 as Float32Array, parts[1] as Float32Array, lo, hi, 0.5);
    else sum2F64(out, p0 as Float64Array, parts[1] as Float64Array, lo, hi, mean ? 0.5 : 1);
    return;
  }
  for (let i = lo; i < hi; i++) {
    let s = p0[i];
    for (let k = 1; k < n; k++) s += parts[k][i];
    out[i] = mean ? s / n : s;
  }
}

// Two ranks (the common case), one copy of the loop per element type: V8 then sees one
// array type per loop, and the Float32Array loop of a gradient all-reduce runs ~2x faster
// than one loop shared with the Float64Array collectives (55k floats: 45 us against 110 us,
// unrolled by 4). Each element: (p0 + p1) * scale in float64, rounded once on the store;
// scale is 1 or 0.5, so the bits are those of the sum and of the sum / 2. The float32 sum
// (scale 1) has a loop of its own, add2F32, below; sum2F32 is the float32 mean.
function sum2F32(out: Float32Array, p0: Float32Array, p1: Float32Array, lo: number, hi: number, scale: number): void {
  let i = lo;
  for (const rest = lo + ((hi - lo) & 3); i < rest; i++) out[i] = (p0[i] + p1[i]) * scale; // see add2F32
  for (; i < hi; i += 4) {
    out[i] = (p0[i] + p1[i]) * scale;
    out[i + 1] = (p0[i + 1] + p1[i + 1]) * scale;
    out[i + 2] = (p0[i + 2] + p1[i + 2]) * scale;
    out[i + 3] = (p0[i + 3] + p1[i + 3]) * scale;
  }
}

// The sum alone (a gradient all-reduce's case): no multiply by 1, unrolled by 8; 55k
// floats in 35 us against 48 us for sum2F32 with scale 1 (Node 20, from cache). The same
// bits: the float64 sum of two float32 values, rounded once on the store. One loop for both
// (sum2F32 unrolled by 8) measured faster alone but slower inside reduceScatter (110k
// floats, 2 workers: 50-51 against 46-47 us, two A/B runs), so the two stay apart.
// The last `(hi - lo) % 8` elements go first, not after the unrolled loop: V8 compiles that
// loop on-stack during a first long call, and code after it that had not run yet had no
// type feedback there; every later call entered that code and deoptimised on leaving the
// loop (~100 deopts a replica in the MNIST page's first few hundred steps, Chromium's
// `--js-flags=--trace-deopt`). Elementwise, so the order changes no bits.
function add2F32(out: Float32Array, p0: Float32Array, p1: Float32Array, lo: number, hi: number): void {
  let i = lo;
  for (const rest = lo + ((hi - lo) & 7); i < rest; i++) out[i] = p0[i] + p1[i];
  for (; i < hi; i += 8) {
    out[i] = p0[i] + p1[i];
    out[i + 1] = p0[i + 1] + p1[i + 1];
    out[i + 2] = p0[i + 2] + p1[i + 2];
    out[i + 3] = p0[i + 3] + p1[i + 3];
    out[i + 4] = p0[i + 4] + p1[i + 4];
    out[i + 5] = p0[i + 5] + p1[i + 5];
    out[i + 6] = p0[i + 6] + p1[i + 6];
    out[i + 7] = p0[i + 7] + p1[i + 7];
  }
}

function sum2F64(out: Float64Array, p0: Float64Array, p1: Float64Array, lo: number, hi: number, scale: number): void {
  let i = lo;
  for (const rest = lo + ((hi - lo) & 3); i < rest; i++) out[i] = (p0[i] + p1[i]) * scale; // see add2F32
  for (; i < hi; i += 4) {
    out[i] = (p0[i] + p1[i]) * scale;
    out[i + 1] = (p0[i + 1] + p1[i + 1]) * scale;
    out[i + 2] = (p0[i + 2] + p1[i + 2]) * scale;
    out[i + 3] = (p0[i + 3] + p1[i + 3]) * scale;
  }
}
