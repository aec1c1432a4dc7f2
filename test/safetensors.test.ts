/** safetensors: a file PyTorch wrote, a file an independent writer in this test writes,
 * round trips, and malformed files (each a clear error, nothing loaded). */
import { beforeAll, describe, expect, it } from "vitest";
import { init, BatchNorm2d, readSafetensors, writeSafetensors, SafetensorsError, ChannelMismatchError, InvalidArgumentError } from "../dist/index.js";
import { torchFixture, torchSafetensors } from "./pytorch.js";
import { expectClose } from "./close.js";

beforeAll(async () => {
  await init();
});

/** An independent minimal writer: header JSON + little-endian data, no padding. */
function writeByHand(entries: { name: string; dtype: "F32" | "I64" | "F64"; shape: number[]; values: number[] }[], headerExtra: Record<string, unknown> = {}) {
  const size = { F32: 4, F64: 8, I64: 8 };
  let off = 0;
  const header: Record<string, unknown> = { ...headerExtra };
  for (const e of entries) {
    const n = e.values.length * size[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const buf = Buffer.alloc(8 + h.length + off);
  buf.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(buf, 8);
  let at = 8 + h.length;
  for (const e of entries) {
    for (const v of e.values) {
      if (e.dtype === "F32") at = buf.writeFloatLE(v, at);
      else if (e.dtype === "F64") at = buf.writeDoubleLE(v, at);
      else at = buf.writeBigInt64LE(BigInt(v), at);
    }
  }
  return new Uint8Array(buf);
}

const C = 5;
const validEntries = () => [
  { name: "bn1.weight", dtype: "F32" as const, shape: [C], values: [1, 2, 3, 4, 5] },
  { name: "bn1.bias", dtype: "F64" as const, shape: [C], values: [0.5, 0.25, 0, -1, 2] },
  { name: "bn1.running_mean", dtype: "F32" as const, shape: [C], values: [0.1, 0.2, 0.3, 0.4, 0.5] },
  { name: "bn1.running_var", dtype: "F32" as const, shape: [C], values: [1, 1.5, 2, 2.5, 3] },
  { name: "bn1.num_batches_tracked", dtype: "I64" as const, shape: [], values: [7] },
  { name: "fc.weight", dtype: "F32" as const, shape: [2, 2], values: [9, 9, 9, 9] }, // another layer
];

describe("loading", () => {
  it("a layer trained in PyTorch (file written by PyTorch's safetensors) loads and runs like PyTorch", () => {
    using bn = new BatchNorm2d(5);
    bn.loadSafetensors(torchSafetensors, { prefix: "bn1." });
    const st = torchFixture.safetensors_state;
    expectClose("weight", bn.weight!.view, st.weight as number[], 0, 0);
    expectClose("running_var", bn.runningVar!.view, st.running_var as number[], 0, 0);
    expect(bn.numBatchesTracked).toBe(st.num_batches_tracked);
    bn.eval();
    const e = torchFixture.safetensors_eval;
    expectClose("eval y", bn.forward(Float32Array.from(e.x), e.shape) as Float32Array, e.y);
    expect(readSafetensors(torchSafetensors).metadata.source).toMatch(/BatchNorm2d/);
  });

  it("a file from the independent writer loads (F64 converted, other layers ignored)", () => {
    using bn = new BatchNorm2d(C);
    bn.loadSafetensors(writeByHand(validEntries()), { prefix: "bn1." });
    expect(Array.from(bn.weight!.view)).toEqual([1, 2, 3, 4, 5]);
    expect(Array.from(bn.bias!.view)).toEqual([0.5, 0.25, 0, -1, 2]);
    expect(bn.numBatchesTracked).toBe(7);
  });

  it("round trips through our writer, which the independent reading agrees with", () => {
    using a = new BatchNorm2d(C);
    a.loadSafetensors(writeByHand(validEntries()), { prefix: "bn1." });
    const bytes = a.toSafetensors("layer.", { note: "round trip" });
    // Read the header by hand: names, dtypes, shapes, offsets as the format defines them.
    const hl = Number(Buffer.from(bytes).readBigUInt64LE(0));
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + hl)).toString("utf8"));
    expect(header.__metadata__).toEqual({ note: "round trip" });
    expect(header["layer.num_batches_tracked"]).toMatchObject({ dtype: "I64", shape: [] });
    const w = header["layer.weight"];
    expect(w).toMatchObject({ dtype: "F32", shape: [C] });
    expect(Array.from(new Float32Array(bytes.slice(8 + hl + w.data_offsets[0], 8 + hl + w.data_offsets[1]).buffer))).toEqual([1, 2, 3, 4, 5]);
    using b = new BatchNorm2d(C);
    b.loadSafetensors(bytes, { prefix: "layer." });
    expect(b.stateDict()).toEqual(a.stateDict());
    expect(readSafetensors(writeSafetensors({ t: { dtype: "I64", shape: [2], data: BigInt64Array.of(-1n, 5n) } })).tensors.t.data).toEqual(BigInt64Array.of(-1n, 5n));
  });
});

