//! Training-mode backward: one fused reduction pass, then one elementwise pass.
//!
//! With `m` values per channel, `xmu = x - mean`, `k = gamma * invstd`:
//!   dbeta  = sum(dy)
//!   dgamma = sum(dy * xmu) * invstd
//!   dx     = k * (dy - sum(dy)/m - xmu * invstd^2 * sum(dy * xmu)/m)
//!          = dy * k + xmu * b + c,  b = -k * invstd^2 * sum(dy*xmu)/m,  c = -k * sum(dy)/m
//! (PyTorch's `batch_norm_cpu_backward` folds the same way). Both sums come from a single
//! read of `dy` and `x` (f32 lanes within a cache-sized block, f64 across blocks).
//!
//! Through a fused ReLU (`y = relu(BN(x) [+ z])`), the gradient reaching BN is
//! `g = dy where y > 0, else 0` (PyTorch's `threshold_backward` on the ReLU's output). Both
//! passes take the ReLU's output as an optional `gate` and mask `dy` as they read it, so
//! `g` is never written to memory; `dx_apply` can also write `g` itself as `dz`, the
//! gradient of the residual input, and `dx_apply_dz_over_dy` writes it over `dy` (each
//! quad read, then overwritten: no separate tensor). The mask comes as a [`Gate`]: the
//! ReLU's output `y` (read as `y > 0`) or the 1-bit mask the forward wrote
//! ([`crate::passes::mask`]); both give the same `g`, bit for bit.

use crate::dims::Dims;
use crate::moments::{planar_segments, rows_per_block, segment_len, segment_rows};
use crate::parallel;
use crate::passes::mask::{self, bit, quad_bits};
use crate::passes::rows_together;
use crate::simd::{octet_quad, octet_view, q, q_mut, quad_view, quad_view_mut, quads4_mut, quads8, quads8_mut, row_pair, row_pair_mut, row_split, row_split_mut, row_tail, where_pos, zip4, F32x4, MaskWord, OctetMask, OctetParams, ParamQuads, QuadMask, RowPartsMut};

/// Where a fused ReLU passes the gradient.
#[derive(Debug, Clone, Copy)]
pub enum Gate<'a> {
    /// The ReLU's output `y`: the gradient passes where `y > 0`.
    Output(&'a [f32]),
    /// The forward's 1-bit mask of `y > 0` (see [`crate::passes::mask`] for the layout).
    Bits(&'a [u32]),
}

/// No gate / the output `y` / a bit mask: the const generic of the kernels below.
const NONE: u8 = 0;
const OUT: u8 = 1;
const BITS: u8 = 2;

/// `(mode, y or x as a placeholder, words or an empty slice)` of an optional gate.
fn gate_parts<'a>(gate: Option<Gate<'a>>, x: &'a [f32]) -> (u8, &'a [f32], &'a [u32]) {
    match gate {
        None => (NONE, x, &[]),
        Some(Gate::Output(y)) => (OUT, y, &[]),
        Some(Gate::Bits(b)) => (BITS, x, b),
    }
}

/// Per-channel `sum(dy)` and `sum(dy * (x - mean))`, f64.
#[derive(Debug, Clone, PartialEq)]
pub struct GradSums {
    pub sum_dy: Vec<f64>,
    pub sum_dy_xmu: Vec<f64>,
}

impl GradSums {
    pub fn zeros(channels: usize) -> Self {
        GradSums { sum_dy: vec![0.0; channels], sum_dy_xmu: vec![0.0; channels] }
    }

    /// Channel-wise sum (merging per-thread or per-worker partial sums). A method, not
    /// `impl Add`: it is passed by name as the reduction (`GradSums::add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, o: GradSums) -> GradSums {
        for (a, b) in self.sum_dy.iter_mut().zip(o.sum_dy) {
            *a += b;
        }
        for (a, b) in self.sum_dy_xmu.iter_mut().zip(o.sum_dy_xmu) {
            *a += b;
        }
        self
    }
}

const PLANE_BLOCK: usize = 2048;

/// Per-channel sums of `g = dy` (or, with a `gate`, `g = dy` where the ReLU passed it, else 0).
pub fn grad_sums(dy: &[f32], x: &[f32], dims: Dims, mean: &[f32], gate: Option<Gate>) -> GradSums {
    match gate_parts(gate, x) {
        (OUT, y, _) => grad_sums_with::<OUT>(dy, x, y, &[], dims, mean),
        (BITS, _, b) => grad_sums_with::<BITS>(dy, x, x, b, dims, mean),
        _ => grad_sums_with::<NONE>(dy, x, x, &[], dims, mean),
    }
}

/// Per reduction segment ([`segment_len`]) from zero, the segments' sums added in order:
/// the same bits on any number of threads (see [`crate::moments::moments`]).
fn grad_sums_with<const G: u8>(dy: &[f32], x: &[f32], gate: &[f32], bits: &[u32], dims: Dims, mean: &[f32]) -> GradSums {
    let par = parallel::worth_it(x.len());
    let ch = dims.channels;
    let wpu = mask::words_per_unit(dims);
    if dims.is_planar() {
        // Lane sums carry across a channel's planes of a segment and go to f64 every
        // PLANE_BLOCK elements: short planes (e.g. 64 elements) would otherwise pay two
        // horizontal sums and an f64 flush each.
        let inner = dims.inner;
        let feed = |sums: &mut ChannelSums, r: core::ops::Range<usize>| {
            if G == BITS {
                // The plane's mask words: each plane starts a word.
                let u = r.start / inner;
                sums.plane_bits(&dy[r.clone()], &x[r], &bits[u * wpu..(u + 1) * wpu]);
            } else {
                sums.plane::<G>(&dy[r.clone()], &x[r.clone()], &gate[r]);
            }
        };
        let add = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
        let per = planar_segments(dims, par, |c| ChannelSums::new(mean[c]), feed, ChannelSums::finish, (0.0, 0.0), add);
        GradSums { sum_dy: per.iter().map(|p| p.0).collect(), sum_dy_xmu: per.iter().map(|p| p.1).collect() }
    } else {
        let block = rows_per_block(ch);
        let per = segment_len(dims);
        let segments = dims.outer.div_ceil(per).max(1);
        parallel::map_collect(segments, par, |t| {
            let rows = segment_rows(dims, per, t);
            let r = rows.start * ch..rows.end * ch;
            let w = if G == BITS { &bits[rows.start * wpu..rows.end * wpu] } else { &[] };
            rows_sums::<G>(&dy[r.clone()], &x[r.clone()], &gate[r], w, mean, block)
        })
        .into_iter()
        .fold(GradSums::zeros(ch), GradSums::add)
    }
}

/// One channel's gradient sums over its planes, fed in order: f32x4 lane sums that carry
/// across planes and go to f64 every `PLANE_BLOCK` elements.
#[derive(Clone, Copy)]
struct ChannelSums {
    acc: PlaneSums,
    pending: usize,
    s_dy: f64,
    s_dxm: f64,
}

/// f64 slots per channel of a [`grad_sums_accumulate`] state.
pub const GRAD_STATE: usize = 21;

impl ChannelSums {
    fn new(mean: f32) -> Self {
        ChannelSums { acc: PlaneSums::new(mean), pending: 0, s_dy: 0.0, s_dxm: 0.0 }
    }

