/** Loads `test/fixtures/onnx/*.json`, the ONNX conformance cases (see the README there for the format). */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const CONFORMANCE_DIR = fileURLToPath(new URL("./fixtures/onnx/", import.meta.url));

export interface Tensor {
  dims: number[];
  data: number[];
}

export interface ConformanceCase {
  name: string;
  x: Tensor;
  scale: Tensor;
  bias: Tensor;
  mean: Tensor;
  var: Tensor;
  epsilon: number;
  momentum: number;
  training: boolean;
  y: Tensor;
  outputMean?: Tensor;
  outputVar?: Tensor;
}

interface CaseFile {
  case: string;
  nodes: { op: string; inputs: string[]; outputs: string[]; attrs?: Record<string, number> }[];
  tensors: Record<string, Tensor>;
}

export function loadConformance(): ConformanceCase[] {
  const files = readdirSync(CONFORMANCE_DIR).filter((f) => f.endsWith(".json")).sort();
  return files.map((f) => {
    const j = JSON.parse(readFileSync(CONFORMANCE_DIR + f, "utf8")) as CaseFile;
    if (j.nodes.length !== 1 || j.nodes[0].op !== "BatchNormalization") throw new Error(`${f}: unexpected graph`);
    const node = j.nodes[0];
    const t = (name: string | undefined) => (name === undefined ? undefined : j.tensors[name]);
    const [x, scale, bias, mean, variance] = node.inputs.map((n) => j.tensors[n]);
    const attrs = node.attrs ?? {};
    return {
      name: j.case,
      x, scale, bias, mean, var: variance,
      // ONNX defaults for absent attributes; `is_test` (old PyTorch exports) means inference.
      epsilon: attrs.epsilon ?? 1e-5,
      momentum: attrs.momentum ?? 0.9,
      training: (attrs.training_mode ?? 0) === 1,
      y: j.tensors[node.outputs[0]],
      outputMean: t(node.outputs[1]),
      outputVar: t(node.outputs[2]),
    };
  });
}
