//! The one elementwise kernel of the forward pass: `y = (x - shift[c]) * scale[c] + offset[c]`.
//!
//! Eval forward, train forward and the eval-mode backward (`dx = dy * scale`, with zero
//! shift and offset) all use it. It is PyTorch's fold (`alpha = gamma * invstd`), with the
//! mean subtracted first instead of folded into the offset: `x * alpha + (beta - mean * alpha)`
//! cancels catastrophically in f32 when |mean| is large against the spread (x ~ 1e4 +
//! N(0, 0.1) loses ~17 of 24 bits), while `x - mean` of nearby values is exact. The extra
//! subtraction is one SIMD op per four elements on a memory-bound loop: free.
//!
//! Training forward knows the batch mean in f64 but saves it as f32, and rounding a mean
//! of 1e4 to f32 moves it by up to 5e-4: with a spread of 0.1 that is a 0.5% error in
//! every output. So the shift may come as an unevaluated sum `shift + shift_lo` of two f32s
//! (the f64 mean split in two), subtracted one after the other; `x - shift` is exact for
//! nearby values and the second subtraction adds one rounding. Eval passes no `shift_lo`
//! and runs the plain loop.
//!
//! Fusion (oneDNN's `fuse_norm_relu` / `fuse_norm_add_relu`): the same loop may add a
//! residual `z` after the affine and apply ReLU last, `y = relu((x - shift) * scale +
//! offset + z)`, each step the same f32 operation as the unfused layers (so results are
//! bit-identical to BN, then add, then ReLU), without another read and write of `y`. The
//! eval-mode backward through a ReLU gates its input instead: `x` counts only where the
//! ReLU's output `gate` is > 0. Which steps run is a const generic of bit flags, so each
//! combination compiles to its own branch-free loop.

use crate::dims::Dims;
use crate::parallel;
use crate::passes::{mask, rows_together};
use crate::simd::{load4, octet_quad, octet_view, q, q_mut, quad_view, quad_view_mut, quads4_mut, quads8, quads8_mut, relu, row_pair, row_pair_mut, row_split, row_split_mut, row_tail, where_pos, zip4, F32x4, ParamQuads};

/// Subtract `shift_lo` after `shift`.
const LO: u8 = 1;
/// Input `x` only where `gate > 0`, else 0.
const GATE: u8 = 2;
/// Add the residual `z` after the affine.
const ADD: u8 = 4;
/// ReLU last.
const RELU: u8 = 8;
/// Write the bits `y > 0` (only with RELU): from the result registers as they are stored.
const MASK: u8 = 16;

/// What the elementwise pass does besides the affine (see the module comment).
#[derive(Debug, Default)]
pub struct Fuse<'a> {
    /// Input gate: `x` counts only where `gate > 0` (ReLU's backward from its output).
    pub gate: Option<&'a [f32]>,
    /// Residual added after the affine.
    pub add: Option<&'a [f32]>,
    /// ReLU last.
    pub relu: bool,
    /// Where to write the bits `y > 0` (the 1-bit mask of [`crate::passes::mask`]),
    /// packed from each unit of `y` right after it is written, while it is in cache.
    pub mask: Option<&'a mut [u32]>,
}

/// The per-element step, for every flag combination.
#[derive(Clone, Copy)]
struct Step<'a> {
    x: &'a [f32],
    gate: &'a [f32],
    z: &'a [f32],
}

#[allow(clippy::too_many_arguments)]
pub fn affine_per_channel(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    shift: &[f32],
    shift_lo: Option<&[f32]>,
    scale: &[f32],
    offset: &[f32],
    fuse: Fuse,
) {
    let lo = match shift_lo {
        Some(lo) if lo.iter().any(|&v| v != 0.0) => lo,
        _ => shift,
    };
    let mut flags = 0;
    if !core::ptr::eq(lo, shift) {
        flags |= LO;
    }
    if fuse.gate.is_some() {
        flags |= GATE;
    }
    if fuse.add.is_some() {
        flags |= ADD;
    }
    if fuse.relu {
        flags |= RELU;
    }
    if fuse.relu && fuse.mask.is_some() {
        flags |= MASK;
    }
    let src = Step { x, gate: fuse.gate.unwrap_or(x), z: fuse.add.unwrap_or(x) };
    let mask = if flags & MASK != 0 { fuse.mask } else { None };
    macro_rules! dispatch {
        ($($f:literal)*) => {
            match flags {
                $($f => run::<$f>(src, y, mask, dims, shift, lo, scale, offset),)*
                _ => unreachable!(),
            }
        };
    }
    // MASK comes with RELU, never with GATE (the eval-mode backward has no ReLU).
    dispatch!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 24 25 28 29);
}

