//! Batch Normalization kernels (Ioffe & Szegedy 2015) on f32 data.
//!
//! Pure Rust, no wasm dependencies: `cargo test` runs natively. The `batchnorm-wasm` crate
//! exports these to JavaScript. Layouts: channels-first `(N, C, ...)` and channels-last
//! `(N, ..., C)` at any rank >= 2, both reduced to [`Dims`]. Every public function checks
//! all of its inputs before it writes anything, so a rejected call changes no state.
//!
//! Module map: [`geometry`] (shapes to reduction axes), [`passes`] ([`moments`]: batch
//! statistics, one read; [`affine`]: the elementwise forward kernel; [`backward`]: fused
//! reductions and `dx`; [`running`]: moving averages; the row / group passes of the
//! other norms), [`layers`] (batch norm's checked entry points, re-exported here, and
//! [`norms`]), [`simd`] (the f32x4 type), [`parallel`] (rayon or not).
//!
//! Fused activation (oneDNN's `fuse_norm_relu` / `fuse_norm_add_relu`): the `*_fused`
//! forms take a [`Fused`] (`y = relu(BN(x) + z)`, computed in the normalisation pass) and
//! a [`ReluGrad`] for backward. The backward mask is `y > 0` of the forward's output, as
//! PyTorch's `threshold_backward` (so gradients agree at the kink too), in one of two forms
//! ([`backward::Gate`]): the 1-bit mask the normalisation pass writes when `Fused::mask` is
//! given ([`passes::mask`]: a word-aligned run of bits per plane or row, so parallel tasks
//! never share a word), which the backward reads at 1/32 of the bytes of `y`; or `y`
//! itself, for callers that keep the output anyway. Both give the same bits; see
//! docs/performance.md for the measured cost of each.

mod error;
pub mod geometry;
pub mod layers;
pub mod parallel;
pub mod passes;
pub mod simd;

// The module paths of before the geometry / passes / layers split, which the wasm crate,
// the tests and the docs use.
pub(crate) use geometry::dims;
pub use layers::norms;
pub use passes::{affine, backward, moments, running};

pub use backward::GradSums;
pub use dims::{Dims, Layout};
pub use error::{BnError, Result};
pub use moments::Moments;
pub use running::Convention;
pub use layers::batchnorm::*;
