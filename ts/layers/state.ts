/**
 * State dicts with PyTorch's names, shared by the modules and the pool: which keys a
 * layer has, building one, and checking one before anything is loaded.
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError } from "../engine/errors.js";
import type { LayerConfig } from "./options.js";

/** PyTorch's state-dict entries for a batch-norm layer (absent ones are omitted). */
export interface StateDict {
  /** gamma, one per channel (affine layers). */
  weight?: Float32Array;
  /** beta, one per channel (affine layers). */
  bias?: Float32Array;
  /** Running mean (layers that track running statistics). */
  running_mean?: Float32Array;
  /** Running variance (layers that track running statistics). */
  running_var?: Float32Array;
  /** Training forward passes seen (an int64 in PyTorch, hence a bigint). */
  num_batches_tracked?: bigint;
}

type Shape = Pick<LayerConfig, "numFeatures" | "affine" | "trackRunningStats">;

/** The keys a layer with this configuration has, in PyTorch's order. */
export function stateKeysOf(cfg: Shape): (keyof StateDict)[] {
  const keys: (keyof StateDict)[] = [];
  if (cfg.affine) keys.push("weight", "bias");
  if (cfg.trackRunningStats) keys.push("running_mean", "running_var", "num_batches_tracked");
  return keys;
}

/** A state dict holding copies of the given buffers. */
export function makeStateDict(
  cfg: Shape,
  b: { weight?: Float32Array; bias?: Float32Array; runningMean?: Float32Array; runningVar?: Float32Array; numBatchesTracked: number },
): StateDict {
  const sd: StateDict = {};
  if (cfg.affine) {
    sd.weight = b.weight!.slice();
    sd.bias = b.bias!.slice();
  }
  if (cfg.trackRunningStats) {
    sd.running_mean = b.runningMean!.slice();
    sd.running_var = b.runningVar!.slice();
    sd.num_batches_tracked = BigInt(b.numBatchesTracked);
  }
  return sd;
}

/**
 * Throws unless `sd` can be loaded into a layer with this configuration: with `strict`, no
 * missing and no unexpected keys; always, one value per channel and a non-negative
 * bigint count.
 */
export function checkStateDict(sd: StateDict, cfg: Shape, strict: boolean, what: string): void {
  const expected = stateKeysOf(cfg);
  const given = Object.keys(sd).filter((k) => (sd as Record<string, unknown>)[k] !== undefined);
  if (strict) {
    const missing = expected.filter((k) => !given.includes(k));
    const unexpected = given.filter((k) => !(expected as string[]).includes(k));
    if (missing.length || unexpected.length) {
      throw new InvalidArgumentError(
        `state dict does not match the ${what}: missing [${missing.join(", ")}], unexpected [${unexpected.join(", ")}]`,
      );
    }
  }
  for (const k of ["weight", "bias", "running_mean", "running_var"] as const) {
    const v = sd[k];
    if (v === undefined || !expected.includes(k)) continue;
    if (!(v instanceof Float32Array)) throw new InvalidArgumentError(`state dict "${k}" must be a Float32Array`);
    if (v.length !== cfg.numFeatures) {
      throw new ChannelMismatchError(`state dict "${k}" has ${v.length} values but the ${what} has numFeatures = ${cfg.numFeatures}`);
    }
  }
  const nbt = sd.num_batches_tracked;
  if (nbt !== undefined && (typeof nbt !== "bigint" || nbt < 0n)) {
    throw new InvalidArgumentError(`state dict "num_batches_tracked" must be a non-negative bigint`);
  }
}