#[allow(clippy::too_many_arguments)]
fn run<const F: u8>(
    src: Step,
    y: &mut [f32],
    mask: Option<&mut [u32]>,
    dims: Dims,
    shift: &[f32],
    lo: &[f32],
    scale: &[f32],
    offset: &[f32],
) {
    let par = parallel::worth_it(y.len());
    let ch = dims.channels;
    // Units (planes or rows) per task, and the words of one unit's mask: a task's mask
    // words are its own (each unit starts a word), so tasks never share one.
    let (unit, units) = if dims.is_planar() { (dims.inner, dims.outer * ch) } else { (ch, dims.outer) };
    let per_task = parallel::units_per_task(units, unit, par);
    let wpu = mask::words_per_unit(dims);
    let task = |t: usize, ys: &mut [f32], ms: Option<&mut [u32]>| {
        if dims.is_planar() {
            let inner = dims.inner;
            let first = t * per_task;
            let mut ms = ms.map(|m| m.chunks_mut(wpu));
            for (k, yp) in ys.chunks_mut(inner).enumerate() {
                let p = first + k;
                let c = p % ch;
                let src = src.range::<F>(p * inner, inner);
                match ms.as_mut().and_then(|m| m.next()) {
                    Some(words) => plane_masked::<F>(src, yp, words, shift[c], lo[c], scale[c], offset[c]),
                    None => plane::<F>(src, yp, shift[c], lo[c], scale[c], offset[c]),
                }
            }
        } else {
            let task = src.range::<F>(t * per_task * ch, ys.len());
            let together = rows_together(ch, ys.len());
            // Rows of whole quads with the ReLU mask: a word per octet of quads (and the
            // last, partial word for the rest), each stream a zipped view (pairs wherever
            // `rows_together` groups rows).
            if F & MASK != 0 && ch.is_multiple_of(4) {
                if let Some(ms) = ms {
                    return rows_masked_octets::<F>(task.x, task.z, ys, ms, ch, shift, lo, scale, offset, together >= 2);
                }
            }
            // Rows of whole quads that read x alone go through `rows_x_only` (pairs likewise),
            // but the scalar build's cache-resident windows, which run 1.06-1.11x slower that
            // way than four rows at a time.
            if F & (GATE | ADD | MASK) == 0 && ch.is_multiple_of(4) && (together <= 2 || cfg!(target_feature = "simd128")) {
                return rows_x_only::<F>(task.x, ys, ch, shift, lo, scale, offset, together >= 2);
            }
            // The rest (gated, residual without a mask, or a channel count that is not a
            // multiple of 4): rows in groups where that pays (`rows_together`), each
            // parameter load serving the group.
            match together {
                4 => rows_task::<F, 4>(task, ys, ms, wpu, shift, lo, scale, offset),
                2 => rows_task::<F, 2>(task, ys, ms, wpu, shift, lo, scale, offset),
                // Single rows with a mask measured faster compiled into this loop (called,
                // 1.07-1.16x the time at 128-256 channels, which now take
                // `rows_masked_octets`); without a mask, faster called (eval 0.77-0.88x at
                // 128-1024 channels).
                _ if F & MASK != 0 => rows_body::<F, 1>(task, ys, ms, wpu, shift, lo, scale, offset),
                _ => rows_task::<F, 1>(task, ys, ms, wpu, shift, lo, scale, offset),
            }
        }
    };
    match mask {
        Some(m) => parallel::for_each_chunk_pair(y, per_task * unit, m, per_task * wpu, par, |t, ys, ms| task(t, ys, Some(ms))),
        None => parallel::for_each_chunk_mut(y, per_task * unit, par, |t, ys| task(t, ys, None)),
    }
}

