//! The passes every layer is built from, each one read of the data: statistics
//! ([`moments`]: corrected two-pass blocks, f64 merge), normalise ([`affine`]: folded
//! scale/offset with the fused ReLU / residual flags), backward ([`backward`]: the two
//! fused reductions and `dx`), the moving averages ([`running`]), and the same passes over
//! the row and group geometries of LayerNorm / RMSNorm ([`rows`]) and GroupNorm /
//! InstanceNorm ([`groups`]).

pub mod affine;
pub mod backward;
pub mod groups;
pub mod mask;
pub mod moments;
pub mod rows;
pub mod running;
