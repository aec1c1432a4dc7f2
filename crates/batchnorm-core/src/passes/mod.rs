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

/// Channels-last rows that the row kernels take together (each load of a per-channel
/// vector, or of a running per-channel sum, then serves all of them) when they walk
/// `elems` elements: 4 for data that stays in cache ([`CACHED_ELEMS`]: the plain-array
/// path's windows), else 2 for rows of at most [`MAX_PAIRED_CHANNELS`] channels, else 1.
/// Every kernel adds the grouped rows' terms in row order (and computes each element
/// alone), so the grouping never changes a result.
///
/// Measured in V8 on the 2-core AMD EPYC (Zen, 48 KiB L1d, 1 MiB L2): on 12 MiB tensors
/// two rows at a time ran the passes 1.1-1.3x faster than one while the two rows span at
/// most ~900 bytes, and about 2x *slower* once they span 1 KiB or more (eval and the dx
/// pass at 96 or 112 channels: 0.54-0.57 and 0.95-0.99 ms in pairs; at 128-512 channels:
/// 1.2-1.3 and 2.2-2.5 ms in pairs against 0.64-0.71 and 1.0 ms a row at a time); four
/// rows of 64 channels (1 KiB) were 1.7-2x slower than two, the same cliff. On the
/// L2-resident windows of the plain-array path none of this holds: pairs are faster than
/// single rows at 128-256 channels too (single rows: eval 1.07-1.17x, train forward 1.22x
/// the time), and four rows faster than pairs (see `bench/` notes in docs/performance.md).
/// The loops over zipped row views (`affine::rows_x_only`, `backward::dx_rows_zipped`)
/// take pairs wherever this says 2 or 4: with one index for all their streams, pairs
/// measured faster than the grouped loops' four rows in the windows too (but in the scalar
/// build's forward).
pub(crate) fn rows_together(channels: usize, elems: usize) -> usize {
    if elems <= CACHED_ELEMS {
        4
    } else if channels <= MAX_PAIRED_CHANNELS {
        2
    } else {
        1
    }
}

/// Quads of channels per strip of the channels-last statistics over rows that
/// [`rows_together`] takes one at a time (`moments::centered_strips`): a strip's sums stay
/// in registers down a block's rows. Four quads keep eight sums and four shifts in
/// registers (twelve of x64's sixteen vector registers). The backward's gradient sums
/// the same way (strips of `dy` and `x`, mask words shifted per strip) took 1.05-1.2x the
/// time of its rows, whose octet loop already loads each mask word once per 32 channels.
pub(crate) const STRIP_QUADS: usize = 4;

/// Reads one value of every cache line of `blk`, front to back, so that a pass that
/// crosses the rows strip by strip finds the block in cache: read strip by strip from
/// memory, a block of the statistics pass took up to 1.3x the time of the row-at-a-time
/// pass; touched first, 0.8-0.9x.
#[inline(never)]
pub(crate) fn touch(blk: &[f32]) {
    let mut acc = 0f32;
    for line in blk.chunks(16) {
        acc += line[0];
    }
    core::hint::black_box(acc);
}

/// See [`rows_together`]: two rows of 96 channels span 768 bytes.
pub(crate) const MAX_PAIRED_CHANNELS: usize = 96;
/// See [`rows_together`]: 1 MiB of f32, data that stays in L2 or the L3 between passes.
/// The plain-array path's windows are at most this long; its chunks of resident tensors
/// read in place (main-memory data) are longer, so that they are not taken four rows at a
/// time (ts/engine/staging.ts, `streamElementwise`). It was 256 KiB (a quarter of this
/// machine's 1 MiB L2) while the windows were 128 KiB; with 1 MiB windows, four rows at a
/// time measured 0.86-0.94x the time of pairs or single rows on channels-last windows of
/// 64-256 channels, and 0.78-1.0x on resident tensors of 16-256 Ki values (session 17).
pub const CACHED_ELEMS: usize = 1 << 18;