/// Channels-last rows of `ch` channels (`ch % 4 == 0`) that read `x` alone (no gate,
/// residual or mask): two rows a step (`pairs`) or one, every stream a zipped view of
/// quads, so that the loop holds one index and its bases and nothing else. [`rows`], which
/// also serves the fused flags, ran these rows 1.01-1.3x slower (V8 reloaded its row
/// pointers from the stack every step). The same operations as [`rows`], so the same bits.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn rows_x_only<const F: u8>(x: &[f32], y: &mut [f32], ch: usize, shift: &[f32], lo: &[f32], scale: &[f32], offset: &[f32], pairs: bool) {
    let nq = ch / 4;
    let params = zip4(quad_view(shift, nq), quad_view(lo, nq), quad_view(scale, nq), quad_view(offset, nq));
    let step = |v: &[f32; 4], p: ParamQuads| {
        let [s, l, a, b] = load4(p);
        lanes::<F>(v, v, v, s, l, a, b)
    };
    let one_row = |y: &mut [f32], x: &[f32]| {
        for ((y0, x0), p) in quad_view_mut(y).0.iter_mut().zip(quad_view(x, nq)).zip(params.clone()) {
            step(x0, p).store(y0);
        }
    };
    let rows = if pairs { 2 } else { 1 };
    let whole = y.len() / (rows * ch) * (rows * ch);
    let (yw, ylast) = y.split_at_mut(whole);
    for (yg, xg) in yw.chunks_exact_mut(rows * ch).zip(x.chunks_exact(rows * ch)) {
        if pairs {
            let (y0, y1) = quad_view_mut(yg).0.split_at_mut(nq);
            let (x0, x1) = quad_view(xg, 2 * nq).split_at(nq);
            for (((y0, y1), (x0, x1)), p) in y0.iter_mut().zip(y1).zip(x0.iter().zip(x1)).zip(params.clone()) {
                let (r0, r1) = (step(x0, p), step(x1, p));
                r0.store(y0);
                r1.store(y1);
            }
        } else {
            one_row(yg, xg);
        }
    }
    // An odd last row.
    if !ylast.is_empty() {
        one_row(ylast, &x[whole..]);
    }
}

