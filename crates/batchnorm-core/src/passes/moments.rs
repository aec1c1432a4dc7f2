//! Per-channel count, mean and M2 (sum of squared deviations) in one read of the data.
//!
//! Accuracy scheme, and why: the naive single pass `E[x^2] - E[x]^2` in f32 loses every
//! significant digit when the mean is large against the spread (x = 1e4 + N(0, 0.1) gives
//! a variance of pure rounding noise). A textbook two-pass algorithm is accurate but reads
//! the tensor twice from memory, and batch norm is memory-bound. So the data is cut into
//! blocks small enough to stay in L1/L2 (8 KiB for contiguous planes, >= 16 rows for
//! channels-last), and each block gets the *corrected two-pass* algorithm (Chan, Golub &
//! LeVeque 1983): pass 1 takes the block mean `s` in f32, pass 2 sums `d = x - s` and `d^2`
//! in f32 SIMD lanes, then `mean = s + sum(d)/n` and `M2 = sum(d^2) - sum(d)^2/n` are formed
//! in f64. The second pass hits cache, not memory, so the cost is arithmetic only. Every
//! block after a channel's (or a row's) first takes the mean so far as its shift instead
//! of a pass 1 of its own, and gets one only when that shift turns out more than a standard
//! deviation off (`merge_run` for contiguous runs, `rows_range` for channels-last rows).
//! Blocks are then combined in f64 with Chan et al.'s parallel formula, which is also what
//! merges per-thread partials and, later, per-worker partials (SyncBN).

use crate::dims::Dims;
use crate::parallel;
use crate::passes::{rows_together, touch, STRIP_QUADS};
use crate::simd::{q, q_mut, quad_view, quad_view_mut, quads, F32x4, F64x2};

/// Count, mean and sum of squared deviations from the mean of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub count: f64,
    pub mean: f64,
    pub m2: f64,
}

/// `v`, or +0 where it is below zero (rounding) or NaN: what `v.max(0.0)` gives, as one
/// compare and select. Wasm's `f64.max` propagates NaN, so LLVM writes `max` out as
/// compares and selects for NaN, and V8's code for them branched (`ucomisd`, `jp`, `je`)
/// on every plane's and row's chain.
#[inline(always)]
fn non_negative(v: f64) -> f64 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

impl Moments {
    pub const EMPTY: Moments = Moments { count: 0.0, mean: 0.0, m2: 0.0 };

    /// Moments of a block of `r.len` values from its shift `s` and the sums of `d = x - s`
    /// and `d^2`: `mean = s + S1/n`, `M2 = S2 - S1^2/n`, with products by `1/n`.
    #[inline]
    pub(crate) fn from_shifted(r: Recip, shift: f32, sum_d: f32, sum_d2: f32) -> Moments {
        let (s1, s2) = (sum_d as f64, sum_d2 as f64);
        let q = s1 * r.inv;
        Moments { count: r.len as f64, mean: shift as f64 + q, m2: non_negative(s2 - s1 * q) }
    }

    /// Chan, Golub & LeVeque's pairwise combination: exact in exact arithmetic for any
    /// split, including uneven ones.
    #[inline]
    pub fn merge(self, o: Moments) -> Moments {
        if self.count == 0.0 {
            return o;
        }
        if o.count == 0.0 {
            return self;
        }
        let n = self.count + o.count;
        let delta = o.mean - self.mean;
        Moments {
            count: n,
            mean: self.mean + delta * (o.count / n),
            m2: self.m2 + o.m2 + delta * delta * (self.count * o.count / n),
        }
    }

    /// Population (biased) variance: what normalisation uses.
    pub fn biased_var(&self) -> f64 {
        self.m2 / self.count
    }

    /// Sample (unbiased) variance: what PyTorch's running variance tracks.
    pub fn unbiased_var(&self) -> f64 {
        self.m2 / (self.count - 1.0)
    }
}

/// Merges two per-channel vectors of moments, channel by channel.
pub fn merge_all(mut a: Vec<Moments>, b: Vec<Moments>) -> Vec<Moments> {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.merge(y);
    }
    a
}

