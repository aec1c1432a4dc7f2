/**
 * Data-parallel training of the user's own parameters: {@link allReduceGradients} adds up
 * (or averages) every rank's gradients, {@link broadcastParameters} gives every rank the
 * same starting weights. Both pack the arrays into buckets of `bucketBytes` and run one
 * collective per bucket, not one per tensor (as PyTorch's DistributedDataParallel); a
 * `Float32Array` of at least {@link ALONE} elements that fits in a bucket goes alone, in
 * place, without the copies in and out of a bucket (keep a model's gradients in one flat
 * array to get that). The per-element result is the same either way.
 *
 * ```ts
 * await broadcastParameters(comm, model.params());   // once, before training
 * // each step, after backward on this rank's slice of the batch:
 * await allReduceGradients(comm, model.grads());      // now the whole batch's gradient
 * ```
 * @module
 */
import { InvalidArgumentError, InvalidOptionError } from "../engine/errors.js";
import { WasmTensor } from "../engine/tensor.js";
import { checkOptionKeys } from "../engine/validate.js";
import type { ReduceOp } from "./collective.js";
import type { Communicator } from "./communicator.js";

/**
 * A parameter or gradient: a `Float32Array`, or a {@link WasmTensor} (read through `.view`
 * at each copy). Pass wasm-resident arrays as the `WasmTensor`, not its `.view`: a view
 * taken before an async collective is detached if wasm memory grows meanwhile.
 */
export type Tensorish = Float32Array | WasmTensor;

/** How the gradient collectives pack tensors. */
export interface BucketOptions {
  /** Bytes per collective (default 4 MiB). */
  bucketBytes?: number;
}

/** Float32Arrays this large (and no larger than a bucket) are reduced in place, alone. */
export const ALONE = 1 << 14;

/** Large plain arrays alone and in place; everything else through packed buckets. */
async function bucketed(tensors: readonly Tensorish[], bucketBytes: number | undefined, f: (bucket: Float32Array) => Promise<unknown>): Promise<void> {
  const bytes = bucketBytes ?? 4 << 20;
  if (!Number.isSafeInteger(bytes) || bytes < 4) throw new InvalidOptionError(`bucketBytes must be an integer >= 4, got ${String(bytes)}`);
  if (!Array.isArray(tensors)) throw new InvalidArgumentError("expected an array of Float32Array or WasmTensor");
  // Checked before the first collective, so a bad argument leaves every rank in step.
  tensors.forEach((t, i) => {
    if (!(t instanceof Float32Array || t instanceof WasmTensor)) throw new InvalidArgumentError(`tensor ${i} is not a Float32Array or WasmTensor`);
  });
  const alone = (t: Tensorish) => t instanceof Float32Array && t.length >= ALONE && t.length * 4 <= bytes;
  let run: Tensorish[] = [];
  for (const t of tensors) {
    if (!alone(t)) {
      run.push(t);
      continue;
    }
    if (run.length) await packed(run, bytes, f);
    run = [];
    await f(t as Float32Array);
  }
  if (run.length) await packed(run, bytes, f);
}

/** `tensors` as one flat vector, processed in buckets: `f(bucket)` runs on each in place. */
async function packed(tensors: readonly Tensorish[], bytes: number, f: (bucket: Float32Array) => Promise<unknown>): Promise<void> {
  // Views are re-read at each copy: wasm memory may grow while a collective is pending.
  const view = (i: number) => {
    const t = tensors[i];
    return t instanceof WasmTensor ? t.view : t;
  };
  const total = tensors.reduce((a, t) => a + t.length, 0);
  const cap = Math.min(Math.floor(bytes / 4), total);
  const bucket = new Float32Array(cap);
  let ti = 0; // tensor and offset where the current bucket starts
  let off = 0;
  for (let done = 0; done < total; ) {
    const n = Math.min(cap, total - done);
    // Copy [done, done + n) of the flat vector in, run f, copy it back out.
    const copy = (into: boolean) => {
      let t = ti, o = off, at = 0;
      while (at < n) {
        const v = view(t);
        const k = Math.min(v.length - o, n - at);
        if (into) bucket.set(v.subarray(o, o + k), at);
        else v.set(bucket.subarray(at, at + k), o);
        at += k;
        o += k;
        if (o === v.length) {
          t++;
          o = 0;
        }
      }
      return [t, o] as const;
    };
    copy(true);
    await f(n === cap ? bucket : bucket.subarray(0, n));
    [ti, off] = copy(false);
    done += n;
  }
}

/**
 * All-reduces gradients across the group, in place: with `"sum"` (default) every rank ends
 * with the sum over ranks (the gradient of the whole batch when each rank's loss is its
 * share of the batch's loss); with `"mean"`, the average (when each rank's loss is a mean
 * over its own slice, as in PyTorch's DDP). Every rank must call it with tensors of the
 * same sizes in the same order. Every rank gets the same bits.
 */
export async function allReduceGradients(
  comm: Communicator, grads: readonly Tensorish[], opts: BucketOptions & { op?: ReduceOp } = {},
): Promise<void> {
  checkOptionKeys("allReduceGradients", opts, ["op", "bucketBytes"]);
  const { op = "sum", bucketBytes } = opts;
  await bucketed(grads, bucketBytes, (b) => comm.allReduce(b, { op }));
}

/** Copies rank `root`'s parameters to every rank, in place (before training starts). */
export async function broadcastParameters(
  comm: Communicator, params: readonly Tensorish[], opts: BucketOptions & { root?: number } = {},
): Promise<void> {
  checkOptionKeys("broadcastParameters", opts, ["root", "bucketBytes"]);
  const { root = 0, bucketBytes } = opts;
  await bucketed(params, bucketBytes, (b) => comm.broadcast(b, root));
}