/// Channels-last rows writing the ReLU mask, `ch % 4 == 0`: a row's mask is `ch / 32`
/// whole words, one per octet of eight quads, and a last partial word for its last
/// `(ch % 32) / 4` quads (its tail). Two rows a step (`pairs`) or one, every stream a
/// zipped view of octets (then of the tail's quads), each octet's eight quads unrolled,
/// so that the loop holds one index and its bases, the bits of an octet gather with
/// constant shifts and each word is stored once, with no branch. No gate (MASK never comes
/// with GATE). The same operations as [`rows`], so the same bits.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn rows_masked_octets<const F: u8>(
    x: &[f32],
    // `x` itself without ADD (see `Step::range`).
    z: &[f32],
    y: &mut [f32],
    words: &mut [u32],
    ch: usize,
    shift: &[f32],
    lo: &[f32],
    scale: &[f32],
    offset: &[f32],
    pairs: bool,
) {
    let no = ch / 32;
    let tq = (ch % 32) / 4;
    let wpu = mask::words_per_row(ch);
    let params = zip4(octet_view(shift, no), octet_view(lo, no), octet_view(scale, no), octet_view(offset, no));
    let tail_params = zip4(row_tail(shift, no, tq), row_tail(lo, no, tq), row_tail(scale, no, tq), row_tail(offset, no, tq));
    // One quad: `(x - s - l) * a + b (+ z) (relu)` with its loaded parameters.
    let quad = |x: &[f32; 4], z: &[f32; 4], [s, l, a, b]: [F32x4; 4]| lanes::<F>(x, x, z, s, l, a, b);
    // Quad `j` of an octet.
    let step = |x: &[f32; 32], z: &[f32; 32], p: [F32x4; 4], j: usize| quad(&quads8(x)[j], &quads8(z)[j], p);
    let rows = if pairs { 2 } else { 1 };
    let whole = y.len() / (rows * ch) * (rows * ch);
    let (yw, ylast) = y.split_at_mut(whole);
    let (ww, wlast) = words.split_at_mut(whole / ch * wpu);
    // One row: an octet a step, each word stored after its eight quads, then the tail.
    let one_row = |y: &mut [f32], x: &[f32], z: &[f32], w: &mut [u32]| {
        let ((yo, yt), (xo, xt), (zo, zt)) = (row_split_mut(y, no, tq), row_split(x, no, tq), row_split(z, no, tq));
        let octs = yo.iter_mut().zip(xo).zip(zo).zip(w.iter_mut()).zip(params.clone());
        for ((((yo, xo), zo), w), p) in octs {
            let mut bits = 0;
            for j in 0..8 {
                let r = step(xo, zo, load4(octet_quad(p, j)), j);
                r.store(&mut quads8_mut(yo)[j]);
                bits |= r.pos_bits() << (4 * j);
            }
            *w = bits;
        }
        if tq > 0 {
            let mut bits = 0;
            for (j, (((y, x), z), p)) in yt.iter_mut().zip(xt).zip(zt).zip(tail_params.clone()).enumerate() {
                let r = quad(x, z, load4(p));
                r.store(y);
                bits |= r.pos_bits() << (4 * j);
            }
            w[no] = bits;
        }
    };
    for (g, (yg, wg)) in yw.chunks_exact_mut(rows * ch).zip(ww.chunks_exact_mut(rows * wpu)).enumerate() {
        let r = g * rows * ch..(g + 1) * rows * ch;
        let (xg, zg) = (&x[r.clone()], &z[r]);
        if !pairs {
            one_row(yg, xg, zg, wg);
            continue;
        }
        let [(y0, y0t), (y1, y1t)] = row_pair_mut(yg, ch, no, tq);
        let [(x0, x0t), (x1, x1t)] = row_pair(xg, ch, no, tq);
        let [(z0, z0t), (z1, z1t)] = row_pair(zg, ch, no, tq);
        let (w0, w1) = wg.split_at_mut(wpu);
        let octs = y0.iter_mut().zip(y1.iter_mut()).zip(x0.iter().zip(x1)).zip(z0.iter().zip(z1)).zip(w0.iter_mut().zip(w1.iter_mut())).zip(params.clone());
        for (((((y0, y1), (x0, x1)), (z0, z1)), (w0, w1)), p) in octs {
            let (mut b0, mut b1) = (0, 0);
            for j in 0..8 {
                let pj = load4(octet_quad(p, j));
                let (r0, r1) = (step(x0, z0, pj, j), step(x1, z1, pj, j));
                r0.store(&mut quads8_mut(y0)[j]);
                r1.store(&mut quads8_mut(y1)[j]);
                b0 |= r0.pos_bits() << (4 * j);
                b1 |= r1.pos_bits() << (4 * j);
            }
            *w0 = b0;
            *w1 = b1;
        }
        if tq > 0 {
            let (mut b0, mut b1) = (0, 0);
            let quads = y0t.iter_mut().zip(y1t.iter_mut()).zip(x0t.iter().zip(x1t)).zip(z0t.iter().zip(z1t)).zip(tail_params.clone());
            for (j, ((((y0, y1), (x0, x1)), (z0, z1)), p)) in quads.enumerate() {
                let pj = load4(p);
                let (r0, r1) = (quad(x0, z0, pj), quad(x1, z1, pj));
                r0.store(y0);
                r1.store(y1);
                b0 |= r0.pos_bits() << (4 * j);
                b1 |= r1.pos_bits() << (4 * j);
            }
            w0[no] = b0;
            w1[no] = b1;
        }
    }
    // An odd last row.
    if !ylast.is_empty() {
        one_row(ylast, &x[whole..], &z[whole..], wlast);
    }
}

/// A task's channels-last rows (`ys`, and their mask words `ms`), `R` at a time
/// ([`rows`]) and its last rows, fewer than `R`, one at a time. Not inlined: each grouping
/// keeps a compiled loop of its own (see `backward::dx_rows_task`).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn rows_task<const F: u8, const R: usize>(
    task: Step,
    ys: &mut [f32],
    ms: Option<&mut [u32]>,
    wpu: usize,
    shift: &[f32],
    lo: &[f32],
    scale: &[f32],
    offset: &[f32],
) {
    rows_body::<F, R>(task, ys, ms, wpu, shift, lo, scale, offset)
}