/// Elements per block of a contiguous plane (8 KiB: L1-resident for the second look).
pub(crate) const PLANE_BLOCK: usize = 2048;
/// Target elements per block of channels-last rows; at least `MIN_BLOCK_ROWS` rows so the
/// f64 merge (a dozen flops per channel, [`merge_block`]) stays a small fraction of the
/// work (with 16-row blocks it was still about as much as the block's own sums for rows
/// of 256-1024 channels: 32 rows ran their training forward in about 0.6-0.7x the time;
/// since the centered pass of wide rows goes strip by strip with its sums in registers,
/// the merge and the shift test are a larger share again, and 64 rows took 0.85-0.98x
/// the time of 32 at 100-2048 channels, 128 rows 0.93-1.02x that of 64), and at most
/// `MAX_BLOCK_ROWS` so no f32 lane sums more than 256 values (with few channels a block
/// of 4096 rows left ~2e-5 relative error in the variance; 256 leaves ~1e-6).
const ROW_BLOCK_ELEMS: usize = 4096;
const MIN_BLOCK_ROWS: usize = 64;
const MAX_BLOCK_ROWS: usize = 256;

/// Rows per moments block of channels-last data with `channels` channels.
pub fn rows_per_block(channels: usize) -> usize {
    (ROW_BLOCK_ELEMS / channels).clamp(MIN_BLOCK_ROWS, MAX_BLOCK_ROWS)
}

/// Per-channel moments of `x` laid out as `dims`: the moments of each reduction segment
/// ([`segment_len`] outer units) from scratch, merged in segment order. Which thread takes
/// which segment does not matter, so the result does not depend on the thread count or
/// on whether the pool is used at all.
pub fn moments(x: &[f32], dims: Dims) -> Vec<Moments> {
    let par = parallel::worth_it(x.len());
    if dims.is_planar() {
        // Each channel's planes of a segment merged in batch order, from empty (each
        // plane after the first about the mean so far: `merge_run`); the segments
        // merged in order.
        let recip = Recip::new(dims.inner);
        let feed = |m: &mut Moments, plane| *m = merge_run(*m, &x[plane], recip);
        planar_segments(dims, par, |_| Moments::EMPTY, feed, |m| m, Moments::EMPTY, Moments::merge)
    } else {
        let ch = dims.channels;
        let block = rows_per_block(ch);
        let per = segment_len(dims);
        let segments = dims.outer.div_ceil(per).max(1);
        parallel::map_collect(segments, par, |t| {
            let rows = segment_rows(dims, per, t);
            rows_range(&x[rows.start * ch..rows.end * ch], ch, block, vec![Moments::EMPTY; ch])
        })
        .into_iter()
        .fold(vec![Moments::EMPTY; ch], merge_all)
    }
}

/// Elements per reduction segment (512 KiB of f32): channels-last segments are whole
/// blocks of rows, channels-first segments whole samples (at least one, and at least
/// [`PLANE_BLOCK`] values of each channel). Small enough that a batch gives every thread
/// segments of its own to read front to back (for (32, 64, 56, 56), a sample each), large
/// enough that a channel's share of a segment (its planes) keeps its lane sums a while
/// before they go to f64.
const SEGMENT_ELEMS: usize = 1 << 17;

/// Outer units (samples, or channels-last rows) per reduction segment of `dims`. The
/// per-channel reductions ([`moments`], [`crate::backward::grad_sums`]) take each segment
/// from scratch and combine the segments' results in order, on one thread or many. The
/// cut depends on the shape alone, so results are the same bits whatever the thread count,
/// and a stream that feeds each segment's pieces into a fresh state ([`accumulate`],
/// [`crate::backward::grad_sums_accumulate`]) and combines the segments in order
/// reproduces them. Channels-last segments are whole blocks of [`rows_per_block`] rows.
pub fn segment_len(dims: Dims) -> usize {
    let outer = dims.outer.max(1);
    if dims.is_planar() {
        // And at least PLANE_BLOCK values of each channel: a channel's share of a segment
        // starts and finishes its sums (a few dozen operations), which on small planes
        // (e.g. 7x7, five samples a segment) took 5-10% of the reduction's time.
        let samples = SEGMENT_ELEMS / (dims.channels * dims.inner).max(1);
        samples.max(PLANE_BLOCK.div_ceil(dims.inner)).clamp(1, outer)
    } else {
        let block = rows_per_block(dims.channels);
        (SEGMENT_ELEMS / dims.channels.max(1)).div_ceil(block).max(1) * block
    }
}

/// Segment `k`'s range of the outer axis.
pub(crate) fn segment_rows(dims: Dims, per: usize, k: usize) -> core::ops::Range<usize> {
    k * per..((k + 1) * per).min(dims.outer)
}

