// TensorFlow.js peers: the wasm backend (XNNPACK-free C++ kernels, SIMD build, one
// thread in Node) and the cpu backend (plain JS kernels).
//
// tf.batchNorm broadcasts its 1-D parameters over the LAST axis only (both backends
// index them with i % C), so it is used where the channel axis is last (NHWC and 2-D
// inputs); for channels-first inputs of rank > 2 the same computation is written with
// broadcasting ops on [1, C, 1, 1] parameters, as a TF.js user would have to.
import { createRequire } from "node:module";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
// The gradient functions (for tf.grads) are registered by the union package's Node
// bundle; tfjs-core's Node bundle ships the ops without them.
import "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";

const require = createRequire(import.meta.url);

export { tf };

let wasmReady;
/** Initialises a backend (the wasm files come from node_modules: nothing is downloaded). */
export async function initBackend(name) {
  if (name === "wasm" && !wasmReady) {
    const dir = path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")), "dist") + path.sep;
    setWasmPaths(dir);
    wasmReady = true;
  }
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tfjs backend ${name} failed to initialise`);
  await tf.ready();
}

export function tfjsInfo() {
  return {
    version: tf.version_core,
    wasmSimd: tf.env().getBool("WASM_HAS_SIMD_SUPPORT"),
    wasmThreads: tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT"),
  };
}

/** A contender on backend `name` ("wasm" | "cpu"). spec: { shape, layout, eps, momentum }. */
export async function tfjsContender(name, spec, data) {
  await initBackend(name);
  const { shape, layout, eps, momentum } = spec;
  const rank = shape.length;
  const C = layout === "NCHW" ? shape[1] : shape[rank - 1];
  const M = data.x.length / C;
  const native = layout === "NHWC" || rank === 2; // channel axis is last
  const axes = native ? [...Array(rank - 1).keys()] : [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
  const pshape = native ? [C] : [1, C, ...Array(rank - 2).fill(1)];

  const x = tf.tensor(data.x, shape), dy = tf.tensor(data.dy, shape);
  const weight = tf.tensor1d(data.weight), bias = tf.tensor1d(data.bias);
  let rm = tf.tensor1d(data.runningMean), rv = tf.tensor1d(data.runningVar);

  // y from per-channel statistics (shaped like pshape) and [C] weight/bias.
  const bn = (xx, mean, variance, w, b) => {
    if (native) return tf.batchNorm(xx, mean, variance, b, w, eps);
    const scale = tf.mul(tf.reshape(w, pshape), tf.rsqrt(tf.add(tf.reshape(variance, pshape), eps)));
    return tf.add(tf.mul(tf.sub(xx, tf.reshape(mean, pshape)), scale), tf.reshape(b, pshape));
  };
  const fwd = (xx, w, b) => {
    const { mean, variance } = tf.moments(xx, axes, !native);
    return { y: bn(xx, mean, variance, w, b), mean, variance };
  };
  const updateRunning = (mean, variance) => {
    const nrm = tf.tidy(() => tf.add(tf.mul(rm, 1 - momentum), tf.mul(tf.reshape(mean, [C]), momentum)));
    const nrv = tf.tidy(() => tf.add(tf.mul(rv, 1 - momentum), tf.mul(tf.reshape(variance, [C]), (momentum * M) / (M - 1))));
    rm.dispose(); rv.dispose();
    rm = nrm; rv = nrv;
  };
  const gradFn = tf.grads((xx, w, b) => fwd(xx, w, b).y);
  let kept;
  const stepGradFn = tf.grads((xx, w, b) => {
    const r = fwd(xx, w, b);
    kept = [tf.keep(r.mean), tf.keep(r.variance)];
    return r.y;
  });
  const disposeAll = (ts) => { for (const t of ts) t.dispose(); };

  const c = {
    backend: name,
    native,
    before: async () => { if (tf.getBackend() !== name) await tf.setBackend(name); },
    eval: () => tf.tidy(() => bn(x, rm, rv, weight, bias)).dispose(),
    /** tf.relu(tf.batchNorm(...)): what a TF.js user writes for BN + ReLU. */
    evalRelu: () => tf.tidy(() => tf.relu(bn(x, rm, rv, weight, bias))).dispose(),
    train: () => {
      const r = tf.tidy(() => { const o = fwd(x, weight, bias); return [o.y, o.mean, o.variance]; });
      updateRunning(r[1], r[2]);
      disposeAll(r);
    },
    backward: () => disposeAll(gradFn([x, weight, bias], dy)),
    step: () => {
      const g = stepGradFn([x, weight, bias], dy);
      updateRunning(kept[0], kept[1]);
      disposeAll(kept);
      disposeAll(g);
    },
    async check() {
      await c.before();
      rm.dispose(); rv.dispose();
      rm = tf.tensor1d(data.runningMean); rv = tf.tensor1d(data.runningVar);
      const out = {};
      out.evalY = tf.tidy(() => bn(x, rm, rv, weight, bias)).dataSync().slice();
      const r = tf.tidy(() => { const o = fwd(x, weight, bias); return [o.y, o.mean, o.variance]; });
      out.trainY = r[0].dataSync().slice();
      out.mean = r[1].dataSync().slice();
      out.invStd = r[2].dataSync().map((v) => 1 / Math.sqrt(v + eps));
      updateRunning(r[1], r[2]);
      disposeAll(r);
      out.runningMean = rm.dataSync().slice();
      out.runningVar = rv.dataSync().slice();
      const g = gradFn([x, weight, bias], dy);
      [out.dx, out.dWeight, out.dBias] = g.map((t) => t.dataSync().slice());
      disposeAll(g);
      return out;
    },
    free() { disposeAll([x, dy, weight, bias, rm, rv]); },
  };
  return c;
}