/// [`rows_task`]'s work, for callers that want it compiled into their own loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_body<const F: u8, const R: usize>(
    task: Step,
    ys: &mut [f32],
    ms: Option<&mut [u32]>,
    wpu: usize,
    shift: &[f32],
    lo: &[f32],
    scale: &[f32],
    offset: &[f32],
) {
    let ch = shift.len();
    let mut ms = ms.map(|m| m.chunks_mut(R * wpu));
    let groups = task.x.chunks(R * ch).zip(task.gate.chunks(R * ch)).zip(task.z.chunks(R * ch));
    for (yg, ((x, gate), z)) in ys.chunks_mut(R * ch).zip(groups) {
        let group = Step { x, gate, z };
        let words = ms.as_mut().and_then(|m| m.next()).unwrap_or_default();
        if yg.len() == R * ch {
            let mut yr = yg.chunks_mut(ch);
            // Without a mask there are no words: empty slices.
            let mut wr = words.chunks_mut(wpu);
            let y = core::array::from_fn(|_| yr.next().unwrap());
            let w = core::array::from_fn(|_| wr.next().unwrap_or_default());
            let src = core::array::from_fn(|r| group.range::<F>(r * ch, ch));
            rows::<F, R>(src, y, w, shift, lo, scale, offset);
        } else {
            // The last rows: the one-row function's loop, not another copy of it here.
            rows_task::<F, 1>(group, yg, Some(words).filter(|_| F & MASK != 0), wpu, shift, lo, scale, offset);
        }
    }
}

impl<'a> Step<'a> {
    /// The elements `start..start + len`; gate and z are sliced only when flag set `F`
    /// reads them (each slice is a bounds check; unread ones stay `x`).
    #[inline(always)]
    fn range<const F: u8>(self, start: usize, len: usize) -> Step<'a> {
        let r = start..start + len;
        let x = &self.x[r.clone()];
        let gate = if F & GATE != 0 { &self.gate[r.clone()] } else { x };
        let z = if F & ADD != 0 { &self.z[r] } else { x };
        Step { x, gate, z }
    }

    /// `(x - s - l) * a + b (+ z) (relu)` of the four lanes at `i`.
    #[inline(always)]
    fn quad<const F: u8>(&self, i: usize, s: F32x4, l: F32x4, a: F32x4, b: F32x4) -> F32x4 {
        let r = i..i + 4;
        let x = q(&self.x[r.clone()]);
        // gate and z are sliced only when read: each slice is a bounds check.
        let g = if F & GATE != 0 { q(&self.gate[r.clone()]) } else { x };
        let z = if F & ADD != 0 { q(&self.z[r]) } else { x };
        lanes::<F>(x, g, z, s, l, a, b)
    }

    /// The same for one lane.
    #[inline(always)]
    fn one<const F: u8>(&self, i: usize, s: f32, l: f32, a: f32, b: f32) -> f32 {
        let mut v = self.x[i];
        if F & GATE != 0 {
            v = where_pos(v, self.gate[i]);
        }
        let mut d = v - s;
        if F & LO != 0 {
            d -= l;
        }
        let mut r = d * a + b;
        if F & ADD != 0 {
            r += self.z[i];
        }
        if F & RELU != 0 {
            r = relu(r);
        }
        r
    }
}

/// The per-element step on four lanes (gate and z are only read when their flag is set).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lanes<const F: u8>(x: &[f32; 4], gate: &[f32; 4], z: &[f32; 4], s: F32x4, l: F32x4, a: F32x4, b: F32x4) -> F32x4 {
    let mut v = F32x4::load(x);
    if F & GATE != 0 {
        v = v.where_pos(F32x4::load(gate));
    }
    let mut d = v.sub(s);
    if F & LO != 0 {
        d = d.sub(l);
    }
    let mut r = d.mul(a).add(b);
    if F & ADD != 0 {
        r = r.add(F32x4::load(z));
    }
    if F & RELU != 0 {
        r = r.relu();
    }
    r
}