/// A per-channel reduction over contiguous planes, read in memory order: for each reduction
/// segment ([`segment_len`]) and each channel `c`, a state from `start(c)` is fed that
/// channel's planes of the segment in batch order (`feed(state, the plane's range in the
/// tensor)`) and read out by `finish`; each channel's segment results are then combined in
/// segment order, `combine(combine(zero, first), second)...`. Returns one result per
/// channel.
///
/// Why memory order: taken channel by channel, a channel's planes lie a whole sample apart
/// (e.g. 800 KiB for (32, 64, 56, 56)), and (most likely) each 12 KiB plane restarted the
/// hardware's stream prefetch. In memory order the resident BN training step on that shape
/// takes 0.76x the time (forward 0.83x, backward 0.73x; simd, this VM; the gradient sums
/// alone 0.43x). Here a task takes one segment (or, when the segments are too few to keep
/// every thread busy, a block of its channels) and walks its planes in memory order; the
/// channels' states wait in a small vector meanwhile.
///
/// The bits do not depend on the blocks: every channel still sees its planes of a segment
/// in batch order, from a fresh state, whichever task took it. So the blocks may follow the
/// thread count (a single block without the pool), while the segments may not.
#[allow(clippy::too_many_arguments)]
pub(crate) fn planar_segments<S, T, St, F, Fi, C>(dims: Dims, par: bool, start: St, feed: F, finish: Fi, zero: T, combine: C) -> Vec<T>
where
    T: Send + Copy,
    St: Fn(usize) -> S + Sync + Send,
    F: Fn(&mut S, core::ops::Range<usize>) + Sync + Send,
    Fi: Fn(S) -> T + Sync + Send,
    C: Fn(T, T) -> T,
{
    let (ch, inner) = (dims.channels, dims.inner);
    let per = segment_len(dims);
    let segments = dims.outer.div_ceil(per).max(1);
    // About four tasks per thread for balance: channel blocks only where the segments are
    // fewer (one block on one thread), as wide as they can be.
    let blocks = if par { (parallel::threads() * 4).div_ceil(segments).clamp(1, ch) } else { 1 };
    let width = ch.div_ceil(blocks);
    let blocks = ch.div_ceil(width);
    let parts: Vec<Vec<T>> = parallel::map_collect(segments * blocks, par, |t| {
        let (k, b) = (t / blocks, t % blocks);
        let cs = b * width..((b + 1) * width).min(ch);
        let mut states: Vec<S> = cs.clone().map(&start).collect();
        for o in segment_rows(dims, per, k) {
            for (s, c) in states.iter_mut().zip(cs.clone()) {
                let p = (o * ch + c) * inner;
                feed(s, p..p + inner);
            }
        }
        states.into_iter().map(&finish).collect()
    });
    // Task k * blocks + b holds segment k's channels of block b: in task order, that is
    // every segment's channels in order, channel c of segment k at k * ch + c.
    let parts: Vec<T> = parts.into_iter().flatten().collect();
    (0..ch).map(|c| parts[c..].iter().step_by(ch).fold(zero, |a, &b| combine(a, b))).collect()
}

/// `1 / n` for the rows (or planes) of one call, formed once: [`merge_run`] and the rows'
/// backward multiply by it where [`Moments`] divides. On rows of 64 values the divisions
/// (the f32 shift `sum / n`, then `S1^2 / n` and `M2 / n` in f64) sat on each row's
/// critical path to its normalise loop and held about a fifth of the forward's time
/// (perf); in f64 a product by the reciprocal is as accurate as the quotient to a few
/// units in 1e-16.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recip {
    len: usize,
    inv: f64,
    inv32: f32,
}

impl Recip {
    /// Through `black_box`, so the wasm module reads the reciprocals from memory: V8
    /// places a pure computation such as `1 / n` next to its uses, and inside a row loop
    /// whose uses sit in branches it computed the division again on every row (twice a
    /// row in one version; perf). A load from memory stays where it is.
    pub(crate) fn new(len: usize) -> Recip {
        core::hint::black_box(Recip { len, inv: 1.0 / len as f64, inv32: 1.0 / len as f32 })
    }

    /// `1 / n` in f64.
    pub(crate) fn inv(&self) -> f64 {
        self.inv
    }
}

