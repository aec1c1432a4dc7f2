// The boundary's share of a plain-array call: the copies the streaming path makes between
// the caller's arrays and wasm memory (the library's own windows, `streamElementwise`),
// with no kernel at all. A plain-array call cannot be faster than its copies, so
// resident time / copies time bounds its "plain / resident" ratio from above, and
// copy time / copies time bounds eval's "of copy".
import { Staging, streamElementwise } from "../../dist/engine/staging.js";

/** The passes each call makes over the caller's arrays: inputs copied in, outputs out. */
export const PASSES = {
  eval: (a) => [{ inputs: [a.x], outputs: [a.y] }],
  train: (a) => [{ inputs: [a.x], outputs: [] }, { inputs: [a.x], outputs: [a.y] }],
  backward: (a) => [{ inputs: [a.dy, a.x], outputs: [] }, { inputs: [a.dy, a.x], outputs: [a.dx] }],
};

/**
 * A thunk that makes `op`'s copies through `engine`'s memory (shared or not) for a tensor
 * of dims `d` ({ outer, channels, inner }); `arrays` holds x, dy, y, dx (Float32Array).
 */
export function boundaryCopies(engine, d, op, arrays) {
  const passes = PASSES[op](arrays);
  const none = () => {};
  return () => {
    const s = new Staging(engine);
    try {
      for (const p of passes) streamElementwise(s, d, p.inputs, p.outputs, none);
    } finally {
      s.release();
    }
  };
}
