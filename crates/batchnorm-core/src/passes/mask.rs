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
    words_per_row(unit_len(dims))
}

/// Words of the mask of one unit of `len` elements (a channels-last row of `len` channels).
pub fn words_per_row(len: usize) -> usize {
    len.div_ceil(32)
}

/// Words of the whole mask of a tensor laid out as `dims`.
pub fn mask_words(dims: Dims) -> usize {
    (dims.len() / unit_len(dims)) * words_per_unit(dims)
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