    /// Lane sums carry across planes: short planes (e.g. 64 elements) would otherwise pay
    /// two horizontal sums and an f64 flush each.
    #[inline]
    fn plane<const G: u8>(&mut self, dy: &[f32], x: &[f32], gate: &[f32]) {
        let blocks = dy.chunks(PLANE_BLOCK).zip(x.chunks(PLANE_BLOCK));
        for ((d, v), g) in blocks.zip(gate.chunks(PLANE_BLOCK)) {
            self.acc.add::<G>(d, v, g);
            self.block_done(d.len());
        }
    }

    /// [`plane`](Self::plane) gated by the plane's mask words: PLANE_BLOCK is a multiple
    /// of 32, so each block's bits start a word.
    #[inline]
    fn plane_bits(&mut self, dy: &[f32], x: &[f32], words: &[u32]) {
        let blocks = dy.chunks(PLANE_BLOCK).zip(x.chunks(PLANE_BLOCK));
        for (k, (d, v)) in blocks.enumerate() {
            self.acc.add_bits(d, v, &words[k * (PLANE_BLOCK / 32)..]);
            self.block_done(d.len());
        }
    }

    #[inline(always)]
    fn block_done(&mut self, len: usize) {
        self.pending += len;
        if self.pending >= PLANE_BLOCK {
            let (a, b) = self.acc.take();
            self.s_dy += a as f64;
            self.s_dxm += b as f64;
            self.pending = 0;
        }
    }

    fn finish(mut self) -> (f64, f64) {
        let (a, b) = self.acc.take();
        (self.s_dy + a as f64, self.s_dxm + b as f64)
    }

    /// From `GRAD_STATE` f64s (all zero: no planes yet); f32 values round-trip exactly.
    fn load(s: &[f64], mean: f32) -> Self {
        let lane = |k: usize| {
            let v = [s[4 * k] as f32, s[4 * k + 1] as f32, s[4 * k + 2] as f32, s[4 * k + 3] as f32];
            F32x4::load(&v)
        };
        let acc = PlaneSums { mean, a: lane(0), a2: lane(1), b: lane(2), b2: lane(3), tail_dy: s[16] as f32, tail_dxm: s[17] as f32 };
        ChannelSums { acc, pending: s[18] as usize, s_dy: s[19], s_dxm: s[20] }
    }

    fn store(&self, s: &mut [f64]) {
        let a = &self.acc;
        for (k, v) in [a.a, a.a2, a.b, a.b2].iter().enumerate() {
            for (j, &l) in v.to_array().iter().enumerate() {
                s[4 * k + j] = l as f64;
            }
        }
        s[16..].copy_from_slice(&[a.tail_dy as f64, a.tail_dxm as f64, self.pending as f64, self.s_dy, self.s_dxm]);
    }
}

/// Feeds `dy`, `x` (and `gate`), one piece of a reduction segment
/// ([`segment_len`](crate::moments::segment_len)), into `state` ([`GRAD_STATE`] f64s per
/// channel of the piece, all zero to start the segment), so that a segment's pieces fed
/// in order and then [`grad_sums_finish`] give that segment's sums as [`grad_sums`] takes
/// them, bit for bit; the segments' sums added in order, from zero, are [`grad_sums`] of
/// the whole. Contiguous planes feed their channel's running lane sums as `grad_sums`
/// does; channels-last rows go block of [`rows_per_block`](crate::moments::rows_per_block)
/// rows by block, so a piece holds whole blocks (all but the segment's last). `mean` is
/// per channel of the piece. This is how the plain-array backward streams `dy` and `x`
/// instead of copying them whole.
pub fn grad_sums_accumulate(dy: &[f32], x: &[f32], gate: Option<&[f32]>, dims: Dims, mean: &[f32], state: &mut [f64]) {
    match gate {
        Some(g) => accumulate_with::<OUT>(dy, x, g, dims, mean, state),
        None => accumulate_with::<NONE>(dy, x, x, dims, mean, state),
    }
}

fn accumulate_with<const G: u8>(dy: &[f32], x: &[f32], gate: &[f32], dims: Dims, mean: &[f32], state: &mut [f64]) {
    let ch = dims.channels;
    let n = dims.len();
    let (dy, x, gate) = (&dy[..n], &x[..n], &gate[..n]);
    let state = &mut state[..GRAD_STATE * ch];
    if dims.is_planar() {
        for (p, ((d, v), g)) in dy.chunks_exact(dims.inner).zip(x.chunks_exact(dims.inner)).zip(gate.chunks_exact(dims.inner)).enumerate() {
            let c = p % ch;
            let slot = &mut state[GRAD_STATE * c..GRAD_STATE * (c + 1)];
            let mut sums = ChannelSums::load(slot, mean[c]);
            sums.plane::<G>(d, v, g);
            sums.store(slot);
        }
    } else {
        // The piece's blocks continue the running f64 sums (slots 19, 20) block by block,
        // the additions `grad_sums` makes on one thread; one call per piece, not per block.
        let slot = |c: usize, k: usize| GRAD_STATE * c + k;
        let mut sums = GradSums {
            sum_dy: (0..ch).map(|c| state[slot(c, 19)]).collect(),
            sum_dy_xmu: (0..ch).map(|c| state[slot(c, 20)]).collect(),
        };
        rows_sums_add::<G>(dy, x, gate, &[], mean, rows_per_block(ch), &mut sums);
        for c in 0..ch {
            state[slot(c, 19)] = sums.sum_dy[c];
            state[slot(c, 20)] = sums.sum_dy_xmu[c];
        }
    }
}

/// The sums of a [`grad_sums_accumulate`] state over one segment of tensors of `dims` (its
/// layout) with `mean`, as [`grad_sums`] forms that segment's part.
pub fn grad_sums_finish(state: &[f64], dims: Dims, mean: &[f32]) -> GradSums {
    let ch = dims.channels;
    let mut out = GradSums::zeros(ch);
    for c in 0..ch {
        let slot = &state[GRAD_STATE * c..GRAD_STATE * (c + 1)];
        let (a, b) = if dims.is_planar() {
            // As grad_sums folds a channel's one task from (0, 0).
            let (a, b) = ChannelSums::load(slot, mean[c]).finish();
            (0.0 + a, 0.0 + b)
        } else {
            (slot[19], slot[20])
        };
        out.sum_dy[c] = a;
        out.sum_dy_xmu[c] = b;
    }
    out
}

/// `sum(dy)` and `sum(dy * (x - mean))` of one channel, accumulated in f32x4 lanes over
/// several contiguous runs, read out (and reset) by `take`.
#[derive(Clone, Copy)]
struct PlaneSums {
    mean: f32,
    a: F32x4,
    a2: F32x4,
    b: F32x4,
    b2: F32x4,
    tail_dy: f32,
    tail_dxm: f32,
}

impl PlaneSums {
    fn new(mean: f32) -> Self {
        let z = F32x4::zero();
        PlaneSums { mean, a: z, a2: z, b: z, b2: z, tail_dy: 0.0, tail_dxm: 0.0 }
    }

