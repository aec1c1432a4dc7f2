/**
 * The safetensors format (what PyTorch users share weights in): an unsigned 64-bit
 * little-endian header length, a JSON header mapping each tensor name to
 * `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the data section,
 * optional `__metadata__` of string values), then the little-endian data.
 *
 * Reading validates everything before returning anything: a malformed or truncated file
 * throws {@link SafetensorsError} naming the problem; nothing is partially loaded.
 * @module
 */
import { BatchNormError } from "../engine/errors.js";

/** A safetensors file is malformed, truncated, or does not hold what was expected. */
export class SafetensorsError extends BatchNormError {
  /** The class name as a literal, so it survives minification. */
  override name = "SafetensorsError";
}

/** dtypes this package reads and writes (what BatchNorm state uses, plus f64 for import). */
export type DType = "F32" | "F64" | "I64";
const BYTES: Record<DType, number> = { F32: 4, F64: 8, I64: 8 };

/** One tensor of a safetensors file. */
export interface NamedTensor {
  /** Element type. */
  dtype: DType;
  /** Dimensions (`[]` for a scalar). */
  shape: number[];
  /** F32: Float32Array, F64: Float64Array, I64: BigInt64Array. */
  data: Float32Array | Float64Array | BigInt64Array;
}

const MAX_HEADER = 100_000_000; // the reference implementation's limit

/** Serialises tensors (in the given key order) and optional string metadata. */
export function writeSafetensors(tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new SafetensorsError(`tensor "${name}": shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    const bytes = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // pad so the data section is 8-byte aligned
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of Object.values(tensors)) {
    const w = BYTES[t.dtype];
    t.data.forEach((v: number | bigint, i: number) => {
      if (t.dtype === "F32") view.setFloat32(at + i * w, v as number, true);
      else if (t.dtype === "F64") view.setFloat64(at + i * w, v as number, true);
      else view.setBigInt64(at + i * w, v as bigint, true);
    });
    at += t.data.length * w;
  }
  return out;
}

/** Parses and validates a safetensors file. */
export function readSafetensors(bytes: Uint8Array): {
  /** The tensors by name, in file order. */
  tensors: Record<string, NamedTensor>;
  /** The header's `__metadata__` strings (empty if none). */
  metadata: Record<string, string>;
} {
  if (!(bytes instanceof Uint8Array)) throw new SafetensorsError("safetensors input must be a Uint8Array");
  if (bytes.length < 8) throw new SafetensorsError(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER)) throw new SafetensorsError(`header length ${headerLen} exceeds the ${MAX_HEADER}-byte limit`);
  if (8n + headerLen > BigInt(bytes.length)) {
    throw new SafetensorsError(`header length ${headerLen} runs past the end of the ${bytes.length}-byte file (truncated?)`);
  }
  const hl = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + hl)));
  } catch (e) {
    throw new SafetensorsError(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new SafetensorsError("header must be a JSON object");
  const dataStart = 8 + hl;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: [string, NamedTensor, [number, number]][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null) throw new SafetensorsError("__metadata__ must be an object of strings");
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") throw new SafetensorsError(`__metadata__.${k} must be a string`);
        metadata[k] = v;
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== "object" || info === null) throw new SafetensorsError(`tensor "${name}": entry must be an object`);
    const dtype = info.dtype;
    if (dtype !== "F32" && dtype !== "F64" && dtype !== "I64") {
      throw new SafetensorsError(`tensor "${name}": dtype ${JSON.stringify(dtype)} is not supported (F32, F64, I64)`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor "${name}": shape must be an array of non-negative integers`);
    }
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(`tensor "${name}": data_offsets must be [begin, end] with 0 <= begin <= end`);
    }
    if (off[1] > dataLen) throw new SafetensorsError(`tensor "${name}": data_offsets [${off}] run past the ${dataLen}-byte data section (truncated?)`);
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== n * BYTES[dtype]) {
      throw new SafetensorsError(`tensor "${name}": ${off[1] - off[0]} bytes for shape [${shape}] of ${dtype} (expected ${n * BYTES[dtype]})`);
    }
    entries.push([name, { dtype, shape: shape as number[], data: new Float32Array(0) }, off as [number, number]]);
  }
  // The data section must be covered exactly, without overlaps or holes (as the spec requires).
  const sorted = [...entries].sort((a, b) => a[2][0] - b[2][0]);
  let expect = 0;
  for (const [name, , [b, e]] of sorted) {
    if (b !== expect) throw new SafetensorsError(`tensor "${name}": data starts at ${b}, expected ${expect} (overlap or hole)`);
    expect = e;
  }
  if (expect !== dataLen) throw new SafetensorsError(`data section is ${dataLen} bytes but tensors cover ${expect}`);

  const tensors: Record<string, NamedTensor> = {};
  for (const [name, t, [b]] of entries) {
    const n = t.shape.reduce((a, c) => a * c, 1);
    const at = dataStart + b;
    if (t.dtype === "F32") t.data = Float32Array.from({ length: n }, (_, i) => view.getFloat32(at + 4 * i, true));
    else if (t.dtype === "F64") t.data = Float64Array.from({ length: n }, (_, i) => view.getFloat64(at + 8 * i, true));
    else t.data = BigInt64Array.from({ length: n }, (_, i) => view.getBigInt64(at + 8 * i, true));
    tensors[name] = t;
  }
  return { tensors, metadata };
}