/// One contiguous run of a single channel. Zipped exact chunks, not indices: the loop
/// then carries no bounds checks (this is the eval hot loop).
#[inline(always)]
fn plane<const F: u8>(src: Step, y: &mut [f32], shift: f32, lo: f32, scale: f32, offset: f32) {
    let (s, l, a, b) = (F32x4::splat(shift), F32x4::splat(lo), F32x4::splat(scale), F32x4::splat(offset));
    let n = y.len();
    let (xs, gs, zs) = (&src.x[..n], &src.gate[..n], &src.z[..n]);
    if F & (GATE | ADD) == 0 {
        // Plain BN (and ReLU): only x is read. Four vectors a step: V8 does not unroll
        // wasm loops, and with one vector a step the loop's own bookkeeping made this pass
        // about 3x slower than a copy on cache-resident data (the streaming plain-array
        // path runs it on an L2-resident window, where that shows in full).
        let body16 = n / 16 * 16;
        for (y16, x16) in y[..body16].chunks_exact_mut(16).zip(xs[..body16].chunks_exact(16)) {
            let x4 = [q(&x16[0..4]), q(&x16[4..8]), q(&x16[8..12]), q(&x16[12..16])];
            let r = x4.map(|v| lanes::<F>(v, v, v, s, l, a, b));
            for (yv, r) in quads4_mut(y16).into_iter().zip(r) {
                r.store(yv);
            }
        }
        let mut yc = y[body16..].chunks_exact_mut(4);
        for (yv, xv) in (&mut yc).zip(xs[body16..].chunks_exact(4)) {
            let xv = q(xv);
            lanes::<F>(xv, xv, xv, s, l, a, b).store(q_mut(yv));
        }
    } else {
        let mut yc = y.chunks_exact_mut(4);
        let ins = xs.chunks_exact(4).zip(gs.chunks_exact(4)).zip(zs.chunks_exact(4));
        for (yv, ((xv, gv), zv)) in (&mut yc).zip(ins) {
            lanes::<F>(q(xv), q(gv), q(zv), s, l, a, b).store(q_mut(yv));
        }
    }
    let body = n / 4 * 4;
    for (k, yv) in y[body..].iter_mut().enumerate() {
        *yv = src.one::<F>(body + k, shift, lo, scale, offset);
    }
}

/// [`plane`] writing the plane's mask words too: 32 elements (8 quads) per word, the bits
/// taken from the result registers as they are stored (no second look at `y`).
#[inline(always)]
fn plane_masked<const F: u8>(src: Step, y: &mut [f32], words: &mut [u32], shift: f32, lo: f32, scale: f32, offset: f32) {
    let (s, l, a, b) = (F32x4::splat(shift), F32x4::splat(lo), F32x4::splat(scale), F32x4::splat(offset));
    let n = y.len();
    let mut blocks = y.chunks_exact_mut(32);
    for (k, (yb, w)) in (&mut blocks).zip(words.iter_mut()).enumerate() {
        let blk = src.range::<F>(32 * k, 32);
        let mut bits = 0;
        for j in 0..8 {
            let r = blk.quad::<F>(4 * j, s, l, a, b);
            r.store(q_mut(&mut yb[4 * j..4 * j + 4]));
            bits |= r.pos_bits() << (4 * j);
        }
        *w = bits;
    }
    let rest = blocks.into_remainder();
    if !rest.is_empty() {
        let base = n / 32 * 32;
        let blk = src.range::<F>(base, rest.len());
        let mut bits = 0;
        let body = rest.len() / 4 * 4;
        for j in (0..body).step_by(4) {
            let r = blk.quad::<F>(j, s, l, a, b);
            r.store(q_mut(&mut rest[j..j + 4]));
            bits |= r.pos_bits() << j;
        }
        for (j, v) in rest.iter_mut().enumerate().skip(body) {
            *v = blk.one::<F>(j, shift, lo, scale, offset);
            bits |= ((*v > 0.0) as u32) << j;
        }
        words[base / 32] = bits;
    }
}