    #[inline]
    fn add<const G: u8>(&mut self, dy: &[f32], x: &[f32], gate: &[f32]) {
        let m = F32x4::splat(self.mean);
        let n = dy.len();
        let (x, gate) = (&x[..n], &gate[..n]);
        // Zipped exact chunks (no bounds checks in the loop); `gate` is only read with G.
        let steps = dy.chunks_exact(8).zip(x.chunks_exact(8)).zip(gate.chunks_exact(8));
        for ((d, v), g) in steps {
            let (mut d0, mut d1) = (F32x4::load(q(&d[0..4])), F32x4::load(q(&d[4..8])));
            if G == OUT {
                d0 = d0.where_pos(F32x4::load(q(&g[0..4])));
                d1 = d1.where_pos(F32x4::load(q(&g[4..8])));
            }
            self.a = self.a.add(d0);
            self.a2 = self.a2.add(d1);
            self.b = self.b.add(d0.mul(F32x4::load(q(&v[0..4])).sub(m)));
            self.b2 = self.b2.add(d1.mul(F32x4::load(q(&v[4..8])).sub(m)));
        }
        for i in n / 8 * 8..n {
            let d = if G == OUT { where_pos(dy[i], gate[i]) } else { dy[i] };
            self.tail_dy += d;
            self.tail_dxm += d * (x[i] - self.mean);
        }
    }

    /// [`add`](Self::add) gated by a unit's mask words from bit 0 (the same `g`, bit for
    /// bit, as gating by the output the bits were packed from).
    #[inline]
    fn add_bits(&mut self, dy: &[f32], x: &[f32], words: &[u32]) {
        let m = F32x4::splat(self.mean);
        let n = dy.len();
        let x = &x[..n];
        // Steps of eight as in `add` (the same sums in the same order, so the same bits),
        // each taking the next byte of the word: four per word, the last word maybe fewer.
        let mut step = |d: &[f32], v: &[f32], b: u32| {
            let d0 = F32x4::load(q(&d[0..4])).keep_bits(b);
            let d1 = F32x4::load(q(&d[4..8])).keep_bits(b >> 4);
            self.a = self.a.add(d0);
            self.a2 = self.a2.add(d1);
            self.b = self.b.add(d0.mul(F32x4::load(q(&v[0..4])).sub(m)));
            self.b2 = self.b2.add(d1.mul(F32x4::load(q(&v[4..8])).sub(m)));
        };
        for ((d, v), &w) in dy.chunks_exact(32).zip(x.chunks_exact(32)).zip(words) {
            for k in 0..4 {
                step(&d[8 * k..8 * k + 8], &v[8 * k..8 * k + 8], w >> (8 * k));
            }
        }
        let full = n / 32 * 32;
        for (k, (d, v)) in dy[full..].chunks_exact(8).zip(x[full..].chunks_exact(8)).enumerate() {
            step(d, v, words[full / 32] >> (8 * k));
        }
        for i in n / 8 * 8..n {
            let d = if bit(words, i) { dy[i] } else { 0.0 };
            self.tail_dy += d;
            self.tail_dxm += d * (x[i] - self.mean);
        }
    }

    #[inline]
    fn take(&mut self) -> (f32, f32) {
        let r = (self.a.add(self.a2).hsum() + self.tail_dy, self.b.add(self.b2).hsum() + self.tail_dxm);
        *self = PlaneSums::new(self.mean);
        r
    }
}

fn rows_sums<const G: u8>(dy: &[f32], x: &[f32], gate: &[f32], bits: &[u32], mean: &[f32], block_rows: usize) -> GradSums {
    let mut out = GradSums::zeros(mean.len());
    rows_sums_add::<G>(dy, x, gate, bits, mean, block_rows, &mut out);
    out
}

/// Adds each block's f32 sums of channels-last rows to `out` (f64), block by block in
/// order: [`rows_sums`] from zero, or a stream's running sums continued.
#[allow(clippy::too_many_arguments)]
fn rows_sums_add<const G: u8>(dy: &[f32], x: &[f32], gate: &[f32], bits: &[u32], mean: &[f32], block_rows: usize, out: &mut GradSums) {
    let ch = mean.len();
    let wpr = ch.div_ceil(32);
    let mut s_dy = vec![0f32; ch];
    let mut s_dxm = vec![0f32; ch];
    let blocks = dy.chunks(block_rows * ch).zip(x.chunks(block_rows * ch)).zip(gate.chunks(block_rows * ch));
    // Rows in groups where that pays (`rows_together`): one load and store of each running
    // sum serves the group.
    let together = rows_together(ch, dy.len());
    for (b, ((db, xb), gb)) in blocks.enumerate() {
        s_dy.fill(0.0);
        s_dxm.fill(0.0);
        let w0 = b * block_rows * wpr;
        let words = if G == BITS { &bits[w0..w0 + db.len() / ch * wpr] } else { &[][..] };
        match together {
            4 => block_sums::<G, 4>(&mut s_dy, &mut s_dxm, db, xb, gb, words, mean),
            2 => block_sums::<G, 2>(&mut s_dy, &mut s_dxm, db, xb, gb, words, mean),
            _ => block_sums::<G, 1>(&mut s_dy, &mut s_dxm, db, xb, gb, words, mean),
        }
        for c in 0..ch {
            out.sum_dy[c] += s_dy[c] as f64;
            out.sum_dy_xmu[c] += s_dxm[c] as f64;
        }
    }
}

/// A block's channels-last rows added to the per-channel f32 sums, `R` rows at a time
/// ([`row_sums`]) and its last rows, fewer than `R`, one at a time; `block_words` are the
/// block's mask words (mode BITS). Not inlined, as [`dx_rows_task`].
#[inline(never)]
fn block_sums<const G: u8, const R: usize>(s_dy: &mut [f32], s_dxm: &mut [f32], db: &[f32], xb: &[f32], gb: &[f32], block_words: &[u32], mean: &[f32]) {
    let ch = mean.len();
    let wpr = ch.div_ceil(32);
    let words = |r: usize| if G == BITS { &block_words[r * wpr..(r + 1) * wpr] } else { &[][..] };
    let rows = db.len() / ch;
    let grouped = rows / R * R;
    for r in (0..grouped).step_by(R) {
        let [d, v, g] = [db, xb, gb].map(|s| core::array::from_fn(|i| row(s, r + i, ch)));
        row_sums::<G, R>(s_dy, s_dxm, d, v, g, core::array::from_fn(|i| words(r + i)), mean);
    }
    if grouped < rows {
        // The last rows: the one-row function's loop, not another copy of it here.
        let w = if G == BITS { &block_words[grouped * wpr..] } else { &[][..] };
        let tail = grouped * ch..;
        block_sums::<G, 1>(s_dy, s_dxm, &db[tail.clone()], &xb[tail.clone()], &gb[tail], w, mean);
    }
}

