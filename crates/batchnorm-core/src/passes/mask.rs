//! The fused ReLU's backward mask as bits: one bit per element, `y > 0` of the forward's
//! output, written by the normalisation pass and read by both backward passes instead of
//! `y` itself (oneDNN's workspace). 4 bytes of `y` per element become 1/8 of a byte.
//!
//! Layout: the tensor's *units* (a contiguous plane of one channel when channels-first,
//! a row of all channels when channels-last) each start at a fresh `u32` word; element
//! `i` of unit `u` is bit `i % 32` of word `u * words_per_unit + i / 32`. Every pass
//! already splits its work into whole units (parallel tasks, the streaming windows), so
//! no two tasks ever write the same word and no kernel has to shift bits across words.
//! The price is padding: a unit of `L` elements takes `ceil(L / 32)` words.

use crate::dims::Dims;

/// Elements of one unit: a plane (channels-first) or a row (channels-last).
pub fn unit_len(dims: Dims) -> usize {
    if dims.is_planar() {
        dims.inner
    } else {
        dims.channels
    }
}

/// Words of one unit's mask.
pub fn words_per_unit(dims: Dims) -> usize {
    unit_len(dims).div_ceil(32)
}

/// Words of the whole mask of a tensor laid out as `dims`.
pub fn mask_words(dims: Dims) -> usize {
    (dims.len() / unit_len(dims)) * words_per_unit(dims)
}

/// Writes the bits `y > 0` of one unit's elements to its words (`words.len() ==
/// y.len().div_ceil(32)`). Runs right after the unit was written, so `y` is read from cache.
#[inline]
pub(crate) fn pack_positive(y: &[f32], words: &mut [u32]) {
    use crate::simd::{q, F32x4};
    for (w, blk) in words.iter_mut().zip(y.chunks(32)) {
        let mut bits = 0u32;
        let quads = blk.chunks_exact(4);
        let tail = quads.remainder();
        for (k, v) in quads.enumerate() {
            bits |= F32x4::load(q(v)).pos_bits() << (4 * k);
        }
        let body = blk.len() / 4 * 4;
        for (k, &v) in tail.iter().enumerate() {
            bits |= ((v > 0.0) as u32) << (body + k);
        }
        *w = bits;
    }
}

/// The four bits of elements `i..i + 4` of a unit (`i % 4 == 0`).
#[inline(always)]
pub(crate) fn quad_bits(words: &[u32], i: usize) -> u32 {
    (words[i >> 5] >> (i & 31)) & 0xF
}

/// Whether element `i` of a unit passes the gradient.
#[inline(always)]
pub(crate) fn bit(words: &[u32], i: usize) -> bool {
    (words[i >> 5] >> (i & 31)) & 1 != 0
}