/// `m` with the contiguous run `xs` of `r.len` values merged in: a channel's plane, or a
/// LayerNorm / GroupNorm row (into empty moments). In blocks of at most [`PLANE_BLOCK`]
/// values, which stay in cache for their second look: a block gets its own corrected
/// two-pass moments when `m` is empty (pass 1 takes the block mean as the shift), and
/// otherwise is summed once about `m`'s mean, the mean of everything merged so far, without
/// a pass 1; a block whose shift turns out more than a standard deviation off its own mean
/// ([`shift_is_near`]; NaN and overflowed squares too) is redone with its own pass 1 while
/// it is in cache. So stationary data skips pass 1 everywhere but at the start, and data
/// whose mean drifts gets the two-pass treatment where it needs it.
///
/// Why: on small planes the per-plane work (pass 1, its horizontal sum, the divisions)
/// was most of the statistics' time. With the mean so far as the shift and `1/n` formed
/// once per call (`r`), the training forward on (32, 64, 7, 7) and (32, 512, 7, 7) took
/// 0.73-0.77x the time (4x4 planes 0.75x, 14x14 0.88x, 28x28 0.90x; simd), and with long
/// planes' blocks taking the mean so far across planes too, (32, 64, 56, 56) 0.95x and
/// (16, 64, 112, 112) 0.87x. Consecutive planes in memory are different channels, so a
/// plane's dependence on the previous merge of its channel does not hold the loop up.
#[inline(always)]
pub(crate) fn merge_run(m: Moments, xs: &[f32], r: Recip) -> Moments {
    debug_assert_eq!(xs.len(), r.len);
    if r.len <= PLANE_BLOCK {
        return merge_run_block(m, xs, r);
    }
    xs.chunks(PLANE_BLOCK).fold(m, |m, blk| merge_run_block(m, blk, Recip::new(blk.len())))
}

/// [`merge_run`] of one block of `r.len` values.
#[inline(always)]
fn merge_run_block(m: Moments, blk: &[f32], r: Recip) -> Moments {
    if m.count == 0.0 {
        return block_moments(blk, r);
    }
    let shift = m.mean as f32;
    let (s1, s2) = centered_sums(blk, shift);
    let b = if shift_is_near(s1, s2, r.inv) { Moments::from_shifted(r, shift, s1, s2) } else { block_moments(blk, r) };
    m.merge(b)
}

/// The mean and biased variance (`M2 / n`) of one row of `r.len` values ([`merge_run`]).
#[inline]
pub(crate) fn row_mean_var(xs: &[f32], r: Recip) -> (f64, f64) {
    let m = merge_run(Moments::EMPTY, xs, r);
    (m.mean, m.m2 * r.inv)
}

/// Whether a borrowed shift serves a block of `n = 1 / inv_n` values whose sums about it are
/// `s1 = sum(x - shift)`, `s2 = sum((x - shift)^2)`: within a standard deviation of the
/// block's mean (`s1^2 / n <= s2 / 2`, i.e. `s2 <= 2 M2`: at most one bit lost to
/// cancellation). In f64, and `s2` must be finite: far from the shift the f32 squares
/// overflow, and `inf <= inf` would pass. NaN fails.
#[inline]
fn shift_is_near(s1: f32, s2: f32, inv_n: f64) -> bool {
    s2.is_finite() && (s1 as f64) * (s1 as f64) * inv_n <= 0.5 * s2 as f64
}

/// Corrected two-pass moments of one cache-resident contiguous block of `r.len` values:
/// the shift `sum * (1/n)` in f32, then [`Moments::from_shifted`].
#[inline(always)]
fn block_moments(xs: &[f32], r: Recip) -> Moments {
    let shift = sum(xs) * r.inv32;
    let (s1, s2) = centered_sums(xs, shift);
    Moments::from_shifted(r, shift, s1, s2)
}

/// Sum in four independent f32x4 accumulators (16 elements a step) for instruction-level
/// parallelism.
#[inline]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let (lanes, tail) = sum_lanes(xs);
    let mut total = lanes.hsum();
    for &v in tail {
        total += v;
    }
    total
}