/// Adds `R` channels-last rows' `g` and `g * (x - mean)` to the per-channel f32 sums, `g` =
/// `dy` gated as mode `G` says (by the output `gate`, or by the row's mask `words`). The
/// sums are loaded and stored once for the `R` rows (they live in memory, a row of
/// channels each, and their loads and stores were most of this pass's work), and each
/// row's terms are added in row order: the same bits as one row at a time.
/// Channels go in blocks of 32 (one mask word) with the block's eight quads unrolled: one
/// bounds check per array and one word load a block, not a quad (V8 does not unroll wasm
/// loops; this pass on rows was compute-bound with the mask).
#[inline]
#[allow(clippy::needless_range_loop)] // r indexes several arrays at once
fn row_sums<const G: u8, const R: usize>(
    s_dy: &mut [f32],
    s_dxm: &mut [f32],
    dy: [&[f32]; R],
    x: [&[f32]; R],
    gate: [&[f32]; R],
    words: [&[u32]; R],
    mean: &[f32],
) {
    let n = s_dy.len();
    let (s_dxm, mean) = (&mut s_dxm[..n], &mean[..n]);
    let (dy, x, gate) = (dy.map(|s| &s[..n]), x.map(|s| &s[..n]), gate.map(|s| &s[..n]));
    #[inline(always)]
    fn quad<const G: u8, const R: usize, M: QuadMask>(a: &mut [f32; 4], b: &mut [f32; 4], d: [&[f32; 4]; R], v: [&[f32; 4]; R], g: [&[f32; 4]; R], m: &[f32; 4], mw: [M; R]) {
        let m = F32x4::load(m);
        let (mut sa, mut sb) = (F32x4::load(a), F32x4::load(b));
        for r in 0..R {
            let d = gate_word::<G, _>(F32x4::load(d[r]), g[r], mw[r]);
            sa = sa.add(d);
            sb = sb.add(d.mul(F32x4::load(v[r]).sub(m)));
        }
        sa.store(a);
        sb.store(b);
    }
    let full = n / 32 * 32;
    for base in (0..full).step_by(32) {
        let r = base..base + 32;
        let (a, b) = (&mut s_dy[r.clone()], &mut s_dxm[r.clone()]);
        let m = &mean[r.clone()];
        let (d, v, g) = (dy.map(|s| &s[r.clone()]), x.map(|s| &s[r.clone()]), gate.map(|s| &s[r.clone()]));
        // A whole word, all eight quads read: the form that is cheaper a quad.
        let mut mw: [OctetMask; R] = core::array::from_fn(|k| OctetMask::splat(if G == BITS { words[k][base / 32] } else { 0 }));
        for j in 0..8 {
            let i = 4 * j..4 * j + 4;
            quad::<G, R, _>(q_mut(&mut a[i.clone()]), q_mut(&mut b[i.clone()]), quads_at(d, 4 * j), quads_at(v, 4 * j), quads_at(g, 4 * j), q(&m[i]), mw);
            mw = mw.map(OctetMask::next);
        }
    }
    for c in (full..n / 4 * 4).step_by(4) {
        let i = c..c + 4;
        let mw: [MaskWord; R] = core::array::from_fn(|k| MaskWord::splat(mask_bits::<G>(words[k], c)));
        quad::<G, R, _>(q_mut(&mut s_dy[i.clone()]), q_mut(&mut s_dxm[i.clone()]), quads_at(dy, c), quads_at(x, c), quads_at(gate, c), q(&mean[i]), mw);
    }
    for c in n / 4 * 4..n {
        for r in 0..R {
            let d = gate_one::<G>(dy[r][c], gate[r], words[r], c);
            s_dy[c] += d;
            s_dxm[c] += d * (x[r][c] - mean[c]);
        }
    }
}

/// Row `i` of consecutive rows of `len` values.
#[inline(always)]
fn row(s: &[f32], i: usize, len: usize) -> &[f32] {
    &s[i * len..(i + 1) * len]
}

/// The quad at `i` of each of `R` slices.
#[inline(always)]
fn quads_at<const R: usize>(s: [&[f32]; R], i: usize) -> [&[f32; 4]; R] {
    s.map(|s| q(&s[i..i + 4]))
}

/// `dx = g * k[c] + (x - mean[c]) * b[c] + c[c]` with `g = dy`, or with a `gate`,
/// `g = dy where gate > 0, else 0`; `dz = g` when `dz` is given.
#[allow(clippy::too_many_arguments)]
pub fn dx_apply(
    dy: &[f32],
    x: &[f32],
    gate: Option<Gate>,
    dx: &mut [f32],
    dz: Option<&mut [f32]>,
    dims: Dims,
    k: &[f32],
    mean: &[f32],
    b: &[f32],
    c0: &[f32],
) {
    dx_apply_gated::<false>(dy, x, gate, dx, dz, dims, Coef { k, mean, b, c0 });
}

/// [`dx_apply`] with `dz` written over `dy` (`dy_dz`): each element of `dy` is read, then
/// overwritten by `dz` (the gated `dy`). The same values as `dx_apply` with a separate
/// `dz`, with one tensor-sized stream less: the lines of `dz` are those just read.
#[allow(clippy::too_many_arguments)]
pub fn dx_apply_dz_over_dy(
    dy_dz: &mut [f32],
    x: &[f32],
    gate: Option<Gate>,
    dx: &mut [f32],
    dims: Dims,
    k: &[f32],
    mean: &[f32],
    b: &[f32],
    c0: &[f32],
) {
    // `dy` itself comes from `dz` in the loops (`IP`); `x` stands in for the unread slice.
    dx_apply_gated::<true>(x, x, gate, dx, Some(dy_dz), dims, Coef { k, mean, b, c0 });
}

/// The dx pass for each kind of gate; `IP`: `dy` is read from `dz` (see `dx_apply_dz_over_dy`).
fn dx_apply_gated<const IP: bool>(dy: &[f32], x: &[f32], gate: Option<Gate>, dx: &mut [f32], dz: Option<&mut [f32]>, dims: Dims, p: Coef) {
    match gate_parts(gate, x) {
        (OUT, y, _) => dx_apply_with::<OUT, IP>(dy, x, y, &[], dx, dz, dims, p),
        (BITS, _, bits) => dx_apply_with::<BITS, IP>(dy, x, x, bits, dx, dz, dims, p),
        _ => dx_apply_with::<NONE, IP>(dy, x, x, &[], dx, dz, dims, p),
    }
}

/// Per-channel coefficients of the dx pass.
#[derive(Clone, Copy)]
struct Coef<'a> {
    k: &'a [f32],
    mean: &'a [f32],
    b: &'a [f32],
    c0: &'a [f32],
}