/// `R` channels-last rows: every channel once, each parameter vector loaded once for all
/// `R` rows; with MASK also their mask words `w[r]` (bits gathered in a register per row
/// from the results, stored a word at a time).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // r indexes several arrays at once
fn rows<const F: u8, const R: usize>(
    src: [Step; R],
    y: [&mut [f32]; R],
    w: [&mut [u32]; R],
    shift: &[f32],
    lo: &[f32],
    scale: &[f32],
    offset: &[f32],
) {
    let ch = shift.len();
    let nq = ch / 4;
    // Every row and parameter as quad views (no bounds checks in the loops below).
    let (sq, lq, aq, bq) = (quad_view(shift, nq), quad_view(lo, nq), quad_view(scale, nq), quad_view(offset, nq));
    let xq = src.map(|s| quad_view(s.x, nq));
    let gq = if F & GATE != 0 { src.map(|s| quad_view(s.gate, nq)) } else { xq };
    let zq = if F & ADD != 0 { src.map(|s| quad_view(s.z, nq)) } else { xq };
    // Each row as its quads and its last `ch % 4` elements.
    let mut y = y.map(|y| quad_view_mut(&mut y[..ch]));
    // Every row's results at quad `k`, stored; returned for the mask bits.
    let quad = |k: usize, y: &mut [(&mut [[f32; 4]], &mut [f32]); R]| {
        let (s, l) = (F32x4::load(&sq[k]), F32x4::load(&lq[k]));
        let (a, b) = (F32x4::load(&aq[k]), F32x4::load(&bq[k]));
        // The rows step by step, interleaved, the stores last: wasm keeps loads and stores
        // in program order (one linear memory), and this order measured fastest.
        let mut d = core::array::from_fn::<F32x4, R, _>(|r| {
            let x = F32x4::load(&xq[r][k]);
            if F & GATE != 0 {
                x.where_pos(F32x4::load(&gq[r][k]))
            } else {
                x
            }
        });
        d = d.map(|d| d.sub(s));
        if F & LO != 0 {
            d = d.map(|d| d.sub(l));
        }
        let mut out = d.map(|d| d.mul(a).add(b));
        if F & ADD != 0 {
            for r in 0..R {
                out[r] = out[r].add(F32x4::load(&zq[r][k]));
            }
        }
        if F & RELU != 0 {
            out = out.map(|v| v.relu());
        }
        for r in 0..R {
            out[r].store(&mut y[r].0[k]);
        }
        out
    };
    // One loop, one call of `quad`: a closure called from two loops (whole mask words, then
    // the rest) was not always inlined, and then every view it captured was read through
    // memory (the fused flag combinations ran up to 1.8x slower). With the mask and one or
    // two rows, the loop takes four quads a step (the last step's missing quads are zeros:
    // no bits), whose compare masks become 16 bits in one `pos_bits4`; with four rows
    // (sixteen results) that ran 1.07-1.4x slower, so they go a quad a step. Each row's
    // bits gather in a register and go out a word at a time.
    let step = if F & MASK != 0 && R <= 2 { 4 } else { 1 };
    let steps_per_word = 8 / step;
    let mut bits = [0u32; R];
    for g in 0..nq.div_ceil(step) {
        let mut out = [[F32x4::zero(); R]; 4];
        for (j, o) in out.iter_mut().enumerate().take(step) {
            let k = step * g + j;
            if step == 1 || k < nq {
                *o = quad(k, &mut y);
            }
        }
        if F & MASK != 0 {
            for r in 0..R {
                let b = if step == 1 { out[0][r].pos_bits() } else { F32x4::pos_bits4(out.map(|o| o[r])) };
                bits[r] |= b << ((4 * step * g) & 31);
            }
            // A word is whole once its eight quads are done (a partial last word waits
            // for the last channels below).
            if g % steps_per_word == steps_per_word - 1 && step * (g + 1) <= nq {
                for r in 0..R {
                    w[r][g / steps_per_word] = bits[r];
                    bits[r] = 0;
                }
            }
        }
    }
    for c in 4 * nq..ch {
        for r in 0..R {
            let v = src[r].one::<F>(c, shift[c], lo[c], scale[c], offset[c]);
            y[r].1[c - 4 * nq] = v;
            if F & MASK != 0 {
                bits[r] |= ((v > 0.0) as u32) << (c & 31);
            }
        }
    }
    if F & MASK != 0 && !ch.is_multiple_of(32) {
        // The rows' last, partial words.
        for r in 0..R {
            w[r][ch >> 5] = bits[r];
        }
    }
}
