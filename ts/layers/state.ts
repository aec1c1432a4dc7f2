/**
 * State dicts with PyTorch's names, shared by the modules: which keys a layer has,
 * building one, checking one before anything is loaded, and moving one in and out of a
 * safetensors file.
 * @module
 */
import { ChannelMismatchError, InvalidArgumentError } from "../engine/errors.js";
import type { LayerConfig } from "./options.js";
import { readSafetensors, writeSafetensors, SafetensorsError, type NamedTensor } from "./safetensors.js";

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

/** Any module's state dict: float vectors and the I64 `num_batches_tracked`. */
type AnyStateDict = Partial<Record<string, Float32Array | bigint>>;

/** A state dict as a safetensors file: `keys` named `prefix + key`, F32 vectors and I64 scalars. */
export function stateToSafetensors<T extends object>(
  sd: T, keys: readonly (keyof T & string)[], prefix: string, metadata?: Record<string, string>,
): Uint8Array {
  const tensors: Record<string, NamedTensor> = {};
  for (const k of keys) {
    const v = sd[k] as Float32Array | bigint;
    tensors[prefix + k] =
      typeof v === "bigint" ? { dtype: "I64", shape: [], data: BigInt64Array.of(v) } : { dtype: "F32", shape: [v.length], data: v };
  }
  return writeSafetensors(tensors, metadata);
}

/**
 * The entries `prefix + key` of a safetensors file (validated in full first) as state-dict
 * values: `num_batches_tracked` a single I64, the rest F32 or F64 floats (of rank 1 when
 * `vectorLength` is given, which the message names). Absent entries are left out: the
 * module's loadStateDict decides whether that is an error.
 */
export function stateFromSafetensors(bytes: Uint8Array, keys: readonly string[], prefix: string, vectorLength?: number): AnyStateDict {
  const { tensors } = readSafetensors(bytes);
  const sd: AnyStateDict = {};
  for (const k of keys) {
    const t = tensors[prefix + k];
    if (!t) continue;
    if (k === "num_batches_tracked") {
      if (t.dtype !== "I64" || t.data.length !== 1) throw new SafetensorsError(`"${prefix + k}" must be a single I64 value`);
      sd[k] = (t.data as BigInt64Array)[0];
    } else {
      if (t.dtype === "I64") throw new SafetensorsError(`"${prefix + k}" must be F32 or F64, got I64`);
      if (vectorLength !== undefined && t.shape.length !== 1) {
        throw new SafetensorsError(`"${prefix + k}" must have shape [${vectorLength}], got [${t.shape}]`);
      }
      sd[k] = Float32Array.from(t.data as Float32Array | Float64Array);
    }
  }
  return sd;
}