/// [`sum`] before its horizontal sum: the lanes of its accumulators added, and the values
/// after the last whole quad, which [`sum`] adds one by one.
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> (F32x4, &[f32]) {
    let mut acc = [F32x4::zero(); 4];
    let steps = xs.chunks_exact(16);
    let rest = steps.remainder();
    for s in steps {
        for k in 0..4 {
            acc[k] = acc[k].add(F32x4::load(q(&s[4 * k..4 * k + 4])));
        }
    }
    let (body, tail) = quads(rest);
    for v in body {
        acc[0] = acc[0].add(F32x4::load(q(v)));
    }
    (acc[0].add(acc[1]).add(acc[2].add(acc[3])), tail)
}

/// `(sum(x - s), sum((x - s)^2))` in f32x4 lanes.
#[inline]
fn centered_sums(xs: &[f32], shift: f32) -> (f32, f32) {
    let (l1, l2, rest) = centered_lanes(xs, shift);
    let (mut s1, mut s2) = (l1.hsum(), l2.hsum());
    for &v in rest {
        let d = v - shift;
        s1 += d;
        s2 += d * d;
    }
    (s1, s2)
}

/// [`centered_sums`] before its horizontal sums: the lanes of `x - s` and `(x - s)^2`, and
/// the values after the last whole octet, which [`centered_sums`] adds one by one.
#[inline(always)]
fn centered_lanes(xs: &[f32], shift: f32) -> (F32x4, F32x4, &[f32]) {
    let s = F32x4::splat(shift);
    let (mut a1, mut a2, mut b1, mut b2) = (F32x4::zero(), F32x4::zero(), F32x4::zero(), F32x4::zero());
    let steps = xs.chunks_exact(8);
    let rest = steps.remainder();
    for st in steps {
        let d0 = F32x4::load(q(&st[0..4])).sub(s);
        let d1 = F32x4::load(q(&st[4..8])).sub(s);
        a1 = a1.add(d0);
        a2 = a2.add(d0.mul(d0));
        b1 = b1.add(d1);
        b2 = b2.add(d1.mul(d1));
    }
    (a1.add(b1), a2.add(b2), rest)
}

/// [`row_mean_var`] of four rows of the same `r.len <= PLANE_BLOCK` values at once: per
/// lane, the row's mean and biased variance as two f64 pairs (rows 0-1, rows 2-3). The
/// same operations on each row in the same order, so the same bits; but the horizontal
/// sums go four rows to a vector ([`F32x4::hsum4`]), the scalar tails a row's lane each,
/// and the f64 steps ([`Moments::from_shifted`]) two rows to a vector. A short row has
/// little work besides that chain (LayerNorm over 64 features: 16 quads).
#[inline(always)]
pub(crate) fn row_mean_var4(rows: [&[f32]; 4], r: Recip) -> ([F64x2; 2], [F64x2; 2]) {
    debug_assert!(r.len <= PLANE_BLOCK && rows.iter().all(|x| x.len() == r.len));
    // The tails' k-th values of the four rows, as one vector.
    let column = |tails: [&[f32]; 4], k: usize| F32x4::from_array(tails.map(|t| t[k]));
    let sums = rows.map(sum_lanes);
    let mut total = F32x4::hsum4(sums.map(|s| s.0));
    let tails = sums.map(|s| s.1);
    for k in 0..tails[0].len() {
        total = total.add(column(tails, k));
    }
    let shift = total.mul(F32x4::splat(r.inv32));
    let sh = shift.to_array();
    let c: [(F32x4, F32x4, &[f32]); 4] = core::array::from_fn(|j| centered_lanes(rows[j], sh[j]));
    let (mut s1, mut s2) = (F32x4::hsum4(c.map(|c| c.0)), F32x4::hsum4(c.map(|c| c.1)));
    let rests = c.map(|c| c.2);
    for k in 0..rests[0].len() {
        let d = column(rests, k).sub(shift);
        s1 = s1.add(d);
        s2 = s2.add(d.mul(d));
    }
    // Moments::from_shifted and row_mean_var, a pair of rows at a time.
    let (s1, s2, shift) = (F64x2::widen(s1), F64x2::widen(s2), F64x2::widen(shift));
    let inv = F64x2::splat(r.inv);
    let pair = |j: usize| {
        let q = s1[j].mul(inv);
        (shift[j].add(q), s2[j].sub(s1[j].mul(q)).non_negative().mul(inv))
    };
    let (p0, p1) = (pair(0), pair(1));
    ([p0.0, p1.0], [p0.1, p1.1])
}

