// A minimal protobuf writer, just enough of onnx.proto to build a one-node
// BatchNormalization model in memory (nothing is read from or written to disk).
//
// Field numbers are from onnx/onnx.proto (ModelProto, GraphProto, NodeProto,
// AttributeProto, TensorProto, ValueInfoProto, TypeProto, TensorShapeProto).

const te = new TextEncoder();

class Writer {
  constructor() { this.parts = []; this.len = 0; }
  #push(bytes) { this.parts.push(bytes); this.len += bytes.length; }
  varint(v) {
    // Non-negative integers only (all we need); BigInt-free up to 2^53.
    const out = [];
    let n = v;
    while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); }
    out.push(n);
    this.#push(Uint8Array.from(out));
    return this;
  }
  tag(field, wire) { return this.varint(field * 8 + wire); }
  int(field, v) { return this.tag(field, 0).varint(v); }
  bytes(field, b) { this.tag(field, 2).varint(b.length); this.#push(b); return this; }
  string(field, s) { return this.bytes(field, te.encode(s)); }
  message(field, w) { return this.bytes(field, w.finish()); }
  float(field, v) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.tag(field, 5);
    this.#push(b);
    return this;
  }
  finish() {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) { out.set(p, o); o += p.length; }
    return out;
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_FLOAT = 1, ATTR_INT = 2; // AttributeProto.AttributeType

function tensorProto(name, dims, data) {
  const w = new Writer();
  for (const d of dims) w.int(1, d); // dims (non-packed repeated int64 is accepted)
  w.int(2, FLOAT); // data_type
  w.string(8, name); // name
  w.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)); // raw_data (little-endian)
  return w;
}

function valueInfo(name, dims) {
  const shape = new Writer();
  for (const d of dims) shape.message(1, new Writer().int(1, d)); // dim { dim_value }
  const tensorType = new Writer().int(1, FLOAT).message(2, shape); // elem_type, shape
  const type = new Writer().message(1, tensorType); // TypeProto.tensor_type
  return new Writer().string(1, name).message(2, type);
}

function attribute(name, type, value) {
  const w = new Writer().string(1, name);
  if (type === ATTR_FLOAT) w.float(2, value);
  else w.int(3, value);
  return w.int(20, type);
}

/**
 * A model with one BatchNormalization node (opset 15).
 * Inference (training=false): inputs X; scale, B, mean, var are initializers; output Y.
 * Training (training=true, training_mode=1): inputs X, scale, B, input_mean, input_var;
 * outputs Y, running_mean, running_var.
 */
export function batchNormModel({ shape, scale, bias, mean, variance, eps, momentum = 0.9, training = false }) {
  const C = shape[1];
  const node = new Writer();
  for (const n of ["X", "scale", "B", "input_mean", "input_var"]) node.string(1, n);
  const outputs = training ? ["Y", "running_mean", "running_var"] : ["Y"];
  for (const n of outputs) node.string(2, n);
  node.string(3, "bn").string(4, "BatchNormalization");
  node.message(5, attribute("epsilon", ATTR_FLOAT, eps));
  if (training) {
    node.message(5, attribute("momentum", ATTR_FLOAT, momentum));
    node.message(5, attribute("training_mode", ATTR_INT, 1));
  }

  const graph = new Writer().message(1, node).string(2, "batchnorm");
  const params = { scale, B: bias, input_mean: mean, input_var: variance };
  if (!training) {
    for (const [n, d] of Object.entries(params)) graph.message(5, tensorProto(n, [C], d));
  }
  graph.message(11, valueInfo("X", shape));
  if (training) for (const n of Object.keys(params)) graph.message(11, valueInfo(n, [C]));
  graph.message(12, valueInfo("Y", shape));
  if (training) {
    graph.message(12, valueInfo("running_mean", [C]));
    graph.message(12, valueInfo("running_var", [C]));
  }

  const opset = new Writer().string(1, "").int(2, 15);
  return new Writer()
    .int(1, 8) // ir_version
    .string(2, "batchnorm-wasm-bench") // producer_name
    .message(7, graph)
    .message(8, opset)
    .finish();
}

/**
 * A model with one node of any operator: `inputs` fed at run time ({ name: dims }),
 * `initializers` baked in ({ name: { dims, data } }), float attributes `floats` and int
 * attributes `ints`, outputs `outputs` ({ name: dims }), at `opset` (default domain).
 */
export function singleNodeModel({ op, inputs, initializers = {}, floats = {}, ints = {}, outputs, opset }) {
  const node = new Writer();
  for (const n of [...Object.keys(inputs), ...Object.keys(initializers)]) node.string(1, n);
  for (const n of Object.keys(outputs)) node.string(2, n);
  node.string(3, "n0").string(4, op);
  for (const [k, v] of Object.entries(floats)) node.message(5, attribute(k, ATTR_FLOAT, v));
  for (const [k, v] of Object.entries(ints)) node.message(5, attribute(k, ATTR_INT, v));
  const graph = new Writer().message(1, node).string(2, op);
  for (const [n, t] of Object.entries(initializers)) graph.message(5, tensorProto(n, t.dims, t.data));
  for (const [n, d] of Object.entries(inputs)) graph.message(11, valueInfo(n, d));
  for (const [n, d] of Object.entries(outputs)) graph.message(12, valueInfo(n, d));
  return new Writer().int(1, 8).string(2, "batchnorm-wasm-bench").message(7, graph).message(8, new Writer().string(1, "").int(2, opset)).finish();
}