#[allow(clippy::too_many_arguments)]
fn dx_apply_with<const G: u8, const IP: bool>(
    dy: &[f32],
    x: &[f32],
    gate: &[f32],
    bits: &[u32],
    dx: &mut [f32],
    dz: Option<&mut [f32]>,
    dims: Dims,
    p: Coef,
) {
    let wpu = mask::words_per_unit(dims);
    let par = parallel::worth_it(x.len());
    let ch = dims.channels;
    let inner = dims.inner;
    // Planes (channels-first) or rows (channels-last): the unit of one call below.
    let (unit, units) = if dims.is_planar() { (inner, dims.outer * ch) } else { (ch, dims.outer) };
    let per_task = parallel::units_per_task(units, unit, par);
    parallel::for_each_chunk_mut2(dx, dz, per_task * unit, par, |t, out, mut dzs| {
        let first = t * per_task;
        let words = |u: usize| if G == BITS { &bits[u * wpu..(u + 1) * wpu] } else { &[] };
        if dims.is_planar() {
            for (j, o) in out.chunks_mut(unit).enumerate() {
                let r = (first + j) * unit..(first + j + 1) * unit;
                let dzu = dzs.as_deref_mut().map(|d| &mut d[j * unit..(j + 1) * unit]);
                let c = (first + j) % ch;
                let one = Coef { k: &p.k[c..=c], mean: &p.mean[c..=c], b: &p.b[c..=c], c0: &p.c0[c..=c] };
                dx_plane::<G, IP>(&dy[r.clone()], &x[r.clone()], &gate[r], words(first + j), o, dzu, one);
            }
            return;
        }
        let r = first * unit..first * unit + out.len();
        let pairs = rows_together(unit, out.len()) >= 2;
        // The task's mask words (none without the bits).
        let w = if G == BITS { &bits[first * wpu..(first + out.len() / unit) * wpu] } else { &[] };
        // With the mask: an octet of quads (a word) a step, then the row's tail. For rows
        // of whole words, and for dz over dy on rows of whole quads (which otherwise take
        // `dx_rows`); the other rows with a tail ran 1.04-1.14x slower this way than in
        // `dx_rows_zipped` at 12-24 channels.
        if G == BITS && (unit.is_multiple_of(32) || IP && unit.is_multiple_of(4)) {
            match dzs {
                Some(z) if IP => dx_rows_bits_octets::<true, true>(&dy[r.clone()], &x[r], w, out, z, unit, p, pairs),
                Some(z) => dx_rows_bits_octets::<true, false>(&dy[r.clone()], &x[r], w, out, z, unit, p, pairs),
                None => dx_rows_bits_octets::<false, false>(&dy[r.clone()], &x[r], w, out, &mut [], unit, p, pairs),
            }
            return;
        }
        // But for dz written over dy, rows of whole quads go through `dx_rows_zipped` (pairs
        // wherever `rows_together` groups rows).
        if !IP && unit.is_multiple_of(4) {
            let g = if G == OUT { &gate[r.clone()] } else { &x[r.clone()] };
            match dzs {
                Some(z) => dx_rows_zipped::<G, true>(&dy[r.clone()], &x[r], g, w, wpu, out, z, unit, p, pairs),
                None => dx_rows_zipped::<G, false>(&dy[r.clone()], &x[r], g, w, wpu, out, &mut [], unit, p, pairs),
            }
            return;
        }
        // Rows in groups where that pays (`rows_together`): each coefficient load serves
        // the group (as in the forward's `affine::rows`).
        let (f, dz) = (first, dzs.as_deref_mut());
        match rows_together(unit, out.len()) {
            4 => dx_rows_task::<G, IP, 4>(dy, x, gate, bits, wpu, out, dz, f, unit, p),
            2 => dx_rows_task::<G, IP, 2>(dy, x, gate, bits, wpu, out, dz, f, unit, p),
            // With a mask, single rows measured faster compiled into this loop than called
            // (1.05-1.07x the time at 128-256 channels).
            _ if G == BITS => dx_rows_body::<G, IP, 1>(dy, x, gate, bits, wpu, out, dz, f, unit, p),
            _ => dx_rows_task::<G, IP, 1>(dy, x, gate, bits, wpu, out, dz, f, unit, p),
        }
    });
}

/// The channels-last dx pass over rows of `ch` channels (`ch % 4 == 0`), with the ReLU's
/// gate of mode `G` (from `gate`, the output, or from `bits`, `wpu` words a row) and, with
/// `DZ`, the gated `dy` written to `dz` (not over `dy`): two rows a step (`pairs`) or one,
/// every stream a zipped view of quads, so that the loop holds one index and its bases (and
/// the rows' mask words). `dx_rows`, which also writes `dz` over `dy`, ran these rows
/// 1.05-1.3x slower (V8 reloaded its row pointers from the stack every step). The same
/// operations as `dx_rows`, so the same bits.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn dx_rows_zipped<const G: u8, const DZ: bool>(dy: &[f32], x: &[f32], gate: &[f32], bits: &[u32], wpu: usize, dx: &mut [f32], dz: &mut [f32], ch: usize, p: Coef, pairs: bool) {
    let nq = ch / 4;
    let params = zip4(quad_view(p.k, nq), quad_view(p.mean, nq), quad_view(p.b, nq), quad_view(p.c0, nq));
    let step = dx_quad;
    // Row `r`'s mask words (none without the bits).
    let words = |r: usize| if G == BITS { &bits[r * wpu..(r + 1) * wpu] } else { &[] };
    // Each row's mask word is splatted once for its eight quads and expanded in the vector
    // unit (`MaskWord`), as in `dx_rows`.
    let mask_at = |k: usize, mw: MaskWord, w: &[u32]| if k.is_multiple_of(8) { MaskWord::splat(w[k / 8]) } else { mw.next() };
    let rows = if pairs { 2 } else { 1 };
    let whole = dx.len() / (rows * ch) * (rows * ch);
    let (dxw, last) = dx.split_at_mut(whole);
    // Without DZ there is no dz: an empty slice, and `dz_rows` hands out empty ones.
    let (dzw, dz_last) = if DZ { dz.split_at_mut(whole) } else { (&mut [][..], &mut [][..]) };
    let mut dz_rows = dzw.chunks_exact_mut((rows * ch).max(1));
    let groups = dy.chunks_exact(rows * ch).zip(x.chunks_exact(rows * ch)).zip(gate.chunks_exact(rows * ch));
    for (j, (o, ((d, v), g))) in dxw.chunks_exact_mut(rows * ch).zip(groups).enumerate() {
        let z = if DZ { dz_rows.next().unwrap() } else { &mut [][..] };
        if pairs {
            let (o0, o1) = quad_view_mut(o).0.split_at_mut(nq);
            let (d0, d1) = quad_view(d, 2 * nq).split_at(nq);
            let (v0, v1) = quad_view(v, 2 * nq).split_at(nq);
            let (g0, g1) = quad_view(g, 2 * nq).split_at(nq);
            let (w0, w1) = (words(2 * j), words(2 * j + 1));
            let mut mw = [MaskWord::splat(0); 2];
            // Quad `k` of both rows: the gated dy (dz) and dx.
            let mut quad = |k: usize, d: [&[f32; 4]; 2], v: [&[f32; 4]; 2], g: [&[f32; 4]; 2], p: ParamQuads| {
                if G == BITS {
                    mw = [mask_at(k, mw[0], w0), mask_at(k, mw[1], w1)];
                }
                let e = [0, 1].map(|r| gate_word::<G, _>(F32x4::load(d[r]), g[r], mw[r]));
                (e, [step(e[0], v[0], p), step(e[1], v[1], p)])
            };
            let quads = o0.iter_mut().zip(o1).zip(d0.iter().zip(d1)).zip(v0.iter().zip(v1)).zip(g0.iter().zip(g1)).zip(params.clone());
            if DZ {
                let (z0, z1) = quad_view_mut(z).0.split_at_mut(nq);
                for (k, ((((((o0, o1), (d0, d1)), (v0, v1)), (g0, g1)), p), (z0, z1))) in quads.zip(z0.iter_mut().zip(z1)).enumerate() {
                    let (e, r) = quad(k, [d0, d1], [v0, v1], [g0, g1], p);
                    // The dx stores first, then dz's (as `dx_rows`).
                    r[0].store(o0);
                    r[1].store(o1);
                    e[0].store(z0);
                    e[1].store(z1);
                }
            } else {
                for (k, (((((o0, o1), (d0, d1)), (v0, v1)), (g0, g1)), p)) in quads.enumerate() {
                    let (_, r) = quad(k, [d0, d1], [v0, v1], [g0, g1], p);
                    r[0].store(o0);
                    r[1].store(o1);
                }
            }
        } else {
            dx_row_zipped::<G, DZ>(quad_view_mut(o).0, quad_view_mut(z).0, quad_view(d, nq), quad_view(v, nq), quad_view(g, nq), words(j), params.clone(), &step, &mask_at);
        }
    }
    // An odd last row.
    if !last.is_empty() {
        let (d, v, g) = (&dy[whole..], &x[whole..], &gate[whole..]);
        dx_row_zipped::<G, DZ>(quad_view_mut(last).0, quad_view_mut(dz_last).0, quad_view(d, nq), quad_view(v, nq), quad_view(g, nq), words(whole / ch), params, &step, &mask_at);
    }
}