/// Moments of channels-last rows (`x.len() == rows * channels`), block by block.
///
/// Each block's centered pass needs a shift near the block's mean. The first block takes
/// it from a pass of its own over the block (pass 1 below); every later block tries the
/// previous blocks' mean instead, which saves that pass (a third of the work of this
/// function, which is compute-bound on rows: its accumulators live in memory, a row of
/// channels each). The corrected two-pass result is only as accurate as the shift is
/// close: `M2 = S2 - S1^2 / n` cancels when `|S1 / n|` (the shift's distance from the
/// block mean) is large against the spread. So a block whose shift turns out farther
/// than one standard deviation from its mean in any channel (`S1^2 / n > S2 / 2`, i.e.
/// `S2 <= 2 M2`: at most one bit lost; or `S2` overflowed) is redone with its own pass-1
/// shift, while it is still in cache: data whose mean drifts along the rows (sorted, or blocks of different
/// distributions) gets exactly the two-pass treatment, stationary data skips pass 1.
/// NaN fails the test too, so it takes the old path.
///
/// `out` holds the moments merged so far (all empty to start; [`accumulate`] passes the
/// previous pieces'): the blocks are merged into it, and a non-empty `out` already gives
/// the first block its shift, so pieces fed in order take the same shifts as the whole.
fn rows_range(x: &[f32], channels: usize, block_rows: usize, out: Vec<Moments>) -> Vec<Moments> {
    match rows_together(channels, x.len()) {
        4 => rows_range_in::<4>(x, channels, block_rows, out),
        2 => rows_range_in::<2>(x, channels, block_rows, out),
        _ => rows_range_in::<1>(x, channels, block_rows, out),
    }
}

/// [`rows_range`] with its rows `R` at a time. Not inlined: each grouping keeps a compiled
/// loop of its own (see `backward::dx_rows_task`).
#[inline(never)]
fn rows_range_in<const R: usize>(x: &[f32], channels: usize, block_rows: usize, mut out: Vec<Moments>) -> Vec<Moments> {
    let mut have_shift = out.iter().all(|m| m.count > 0.0);
    let mut shift: Vec<f32> = out.iter().map(|m| if have_shift { m.mean as f32 } else { 0.0 }).collect();
    let mut s1 = vec![0f32; channels];
    let mut s2 = vec![0f32; channels];
    for blk in x.chunks(block_rows * channels) {
        let n = blk.len() / channels;
        let inv_n = 1.0 / n as f64;
        let near = have_shift && {
            centered_block::<R>(&mut s1, &mut s2, blk, &shift);
            s1.iter().zip(&s2).all(|(&a, &b)| shift_is_near(a, b, inv_n))
        };
        if !near {
            block_shift::<R>(&mut shift, blk);
            centered_block::<R>(&mut s1, &mut s2, blk, &shift);
        }
        merge_block(&mut out, &mut shift, &s1, &s2, n);
        have_shift = true;
    }
    out
}

/// Merges a block of `n` rows, given per channel as its shift and the f32 sums about it,
/// into `out` (Chan et al., as [`Moments::from_shifted`] then [`Moments::merge`], but
/// multiplying by reciprocals where `merge` divides: the same to f64 rounding), and
/// sets each channel's shift to its mean so far (f64, rounded once) for the next block.
/// Every channel has counted the same rows, so those reciprocals and weights are
/// formed once per block here, not per channel: with 16-row blocks of wide rows (>= 256
/// channels) the per-channel f64 work, five divisions among it, took most of the
/// statistics pass's time.
fn merge_block(out: &mut [Moments], shift: &mut [f32], s1: &[f32], s2: &[f32], n: usize) {
    let nb = n as f64;
    let na = out.first().map_or(0.0, |m| m.count);
    debug_assert!(out.iter().all(|m| m.count == na), "channels-last moments count the same rows in every channel");
    let total = na + nb;
    let (inv_nb, w, wab) = (1.0 / nb, nb / total, na * nb / total);
    for ((o, sh), (&a, &b)) in out.iter_mut().zip(shift.iter_mut()).zip(s1.iter().zip(s2)) {
        let (a, b) = (a as f64, b as f64);
        let mean = *sh as f64 + a * inv_nb;
        let m2 = non_negative(b - a * a * inv_nb);
        *o = if na == 0.0 {
            Moments { count: nb, mean, m2 }
        } else {
            let delta = mean - o.mean;
            Moments { count: total, mean: o.mean + delta * w, m2: o.m2 + m2 + delta * delta * wab }
        };
        *sh = o.mean as f32;
    }
}

