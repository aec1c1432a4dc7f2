/**
 * batchnorm-wasm: Batch Normalization in WebAssembly (Rust, SIMD, rayon threads).
 *
 * ```ts
 * import { init, batchNormTrain, batchNormEval, batchNormBackward } from "batchnorm-wasm";
 * await init();
 * ```
 * @module
 */
export { init, supportedBuilds, loaded, createEngine, setParallelThreshold, parallelThreshold, type Engine, type BuildName, type InitOptions, type InitResult } from "./engine/loader.js";
export { WasmTensor } from "./engine/tensor.js";
export {
  batchNormTrain, batchNormEval, batchNormBackward, batchNormTrainOn, batchNormEvalOn, batchNormBackwardOn,
  type TrainOptions, type TrainResult, type EvalOptions, type BackwardOptions, type BackwardResult, type Output,
  type Activation, type FusedOptions,
} from "./layers/functional.js";
export { reluMaskLength } from "./layers/relu-mask.js";
export { foldBatchNorm, type FoldOptions, type Folded, type WeightLayout } from "./layers/fold.js";
export type { Layout, Convention, TensorLike } from "./engine/validate.js";
export {
  BatchNormError, ShapeError, LengthMismatchError, ChannelMismatchError, TooFewValuesError,
  InvalidOptionError, InvalidArgumentError, StateError, OutOfMemoryError, type MemoryShortfall,
} from "./engine/errors.js";
export {
  BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, type BatchNormOptions, type ForwardOptions, type ModuleBackwardOptions, type StateDict,
} from "./layers/batchnorm.js";
export { readSafetensors, writeSafetensors, SafetensorsError, type NamedTensor, type DType } from "./layers/safetensors.js";
export { BatchNormWorker, RemoteBatchNorm, WorkerError, type SendOptions } from "./parallel/remote.js";
export type { NormKind } from "./parallel/worker.js";
export {
  shardMoments, mergeMoments, shardNormalize, shardGradSums, addGradSums, shardBackwardApply, updateRunning, invStdOf,
  type ShardMoments, type ShardGradSums,
} from "./parallel/shard.js";
export { ProcessGroup, type ProcessGroupOptions, type WorkerLike } from "./parallel/process-group.js";
export { startWithDeadlines, START_DEADLINES_MS, type StartAttempt } from "./parallel/start.js";
export { Communicator, joinProcessGroup } from "./parallel/communicator.js";
export { CollectiveMismatchError, CollectiveTimeoutError, type CollectiveBuffer, type ReduceOp } from "./parallel/collective.js";
export type { TransportName } from "./parallel/group-protocol.js";
export { SyncBatchNorm, type SyncBackwardOptions, type SyncForwardOptions } from "./parallel/sync-batchnorm.js";
export { allReduceGradients, broadcastParameters, type Tensorish, type BucketOptions } from "./parallel/gradients.js";
export {
  layerNorm, layerNormBackward, rmsNorm, rmsNormBackward, groupNorm, groupNormBackward, instanceNorm, instanceNormBackward, F32_EPS,
  type LayerNormOptions, type RmsNormOptions, type RowNormResult, type RowNormBackwardOptions, type NormGradients,
  type GroupNormOptions, type GroupNormResult, type GroupNormBackwardOptions, type InstanceNormOptions, type InstanceNormResult,
  type InstanceNormBackwardOptions,
} from "./layers/norm-functional.js";
export { NormModule, type NormStateDict, type NormForwardOptions, type NormBackwardOptions, type NormBuffers, type SavedInput } from "./layers/norm-module.js";
export { LayerNorm, type LayerNormModuleOptions } from "./layers/layernorm.js";
export { RMSNorm, type RMSNormOptions } from "./layers/rmsnorm.js";
export { GroupNorm, type GroupNormModuleOptions } from "./layers/groupnorm.js";
export { InstanceNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, type InstanceNormModuleOptions } from "./layers/instancenorm.js";
export {
  batchRenormTrain, batchRenormBackward, renormSchedule, checkRenorm,
  type RenormBounds, type RenormScheduleOptions, type BatchRenormOptions, type BatchRenormResult, type BatchRenormBackwardOptions, type BatchRenormGradients,
} from "./layers/renorm.js";
