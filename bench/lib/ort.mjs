// ONNX Runtime Web peer (wasm execution provider, in Node: its .wasm files load from
// node_modules). Models are one BatchNormalization node, built in memory by onnx.mjs.
// ORT takes and returns plain arrays, so it compares with our "copy" path: inputs are
// copied into its wasm heap and outputs copied out on every run.
import * as ort from "onnxruntime-web";
import { batchNormModel } from "./onnx.mjs";

export { ort };

/** Sets the thread count; must happen before the first session of the process. */
export function configureOrt(threads) {
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
}

export const ONNX_MOMENTUM = 0.9;

/**
 * spec: { shape, layout, eps }. ONNX BatchNormalization is channels-first only
 * (N, C, ...): other layouts are not applicable. Returns { eval, train?, trainError?, check }.
 */
export async function ortContender(spec, data) {
  const { shape, layout, eps } = spec;
  if (layout !== "NCHW") return null;
  const C = shape[1];
  const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const params = { scale: data.weight, bias: data.bias, mean: data.runningMean, variance: data.runningVar };
  const t0 = performance.now();
  const evalSession = await ort.InferenceSession.create(batchNormModel({ shape, eps, ...params }), opts);
  const createMs = performance.now() - t0;
  const X = new ort.Tensor("float32", data.x, shape);
  const c = {
    createMs,
    eval: () => evalSession.run({ X }),
    async check() {
      const out = {};
      out.evalY = (await evalSession.run({ X })).Y.data;
      if (trainSession) {
        const r = await trainSession.run(trainFeeds);
        out.trainY = r.Y.data;
        out.runningMean = r.running_mean.data;
        out.runningVar = r.running_var.data;
      }
      return out;
    },
    free() { evalSession.release(); trainSession?.release(); },
  };
  let trainSession, trainFeeds;
  try {
    trainSession = await ort.InferenceSession.create(
      batchNormModel({ shape, eps, momentum: ONNX_MOMENTUM, training: true, ...params }), opts);
    const t = (a) => new ort.Tensor("float32", a, [C]);
    trainFeeds = { X, scale: t(data.weight), B: t(data.bias), input_mean: t(data.runningMean), input_var: t(data.runningVar) };
    await trainSession.run(trainFeeds);
    c.train = () => trainSession.run(trainFeeds);
  } catch (e) {
    trainSession = undefined;
    c.trainError = String(e?.message ?? e).split("\n")[0].slice(0, 200);
  }
  return c;
}
