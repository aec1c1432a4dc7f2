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
//! a [`ReluGrad`] for backward. The backward mask is the forward *output* `y > 0`, not a
//! separate bit mask: it is what PyTorch's ReLU backward uses (`threshold_backward` on the
//! output, so gradients agree at the kink too), the caller holds `y` anyway (the next
//! layer's input), and nothing extra has to be allocated, kept, or shipped between workers.
//! The price is a read of `y` in both backward passes (a 1-bit mask would read 1/32 of
//! that); see docs/performance.md for the measured cost.

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