/// Pass 1: the block mean as `first row + mean(row - first row)`. The differences are
/// exact for nearby values and of the size of the spread, so their f32 sum keeps the
/// digits that a running sum of the values loses when |mean| >> spread (a block has up to
/// 4096 rows: summing 4096 values of ~1e6 in f32 put the shift ~30 standard deviations
/// off, more than pass 2 can correct).
fn block_shift<const R: usize>(shift: &mut [f32], blk: &[f32]) {
    let channels = shift.len();
    let n = blk.len() / channels;
    let first = &blk[..channels];
    shift.fill(0.0);
    // Rows in groups where that pays (`rows_together`): each accumulator load and store
    // serves the group; the block's last rows, fewer than a group, one at a time.
    for g in blk.chunks(R * channels) {
        if g.len() == R * channels {
            diff_rows_into::<R>(shift, core::array::from_fn(|r| &g[r * channels..(r + 1) * channels]), first);
        } else {
            g.chunks(channels).for_each(|row| diff_rows_into::<1>(shift, [row], first));
        }
    }
    let inv_n = 1.0 / n as f32;
    shift.iter_mut().zip(first).for_each(|(v, &f)| *v = f + *v * inv_n);
}

/// Pass 2: `s1 = sum(x - shift)`, `s2 = sum((x - shift)^2)` per channel over the block.
///
/// Rows that the kernels take one at a time (`rows_together` says 1: wide rows, not in
/// cache) go strip by strip instead ([`centered_strips`]); the others `R` rows at a time,
/// each sum loaded and stored once per group of rows.
fn centered_block<const R: usize>(s1: &mut [f32], s2: &mut [f32], blk: &[f32], shift: &[f32]) {
    let channels = shift.len();
    if R == 1 && channels >= 4 * STRIP_QUADS {
        centered_strips(s1, s2, blk, shift);
        return;
    }
    s1.fill(0.0);
    s2.fill(0.0);
    for g in blk.chunks(R * channels) {
        if g.len() == R * channels {
            centered_rows_into::<R>(s1, s2, core::array::from_fn(|r| &g[r * channels..(r + 1) * channels]), shift);
        } else {
            g.chunks(channels).for_each(|row| centered_rows_into::<1>(s1, s2, [row], shift));
        }
    }
}

/// [`centered_block`] strip by strip of [`STRIP_QUADS`] quads of channels, down all the
/// block's rows: the strip's sums stay in registers for the whole block, where a row at a
/// time loads and stores every channel's two sums for every row (ten operations a quad
/// against five). Each channel still adds its rows in row order: the same bits as rows
/// taken in any grouping. Wide rows from memory (`R` = 1) took 0.81-0.94x the time this
/// way (BatchNorm's channels-last training forward at 100-1024 channels, GroupNorm at
/// 256; docs/performance.md, session 15); rows of 24 or 64 channels, which the row loops
/// take in pairs, 1.0-1.06x, so they stay.
fn centered_strips(s1: &mut [f32], s2: &mut [f32], blk: &[f32], shift: &[f32]) {
    let channels = shift.len();
    let nq = channels / 4;
    touch(blk);
    let mut k = 0;
    while k + STRIP_QUADS <= nq {
        centered_strip::<STRIP_QUADS>(s1, s2, blk, shift, k);
        k += STRIP_QUADS;
    }
    while k < nq {
        centered_strip::<1>(s1, s2, blk, shift, k);
        k += 1;
    }
    // The channels after the last whole quad, a row at a time.
    let c0 = 4 * nq;
    if c0 < channels {
        s1[c0..].fill(0.0);
        s2[c0..].fill(0.0);
        for row in blk.chunks_exact(channels) {
            for c in c0..channels {
                let d = row[c] - shift[c];
                s1[c] += d;
                s2[c] += d * d;
            }
        }
    }
}

