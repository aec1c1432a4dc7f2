//! Reduction geometry: how a tensor's shape maps onto the axes the kernels reduce over and
//! the axis that carries the per-channel affine. [`dims::Dims`] is batch norm's
//! `(outer, channels, inner)` view of any rank in either layout; the row view of the other
//! normalisation layers ([`crate::passes::rows::Rows`], [`crate::passes::groups::Groups`])
//! sits beside the passes that use it.

pub mod dims;