/// [`dx_rows_zipped`] for the ReLU's bit mask on rows of whole quads (`ch % 4 == 0`): a
/// row's mask is `ch / 32` whole words, one per octet of eight quads, splatted once and
/// its quads unrolled (instead of a quad a step that asks whether a new word starts), and
/// a last partial word for its tail of `(ch % 32) / 4` quads; with `IP` (and `DZ`), `dy`
/// is read from `dz` and overwritten there (`dy` is then unread). The same operations, so
/// the same bits.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn dx_rows_bits_octets<const DZ: bool, const IP: bool>(dy: &[f32], x: &[f32], bits: &[u32], dx: &mut [f32], dz: &mut [f32], ch: usize, p: Coef, pairs: bool) {
    let no = ch / 32;
    let tq = (ch % 32) / 4;
    let wpu = mask::words_per_row(ch);
    let params = zip4(octet_view(p.k, no), octet_view(p.mean, no), octet_view(p.b, no), octet_view(p.c0, no));
    let tail_params = zip4(row_tail(p.k, no, tq), row_tail(p.mean, no, tq), row_tail(p.b, no, tq), row_tail(p.c0, no, tq));
    // Quad `j` of an octet: dx from the gated dy `e`.
    let step = |e: F32x4, v: &[f32; 32], p: OctetParams, j: usize| dx_quad(e, &quads8(v)[j], octet_quad(p, j));
    // Quad `j` of dy (from `dz` with IP), gated by the mask word's current quad.
    let gated = |d: &[f32; 32], z: Option<&[f32; 32]>, mw: OctetMask, j: usize| {
        let src = if IP { z.unwrap_or(d) } else { d };
        mw.keep(F32x4::load(&quads8(src)[j]))
    };
    let rows = if pairs { 2 } else { 1 };
    let whole = dx.len() / (rows * ch) * (rows * ch);
    let (dxw, last) = dx.split_at_mut(whole);
    // Without DZ there is no dz: an empty slice, and `dz_rows` hands out empty ones.
    let (dzw, dz_last) = if DZ { dz.split_at_mut(whole) } else { (&mut [][..], &mut [][..]) };
    let mut dz_rows = dzw.chunks_exact_mut((rows * ch).max(1));
    // One octet of one row (and its dz): the word built once (`OctetMask`), its eight quads
    // unrolled.
    let octet = |o: &mut [f32; 32], z: Option<&mut [f32; 32]>, d: &[f32; 32], v: &[f32; 32], w: u32, p: OctetParams| {
        let mut mw = OctetMask::splat(w);
        let mut z = z;
        for j in 0..8 {
            let e = gated(d, z.as_deref(), mw, j);
            step(e, v, p, j).store(&mut quads8_mut(o)[j]);
            if let Some(z) = z.as_deref_mut() {
                e.store(&mut quads8_mut(z)[j]);
            }
            mw = mw.next();
        }
    };
    // Both rows' octet: each step's quads of the two rows together (shared parameters).
    let octet_pair = |o: [&mut [f32; 32]; 2], z: Option<[&mut [f32; 32]; 2]>, d: [&[f32; 32]; 2], v: [&[f32; 32]; 2], w: [u32; 2], p: OctetParams| {
        let [o0, o1] = o;
        let mut m = w.map(OctetMask::splat);
        let mut z = z;
        for j in 0..8 {
            let e = match z.as_ref() {
                Some([z0, z1]) => [gated(d[0], Some(z0), m[0], j), gated(d[1], Some(z1), m[1], j)],
                None => [gated(d[0], None, m[0], j), gated(d[1], None, m[1], j)],
            };
            // The dx stores first, then dz's (as `dx_rows`).
            step(e[0], v[0], p, j).store(&mut quads8_mut(o0)[j]);
            step(e[1], v[1], p, j).store(&mut quads8_mut(o1)[j]);
            if let Some([z0, z1]) = z.as_mut() {
                e[0].store(&mut quads8_mut(z0)[j]);
                e[1].store(&mut quads8_mut(z1)[j]);
            }
            m = m.map(|m| m.next());
        }
    };
    // A row's tail (and its dz's): its partial word splatted once, a quad a step.
    let tail_row = |o: &mut [[f32; 4]], z: &mut [[f32; 4]], d: &[[f32; 4]], v: &[[f32; 4]], w: u32| {
        let mut mw = MaskWord::splat(w);
        let quads = o.iter_mut().zip(d.iter().zip(v)).zip(tail_params.clone());
        if DZ {
            for (((o, (d, v)), p), z) in quads.zip(z.iter_mut()) {
                let e = mw.keep(F32x4::load(if IP { &*z } else { d }));
                dx_quad(e, v, p).store(o);
                e.store(z);
                mw = mw.next();
            }
        } else {
            for ((o, (d, v)), p) in quads {
                dx_quad(mw.keep(F32x4::load(d)), v, p).store(o);
                mw = mw.next();
            }
        }
    };
    let one_row = |o: &mut [f32], z: &mut [f32], d: &[f32], v: &[f32], w: &[u32]| {
        let ((oo, ot), (zo, zt), (dd, dt), (vo, vt)) = (row_split_mut(o, no, tq), dz_split::<DZ>(z, no, tq), row_split(d, no, tq), row_split(v, no, tq));
        let octs = oo.iter_mut().zip(dd.iter().zip(vo)).zip(w).zip(params.clone());
        if DZ {
            for ((((o, (d, v)), &w), p), z) in octs.zip(zo.iter_mut()) {
                octet(o, Some(z), d, v, w, p);
            }
        } else {
            for (((o, (d, v)), &w), p) in octs {
                octet(o, None, d, v, w, p);
            }
        }
        if tq > 0 {
            tail_row(ot, zt, dt, vt, w[no]);
        }
    };
    let groups = dy.chunks_exact(rows * ch).zip(x.chunks_exact(rows * ch)).zip(bits.chunks_exact(rows * wpu));
    for (o, ((d, v), w)) in dxw.chunks_exact_mut(rows * ch).zip(groups) {
        let z = if DZ { dz_rows.next().unwrap() } else { &mut [][..] };
        if !pairs {
            one_row(o, z, d, v, w);
            continue;
        }
        let [(o0, o0t), (o1, o1t)] = row_pair_mut(o, ch, no, tq);
        let [(d0, d0t), (d1, d1t)] = row_pair(d, ch, no, tq);
        let [(v0, v0t), (v1, v1t)] = row_pair(v, ch, no, tq);
        let (w0, w1) = w.split_at(wpu);
        let [(z0, z0t), (z1, z1t)] = if DZ { row_pair_mut(z, ch, no, tq) } else { [(&mut [][..], &mut [][..]), (&mut [][..], &mut [][..])] };
        let octs = o0.iter_mut().zip(o1.iter_mut()).zip(d0.iter().zip(d1)).zip(v0.iter().zip(v1)).zip(w0.iter().zip(w1)).zip(params.clone());
        if DZ {
            for ((((((o0, o1), (d0, d1)), (v0, v1)), (&w0, &w1)), p), (z0, z1)) in octs.zip(z0.iter_mut().zip(z1.iter_mut())) {
                octet_pair([o0, o1], Some([z0, z1]), [d0, d1], [v0, v1], [w0, w1], p);
            }
        } else {
            for (((((o0, o1), (d0, d1)), (v0, v1)), (&w0, &w1)), p) in octs {
                octet_pair([o0, o1], None, [d0, d1], [v0, v1], [w0, w1], p);
            }
        }
        if tq > 0 {
            tail_row(o0t, z0t, d0t, v0t, w0[no]);
            tail_row(o1t, z1t, d1t, v1t, w1[no]);
        }
    }
    // An odd last row.
    if !last.is_empty() {
        let n = last.len();
        one_row(last, dz_last, &dy[whole..whole + n], &x[whole..whole + n], &bits[whole / ch * wpu..]);
    }
}

