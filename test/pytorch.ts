/** test/fixtures/pytorch_bn.json: recorded by make_pytorch_fixture.py from PyTorch itself. */
import { readFileSync } from "node:fs";

export interface Step {
  shape: number[];
  x: number[];
  dy: number[];
  y: number[];
  dx: number[];
  dweight: number[] | null;
  dbias: number[] | null;
  running_mean?: number[] | null;
  running_var?: number[] | null;
  num_batches_tracked?: number | null;
}

export interface TorchCase {
  name: string;
  num_features: number;
  eps: number;
  momentum: number | null;
  affine: boolean;
  track_running_stats: boolean;
  layout: "NCHW" | "NHWC";
  weight: number[] | null;
  bias: number[] | null;
  train_steps: Step[];
  eval_step: Step;
}

export const torchFixture = JSON.parse(readFileSync(new URL("./fixtures/pytorch_bn.json", import.meta.url), "utf8")) as {
  torch_version: string;
  cases: TorchCase[];
  safetensors_state: Record<string, number[] | number>;
  safetensors_eval: { shape: number[]; x: number[]; y: number[] };
};

export const torchSafetensors = new Uint8Array(readFileSync(new URL("./fixtures/pytorch_bn2d.safetensors", import.meta.url)));