/// [`centered_strips`] for the `W` quads of channels from quad `k`: their sums over every
/// row of the block, in row order, stored once.
#[inline(always)]
fn centered_strip<const W: usize>(s1: &mut [f32], s2: &mut [f32], blk: &[f32], shift: &[f32], k: usize) {
    let channels = shift.len();
    let cols = 4 * k..4 * (k + W);
    let sh: [F32x4; W] = core::array::from_fn(|j| F32x4::load(q(&shift[4 * (k + j)..4 * (k + j) + 4])));
    let (mut a, mut b) = ([F32x4::zero(); W], [F32x4::zero(); W]);
    for row in blk.chunks_exact(channels) {
        let strip = &row[cols.clone()];
        for j in 0..W {
            let d = F32x4::load(q(&strip[4 * j..4 * j + 4])).sub(sh[j]);
            a[j] = a[j].add(d);
            b[j] = b[j].add(d.mul(d));
        }
    }
    for j in 0..W {
        let c = 4 * (k + j);
        a[j].store(q_mut(&mut s1[c..c + 4]));
        b[j].store(q_mut(&mut s2[c..c + 4]));
    }
}

/// `acc += row - base` for each of `R` rows in turn, lane-wise across channels: each
/// accumulator loaded and stored once for the rows, the rows' terms added in row order
/// (so any grouping of rows gives the same bits).
#[inline]
fn diff_rows_into<const R: usize>(acc: &mut [f32], rows: [&[f32]; R], base: &[f32]) {
    let n = acc.len();
    let nq = n / 4;
    let (aq, bq) = (quad_view_mut(acc), quad_view(base, nq));
    let xq = rows.map(|r| quad_view(r, nq));
    for k in 0..nq {
        let b = F32x4::load(&bq[k]);
        let mut a = F32x4::load(&aq.0[k]);
        for x in &xq {
            a = a.add(F32x4::load(&x[k]).sub(b));
        }
        a.store(&mut aq.0[k]);
    }
    for c in 4 * nq..n {
        for r in &rows {
            aq.1[c - 4 * nq] += r[c] - base[c];
        }
    }
}

/// `s1 += row - shift; s2 += (row - shift)^2` for each of `R` rows in turn, lane-wise
/// across channels, as [`diff_rows_into`] (the same bits however rows are grouped).
#[inline]
fn centered_rows_into<const R: usize>(s1: &mut [f32], s2: &mut [f32], rows: [&[f32]; R], shift: &[f32]) {
    let n = s1.len();
    let nq = n / 4;
    let (q1, q2, sq) = (quad_view_mut(s1), quad_view_mut(&mut s2[..n]), quad_view(shift, nq));
    let xq = rows.map(|r| quad_view(r, nq));
    for k in 0..nq {
        let sh = F32x4::load(&sq[k]);
        let (mut a, mut b) = (F32x4::load(&q1.0[k]), F32x4::load(&q2.0[k]));
        for x in &xq {
            let d = F32x4::load(&x[k]).sub(sh);
            a = a.add(d);
            b = b.add(d.mul(d));
        }
        a.store(&mut q1.0[k]);
        b.store(&mut q2.0[k]);
    }
    for c in 4 * nq..n {
        for r in &rows {
            let d = r[c] - shift[c];
            q1.1[c - 4 * nq] += d;
            q2.1[c - 4 * nq] += d * d;
        }
    }
}

/// Merges the moments of `x`, one piece of a reduction segment ([`segment_len`]), into
/// `acc` (one per channel of the piece), so that feeding a segment's pieces in order into
/// an empty `acc` gives that segment's moments as [`moments`] takes them, bit for bit:
/// the same blocks merged in the same order. Contiguous planes: each plane of `x` merged
/// into its channel, as [`moments`] does. Channels-last rows: each block of
/// [`rows_per_block`] rows, so a piece must hold whole blocks (all but the segment's
/// last piece). The segments' moments, merged in order into empty moments
/// ([`Moments::merge`]), are [`moments`] of the whole. This is how the plain-array
/// training forward gets its statistics while it streams `x` through a cache-sized
/// window instead of copying it whole into wasm memory.
pub fn accumulate(x: &[f32], dims: Dims, acc: &mut [Moments]) {
    let ch = dims.channels;
    assert_eq!(acc.len(), ch, "accumulate: one Moments per channel of the piece");
    if dims.is_planar() {
        let recip = Recip::new(dims.inner);
        for (p, plane) in x[..dims.len()].chunks_exact(dims.inner).enumerate() {
            let c = p % ch;
            acc[c] = merge_run(acc[c], plane, recip);
        }
    } else {
        // The piece's blocks merged into acc in order, each shifted by the mean so far:
        // what rows_range does over the whole tensor.
        let block = rows_per_block(ch);
        let merged = rows_range(&x[..dims.len()], ch, block, acc.to_vec());
        acc.copy_from_slice(&merged);
    }
}