/// One quad of the dx pass: `e * k + (x - mean) * b + c0` from the gated dy `e`, `x` and the
/// quad's coefficients (the channels-last row loops).
#[inline(always)]
fn dx_quad(e: F32x4, v: &[f32; 4], ((k, m), (b, c)): ParamQuads) -> F32x4 {
    e.mul(F32x4::load(k)).add(F32x4::load(v).sub(F32x4::load(m)).mul(F32x4::load(b))).add(F32x4::load(c))
}

/// A row's dz split as its dx is (octets, tail), or empty without DZ (no dz).
#[inline(always)]
fn dz_split<const DZ: bool>(z: &mut [f32], no: usize, tq: usize) -> RowPartsMut<'_> {
    if DZ {
        row_split_mut(z, no, tq)
    } else {
        (&mut [], &mut [])
    }
}

/// One row of [`dx_rows_zipped`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_row_zipped<'a, const G: u8, const DZ: bool>(
    o: &mut [[f32; 4]],
    z: &mut [[f32; 4]],
    d: &[[f32; 4]],
    v: &[[f32; 4]],
    g: &[[f32; 4]],
    w: &[u32],
    params: impl Iterator<Item = ParamQuads<'a>>,
    step: &impl Fn(F32x4, &[f32; 4], ParamQuads<'a>) -> F32x4,
    mask_at: &impl Fn(usize, MaskWord, &[u32]) -> MaskWord,
) {
    let mut mw = MaskWord::splat(0);
    let quads = o.iter_mut().zip(d.iter().zip(v).zip(g)).zip(params);
    if DZ {
        for (k, (((o, ((d, v), g)), p), z)) in quads.zip(z.iter_mut()).enumerate() {
            if G == BITS {
                mw = mask_at(k, mw, w);
            }
            let e = gate_word::<G, _>(F32x4::load(d), g, mw);
            step(e, v, p).store(o);
            e.store(z);
        }
    } else {
        for (k, ((o, ((d, v), g)), p)) in quads.enumerate() {
            if G == BITS {
                mw = mask_at(k, mw, w);
            }
            step(gate_word::<G, _>(F32x4::load(d), g, mw), v, p).store(o);
        }
    }
}

/// A task's channels-last rows of the dx pass (`out`, and `dz`, from row `first`), `R` at a
/// time and its last rows, fewer than `R`, one at a time. Not inlined: each grouping keeps
/// a compiled loop of its own (with all of them in one function, V8's code for the
/// main-memory pairs ran 3-6% slower).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn dx_rows_task<const G: u8, const IP: bool, const R: usize>(
    dy: &[f32],
    x: &[f32],
    gate: &[f32],
    bits: &[u32],
    wpu: usize,
    out: &mut [f32],
    dz: Option<&mut [f32]>,
    first: usize,
    unit: usize,
    p: Coef,
) {
    dx_rows_body::<G, IP, R>(dy, x, gate, bits, wpu, out, dz, first, unit, p)
}

/// [`dx_rows_task`]'s work, for callers that want it compiled into their own loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_rows_body<const G: u8, const IP: bool, const R: usize>(
    dy: &[f32],
    x: &[f32],
    gate: &[f32],
    bits: &[u32],
    wpu: usize,
    out: &mut [f32],
    dz: Option<&mut [f32]>,
    first: usize,
    unit: usize,
    p: Coef,
) {
    let words = |u: usize| if G == BITS { &bits[u * wpu..(u + 1) * wpu] } else { &[] };
    let mut dz = dz;
    for (jg, o) in out.chunks_mut(R * unit).enumerate() {
        let (j, u) = (R * jg, first + R * jg);
        let r = u * unit..u * unit + o.len();
        let dzg = dz.as_deref_mut().map(|d| &mut d[j * unit..j * unit + o.len()]);
        if o.len() < R * unit {
            // The last rows: the one-row function's loop, not another copy of it here.
            dx_rows_task::<G, IP, 1>(dy, x, gate, bits, wpu, o, dzg, u, unit, p);
            continue;
        }
        let (dyg, xg, gg) = (&dy[r.clone()], &x[r.clone()], &gate[r]);
        let mut os = o.chunks_mut(unit);
        let mut zs = dzg.map(|d| d.chunks_mut(unit));
        dx_rows::<G, IP, R>(
            core::array::from_fn(|i| row(dyg, i, unit)),
            core::array::from_fn(|i| row(xg, i, unit)),
            core::array::from_fn(|i| row(gg, i, unit)),
            core::array::from_fn(|i| words(u + i)),
            core::array::from_fn(|_| os.next().unwrap()),
            zs.as_mut().map(|zs| core::array::from_fn(|_| zs.next().unwrap())),
            p,
        );
    }
}

