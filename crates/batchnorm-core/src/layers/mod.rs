//! The layers, which check their inputs and combine the passes: batch norm's entry points
//! in [`batchnorm`] (re-exported at the crate root: `train_forward`, `eval_forward`, `backward`, ...); LayerNorm,
//! RMSNorm, GroupNorm and InstanceNorm are in [`norms`].

pub mod batchnorm;
pub mod norms;
