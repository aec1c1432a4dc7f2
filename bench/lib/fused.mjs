// Fused BN + ReLU and BN + add + ReLU (issue 10) against the unfused composition in wasm:
// BN, then a separate ReLU (or add + ReLU) pass, and in backward a separate ReLU-gradient
// pass before the plain BN backward. All on wasm-resident tensors of one build, so the
// comparison is of memory passes, not of copies.
//
// The separate passes run through the same kernels with identity statistics (mean 0,
// variance 1, eps 0, so scale is exactly 1): eval forward with `relu` (and `z`) reads its
// input (and z) and writes its output, exactly what a standalone ReLU (add + ReLU) pass
// moves; eval-mode backward with the ReLU's output `y` and no parameter gradients reads dy
// and y and writes the masked gradient, what a standalone ReLU backward moves (its input
// `x` is not read when no parameter gradients are asked for).
import { batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn, reluMaskLength, WasmTensor } from "../../dist/index.js";

/**
 * Returns { cases: [{ id, fn }], passes, check(), free() } for one engine and shape: steps
 * (train forward + backward) of BN alone, BN+ReLU fused and unfused, BN+add+ReLU fused and
 * unfused; `passes`: the forward and the backward of BN, BN+ReLU and BN+add+ReLU alone.
 */