describe("malformed files are rejected with a clear error and load nothing", () => {
  const good = writeByHand(validEntries());
  const hl = Number(Buffer.from(good).readBigUInt64LE(0));
  const withHeader = (edit: (h: Record<string, any>) => void) => {
    const h = JSON.parse(Buffer.from(good.subarray(8, 8 + hl)).toString("utf8"));
    edit(h);
    const hb = Buffer.from(JSON.stringify(h));
    const out = Buffer.alloc(8 + hb.length + good.length - 8 - hl);
    out.writeBigUInt64LE(BigInt(hb.length), 0);
    hb.copy(out, 8);
    Buffer.from(good.subarray(8 + hl)).copy(out, 8 + hb.length);
    return new Uint8Array(out);
  };
  const cases: [string, Uint8Array, RegExp, new (...a: never[]) => Error][] = [
    ["shorter than 8 bytes", good.subarray(0, 5), /too short/, SafetensorsError],
    ["truncated data", good.subarray(0, good.length - 4), /run past|truncated|cover/, SafetensorsError],
    ["header length past the end", (() => { const b = good.slice(); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })(), /exceeds|past the end/, SafetensorsError],
    ["header not JSON", (() => { const b = good.slice(); b[8] = 0x7b + 1; return b; })(), /not valid UTF-8 JSON/, SafetensorsError],
    ["unsupported dtype", withHeader((h) => (h["bn1.weight"].dtype = "BF16")), /dtype "BF16" is not supported/, SafetensorsError],
    ["byte count does not match shape", withHeader((h) => (h["bn1.weight"].shape = [6])), /20 bytes for shape \[6\]/, SafetensorsError],
    ["overlapping data", withHeader((h) => (h["bn1.bias"].data_offsets = [0, 40])), /overlap or hole/, SafetensorsError],
    ["negative offsets", withHeader((h) => (h["bn1.bias"].data_offsets = [-8, 32])), /data_offsets must be/, SafetensorsError],
    ["wrong channel count", writeByHand(validEntries().map((e) => (e.name === "bn1.running_var" ? { ...e, shape: [6], values: [1, 1, 1, 1, 1, 1] } : e))), /running_var" has 6 values/, ChannelMismatchError],
    ["missing entry", writeByHand(validEntries().filter((e) => e.name !== "bn1.running_mean")), /missing \[running_mean\]/, InvalidArgumentError],
    ["num_batches_tracked not I64", writeByHand(validEntries().map((e) => (e.name === "bn1.num_batches_tracked" ? { ...e, dtype: "F32" as const } : e))), /single I64 value/, SafetensorsError],
  ];
  it.each(cases)("%s", (_what, bytes, msg, kind) => {
    using bn = new BatchNorm2d(C);
    const before = bn.stateDict();
    expect(() => bn.loadSafetensors(bytes, { prefix: "bn1." })).toThrow(kind);
    expect(() => bn.loadSafetensors(bytes, { prefix: "bn1." })).toThrow(msg);
    expect(bn.stateDict()).toEqual(before);
  });
});