/// `R` channels-last rows of the dx pass at once: the per-channel coefficients are loaded
/// once for all of them. Each row's elements go through the same f32 operations whatever
/// `R` is, so the bits do not depend on how rows are grouped.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r indexes several arrays at once
fn dx_rows<const G: u8, const IP: bool, const R: usize>(
    dy: [&[f32]; R],
    x: [&[f32]; R],
    gate: [&[f32]; R],
    words: [&[u32]; R],
    dx: [&mut [f32]; R],
    dz: Option<[&mut [f32]; R]>,
    p: Coef,
) {
    let n = p.k.len();
    let nq = n / 4;
    // Quad views (no bounds checks in the loops below).
    let (kq, mq, bq, cq) = (quad_view(p.k, nq), quad_view(p.mean, nq), quad_view(p.b, nq), quad_view(p.c0, nq));
    let dq = dy.map(|s| quad_view(s, nq));
    let xq = x.map(|s| quad_view(s, nq));
    let gq = if G == OUT { gate.map(|s| quad_view(s, nq)) } else { xq };
    let dx = dx.map(|s| quad_view_mut(&mut s[..n]));
    let mut dz = dz.map(|z| z.map(|s| quad_view_mut(&mut s[..n])));
    // Every row's gated dy and dx at quad `k`; in mode BITS the rows' mask words `mw`, at
    // the quad's four bits.
    let quad = |k: usize, mw: [MaskWord; R], d: [F32x4; R]| {
        let (kk, m, bb, cc) = (F32x4::load(&kq[k]), F32x4::load(&mq[k]), F32x4::load(&bq[k]), F32x4::load(&cq[k]));
        let e: [F32x4; R] = core::array::from_fn(|r| gate_word::<G, _>(d[r], &gq[r][k], mw[r]));
        let out: [F32x4; R] = core::array::from_fn(|r| e[r].mul(kk).add(F32x4::load(&xq[r][k]).sub(m).mul(bb)).add(cc));
        (e, out)
    };
    // One loop, one call of `quad` (see `affine::rows`); the dx stores first, then dz's:
    // wasm keeps stores in program order. Each row's mask word is splatted once for its
    // eight quads and expanded in the vector unit (`MaskWord`): with a table lookup per
    // quad (`keep_bits`) the mask made this pass 1.35-1.42x the time of the pass without.
    let mut mw = [MaskWord::splat(0); R];
    for k in 0..nq {
        if G == BITS {
            mw = if k % 8 == 0 { core::array::from_fn(|r| MaskWord::splat(words[r][k / 8])) } else { mw.map(MaskWord::next) };
        }
        // In place (`IP`), `dy` is read from `dz`, which each quad then overwrites.
        let d = match dz.as_ref() {
            Some(z) if IP => core::array::from_fn(|r| F32x4::load(&z[r].0[k])),
            _ => core::array::from_fn(|r| F32x4::load(&dq[r][k])),
        };
        let (e, out) = quad(k, mw, d);
        for r in 0..R {
            out[r].store(&mut dx[r].0[k]);
        }
        if let Some(z) = dz.as_mut() {
            for r in 0..R {
                e[r].store(&mut z[r].0[k]);
            }
        }
    }
    // The last `n % 4` channels (`k` above is a quad index; here the coefficients are `p.*`).
    for c in 4 * nq..n {
        for r in 0..R {
            let d = match dz.as_ref() {
                Some(z) if IP => z[r].1[c - 4 * nq],
                _ => dy[r][c],
            };
            let e = gate_one::<G>(d, gate[r], words[r], c);
            dx[r].1[c - 4 * nq] = e * p.k[c] + (x[r][c] - p.mean[c]) * p.b[c] + p.c0[c];
            if let Some(z) = dz.as_mut() {
                z[r].1[c - 4 * nq] = e;
            }
        }
    }
}

/// `dy` gated as mode `G` says: by the output quad `g`, by the unit's mask bits of the quad
/// at `i`, or not at all.
#[inline(always)]
fn gate_quad<const G: u8>(d: F32x4, g: &[f32], words: &[u32], i: usize) -> F32x4 {
    match G {
        OUT => d.where_pos(F32x4::load(q(g))),
        BITS => d.keep_bits(quad_bits(words, i)),
        _ => d,
    }
}

/// [`gate_quad`] with the quad's mask bits as the current quad of a mask word `mw` (read
/// only in mode BITS) and the output quad `g` (read only in mode OUT).
#[inline(always)]
fn gate_word<const G: u8, M: QuadMask>(d: F32x4, g: &[f32; 4], mw: M) -> F32x4 {
    match G {
        OUT => d.where_pos(F32x4::load(g)),
        BITS => mw.keep(d),
        _ => d,
    }
}

/// The mask bits of the quad at `i` (low four bits): mode BITS only (0, unused, otherwise).
#[inline(always)]
fn mask_bits<const G: u8>(words: &[u32], i: usize) -> u32 {
    if G == BITS { quad_bits(words, i) } else { 0 }
}

/// The same for element `i` of a unit.
#[inline(always)]
fn gate_one<const G: u8>(d: f32, g: &[f32], words: &[u32], i: usize) -> f32 {
    match G {
        OUT => where_pos(d, g[i]),
        BITS if !bit(words, i) => 0.0,
        _ => d,
    }
}

#[inline]
fn dx_plane<const G: u8, const IP: bool>(dy: &[f32], x: &[f32], gate: &[f32], words: &[u32], dx: &mut [f32], mut dz: Option<&mut [f32]>, p: Coef) {
    let (k, mean, b, c0) = (p.k[0], p.mean[0], p.b[0], p.c0[0]);
    let (kv, mv, bv, cv) = (F32x4::splat(k), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c0));
    let n = dx.len();
    let (dy, x, gate) = (&dy[..n], &x[..n], &gate[..n]);
    let step = |j: usize, d: &[f32], v: &[f32], g: &[f32]| {
        let d = gate_quad::<G>(F32x4::load(q(d)), g, words, 4 * j);
        (d, d.mul(kv).add(F32x4::load(q(v)).sub(mv).mul(bv)).add(cv))
    };
    // Four vectors a step (V8 does not unroll wasm loops; see `affine::plane`), zipped
    // exact chunks (no bounds checks); the dz variant is its own loop.
    let body16 = n / 16 * 16;
    let ins16 = dy[..body16].chunks_exact(16).zip(x[..body16].chunks_exact(16)).zip(gate[..body16].chunks_exact(16));
    let step16 = |b16: usize, ((d, v), g): ((&[f32], &[f32]), &[f32])| [0, 4, 8, 12].map(|j| step(4 * b16 + j / 4, &d[j..j + 4], &v[j..j + 4], &g[j..j + 4]));
    let ins4 = dy[body16..].chunks_exact(4).zip(x[body16..].chunks_exact(4)).zip(gate[body16..].chunks_exact(4));
    match dz.as_deref_mut() {
        Some(z) => {
            // In place (`IP`), `dy` is read from `dz`, which each step then overwrites.
            for (b16, ((o, zo), ((d, v), g))) in dx[..body16].chunks_exact_mut(16).zip(z[..body16].chunks_exact_mut(16)).zip(ins16).enumerate() {
                let r = step16(b16, ((if IP { &*zo } else { d }, v), g));
                for ((o, zo), (gd, r)) in quads4_mut(o).into_iter().zip(quads4_mut(zo)).zip(r) {
                    r.store(o);
                    gd.store(zo);
                }
            }
            for (j, ((o, zo), ((d, v), g))) in dx[body16..].chunks_exact_mut(4).zip(z[body16..].chunks_exact_mut(4)).zip(ins4).enumerate() {
                let (gd, r) = step(body16 / 4 + j, if IP { &*zo } else { d }, v, g);
                r.store(q_mut(o));
                gd.store(q_mut(zo));
            }
        }
        None => {
            for (b16, (o, i)) in dx[..body16].chunks_exact_mut(16).zip(ins16).enumerate() {
                let r = step16(b16, i);
                for (o, (_, r)) in quads4_mut(o).into_iter().zip(r) {
                    r.store(o);
                }
            }
            for (j, (o, ((d, v), g))) in dx[body16..].chunks_exact_mut(4).zip(ins4).enumerate() {
                step(body16 / 4 + j, d, v, g).1.store(q_mut(o));
            }
        }
    }
    for i in n / 4 * 4..n {
        let d = match dz.as_deref() {
            Some(z) if IP => z[i],
            _ => dy[i],
        };
        let g = gate_one::<G>(d, gate, words, i);
        dx[i] = g * k + (x[i] - mean) * b + c0;
        if let Some(z) = dz.as_deref_mut() {
            z[i] = g;
        }
    }
}