export function fusedCases(eng, spec, data, label) {
  const { shape, layout, eps } = spec;
  const n = data.x.length;
  const owned = [];
  const put = (a) => { const t = WasmTensor.from(a, eng); owned.push(t); return t; };
  const alloc = () => { const t = WasmTensor.alloc(n, eng); owned.push(t); return t; };
  const x = put(data.x), dy = put(data.dy), z = put(data.dy.map((v) => v * 0.5));
  const weight = put(data.weight), bias = put(data.bias);
  const C = data.weight.length;
  const zeros = put(new Float32Array(C)), ones = put(new Float32Array(C).fill(1));
  const y = alloc(), y2 = alloc(), g = alloc(), dx = alloc(), dz = alloc();
  // A dy of its own for the backward that writes dz over it (`outZ: dyOver`): it turns
  // into the gated dy at the first call and stays so (gating it again changes nothing).
  const dyOver = put(data.dy);
  const mask = WasmTensor.alloc(reluMaskLength(shape, layout), eng);
  owned.push(mask);
  const identity = { runningMean: zeros, runningVar: ones, eps: 0, layout };
  const bnFwd = (extra) => batchNormTrainOn(eng, x, shape, { weight, bias, eps, layout, out: y, ...extra });
  const bnBwd = (r, grad, extra) => batchNormBackwardOn(eng, grad, x, shape, { weight, mean: r.mean, invStd: r.invStd, layout, out: dx, ...extra });
  // A separate ReLU (add + ReLU) pass y -> y2, and its backward dy -> g (= dz).
  const reluPass = (zz) => batchNormEvalOn(eng, y, shape, { ...identity, activation: "relu", z: zz, out: y2 });
  // Through the glue: the functional eval-mode backward always also takes parameter
  // gradients (another read of dy and x), which a ReLU-gradient pass does not do.
  const inner = layout === "NCHW" ? shape.slice(2).reduce((a, b) => a * b, 1) : 1;
  const outer = n / (C * inner);
  const reluGradPass = () => eng.glue.backward(dy.ptr, y.ptr, g.ptr, outer, C, inner, 0, zeros.ptr, ones.ptr, 0, 0, false, y2.ptr, 0);
  const cases = [
    { id: `${label} BN step`, fn: () => bnBwd(bnFwd(), dy) },
    { id: `${label} BN+ReLU fused step`, fn: () => bnBwd(bnFwd({ activation: "relu", outMask: mask }), dy, { activation: "relu", mask }) },
    { id: `${label} BN+ReLU fused step (mask from y)`, fn: () => bnBwd(bnFwd({ activation: "relu" }), dy, { activation: "relu", y }) },
    { id: `${label} BN, ReLU unfused step`, fn: () => { const r = bnFwd(); reluPass(); reluGradPass(); bnBwd(r, g); } },
    {
      id: `${label} BN+add+ReLU fused step`,
      fn: () => bnBwd(bnFwd({ activation: "relu", z, outMask: mask }), dy, { activation: "relu", mask, residual: true, outZ: dz }),
    },
    {
      id: `${label} BN+add+ReLU fused step (mask from y)`,
      fn: () => bnBwd(bnFwd({ activation: "relu", z }), dy, { activation: "relu", y, residual: true, outZ: dz }),
    },
    {
      id: `${label} BN+add+ReLU fused step (dz over dy)`,
      fn: () => bnBwd(bnFwd({ activation: "relu", z, outMask: mask }), dyOver, { activation: "relu", mask, residual: true, outZ: dyOver }),
    },
    { id: `${label} BN, add+ReLU unfused step`, fn: () => { const r = bnFwd(); reluPass(z); reluGradPass(); bnBwd(r, g); } },
  ];
  // Each half of the step on its own (forward, backward), to see which one the fusion costs in.
  // (plain first, so that y holds the ReLU's output the fused backward reads as its mask)
  const rPlain = bnFwd();
  const rRelu = bnFwd({ activation: "relu", outMask: mask });
  const passes = [
    { id: `${label} BN forward`, fn: () => bnFwd() },
    { id: `${label} BN+ReLU fused forward`, fn: () => bnFwd({ activation: "relu", outMask: mask }) },
    { id: `${label} BN+ReLU fused forward (no mask)`, fn: () => bnFwd({ activation: "relu" }) },
    { id: `${label} BN+add+ReLU fused forward`, fn: () => bnFwd({ activation: "relu", z, outMask: mask }) },
    { id: `${label} BN backward`, fn: () => bnBwd(rPlain, dy) },
    { id: `${label} BN+ReLU fused backward`, fn: () => bnBwd(rRelu, dy, { activation: "relu", mask }) },
    { id: `${label} BN+ReLU fused backward (mask from y)`, fn: () => bnBwd(rRelu, dy, { activation: "relu", y }) },
    { id: `${label} BN+add+ReLU fused backward`, fn: () => bnBwd(rRelu, dy, { activation: "relu", mask, residual: true, outZ: dz }) },
    { id: `${label} BN+add+ReLU fused backward (dz over dy)`, fn: () => bnBwd(rRelu, dyOver, { activation: "relu", mask, residual: true, outZ: dyOver }) },
  ];
  /** The fused and unfused steps must give the same bits (y, dx); returns a problem or null. */
  const check = () => {
    // Bit patterns compared (NaN, -0); each view made once: a view per element made this
    // check quadratic in the tensor size (it ran for minutes on (32,64,56,56)).
    const bits = (a) => new Uint32Array(a.buffer, a.byteOffset, a.length);
    const same = (a, b) => {
      if (a.length !== b.length) return false;
      const [p, q] = [bits(a), bits(b)];
      for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) return false;
      return true;
    };
    for (const [zz, viaMask] of [[undefined, true], [z, true], [undefined, false], [z, false]]) {
      const rf = bnFwd({ activation: "relu", z: zz, outMask: viaMask ? mask : undefined });
      const yFused = y.toArray();
      bnBwd(rf, dy, viaMask ? { activation: "relu", mask } : { activation: "relu", y });
      const dxFused = dx.toArray();
      const r = bnFwd();
      reluPass(zz);
      reluGradPass();
      bnBwd(r, g);
      const what = `${label}${zz ? " add" : ""}${viaMask ? " (bit mask)" : " (mask from y)"}`;
      if (!same(yFused, y2.toArray())) return `${what}: fused y differs from BN then ReLU`;
      if (!same(dxFused, dx.toArray())) return `${what}: fused dx differs from the unfused backward`;
    }
    // dz written over dy: the same dx and dz as with a separate dz.
    const rf = bnFwd({ activation: "relu", z, outMask: mask });
    bnBwd(rf, dy, { activation: "relu", mask, residual: true, outZ: dz });
    const [dxSep, dzSep] = [dx.toArray(), dz.toArray()];
    dyOver.view.set(dy.view);
    bnBwd(rf, dyOver, { activation: "relu", mask, residual: true, outZ: dyOver });
    if (!same(dxSep, dx.toArray())) return `${label}: dx with dz over dy differs from dx with a separate dz`;
    if (!same(dzSep, dyOver.toArray())) return `${label}: dz over dy differs from a separate dz`;
    return null;
  };
  return { cases, passes, check, free() { for (const t of owned) t.free(); owned.length = 0; } };
}
