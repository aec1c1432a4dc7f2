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

use crate::dims::Dims;
use crate::parallel;
use crate::simd::{q, q_mut, quads, F32x4};

pub fn affine_per_channel(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    shift: &[f32],
    shift_lo: Option<&[f32]>,
    scale: &[f32],
    offset: &[f32],
) {
    match shift_lo {
        Some(lo) if lo.iter().any(|&v| v != 0.0) => run::<true>(x, y, dims, shift, lo, scale, offset),
        _ => run::<false>(x, y, dims, shift, shift, scale, offset),
    }
}

fn run<const LO: bool>(x: &[f32], y: &mut [f32], dims: Dims, shift: &[f32], lo: &[f32], scale: &[f32], offset: &[f32]) {
    let par = parallel::worth_it(x.len());
    let ch = dims.channels;
    if dims.is_planar() {
        let inner = dims.inner;
        let planes_per_task = parallel::units_per_task(dims.outer * ch, inner, par);
        parallel::for_each_chunk_mut(y, planes_per_task * inner, par, |t, ys| {
            let first = t * planes_per_task;
            for (k, yp) in ys.chunks_mut(inner).enumerate() {
                let p = first + k;
                let c = p % ch;
                plane::<LO>(&x[p * inner..(p + 1) * inner], yp, shift[c], lo[c], scale[c], offset[c]);
            }
        });
    } else {
        let rows_per_task = parallel::units_per_task(dims.outer, ch, par);
        parallel::for_each_chunk_mut(y, rows_per_task * ch, par, |t, ys| {
            let first = t * rows_per_task * ch;
            let xs = &x[first..first + ys.len()];
            // Rows in pairs: each parameter load serves two rows.
            for (yp, xp) in ys.chunks_mut(2 * ch).zip(xs.chunks(2 * ch)) {
                if yp.len() == 2 * ch {
                    let (y0, y1) = yp.split_at_mut(ch);
                    row2::<LO>(&xp[..ch], &xp[ch..], y0, y1, shift, lo, scale, offset);
                } else {
                    row::<LO>(xp, yp, shift, lo, scale, offset);
                }
            }
        });
    }
}

/// One contiguous run of a single channel.
#[inline]
fn plane<const LO: bool>(x: &[f32], y: &mut [f32], shift: f32, lo: f32, scale: f32, offset: f32) {
    let (s, l, a, b) = (F32x4::splat(shift), F32x4::splat(lo), F32x4::splat(scale), F32x4::splat(offset));
    let (xb, xt) = quads(x);
    let mut yc = y.chunks_exact_mut(4);
    for (yv, xv) in (&mut yc).zip(xb) {
        let mut d = F32x4::load(q(xv)).sub(s);
        if LO {
            d = d.sub(l);
        }
        d.mul(a).add(b).store(q_mut(yv));
    }
    for (yv, &xv) in yc.into_remainder().iter_mut().zip(xt) {
        let d = if LO { (xv - shift) - lo } else { xv - shift };
        *yv = d * scale + offset;
    }
}

/// One channels-last row: every channel once, parameters loaded as vectors.
#[inline]
fn row<const LO: bool>(x: &[f32], y: &mut [f32], shift: &[f32], lo: &[f32], scale: &[f32], offset: &[f32]) {
    let (xb, xt) = quads(x);
    let (sb, st) = quads(shift);
    let (lb, lt) = quads(lo);
    let (ab, at) = quads(scale);
    let (bb, bt) = quads(offset);
    let mut yc = y.chunks_exact_mut(4);
    for (((((yv, xv), sv), lv), av), bv) in (&mut yc).zip(xb).zip(sb).zip(lb).zip(ab).zip(bb) {
        let mut d = F32x4::load(q(xv)).sub(F32x4::load(q(sv)));
        if LO {
            d = d.sub(F32x4::load(q(lv)));
        }
        d.mul(F32x4::load(q(av))).add(F32x4::load(q(bv))).store(q_mut(yv));
    }
    let tails = xt.iter().zip(st).zip(lt).zip(at).zip(bt);
    for (yv, ((((&xv, &sv), &lv), &av), &bv)) in yc.into_remainder().iter_mut().zip(tails) {
        let d = if LO { (xv - sv) - lv } else { xv - sv };
        *yv = d * av + bv;
    }
}

/// `row` for two rows at once.
#[inline]
#[allow(clippy::too_many_arguments)]
fn row2<const LO: bool>(x0: &[f32], x1: &[f32], y0: &mut [f32], y1: &mut [f32], shift: &[f32], lo: &[f32], scale: &[f32], offset: &[f32]) {
    let body = shift.len() / 4 * 4;
    for c in (0..body).step_by(4) {
        let (s, l) = (F32x4::load(q(&shift[c..c + 4])), F32x4::load(q(&lo[c..c + 4])));
        let (a, b) = (F32x4::load(q(&scale[c..c + 4])), F32x4::load(q(&offset[c..c + 4])));
        let mut d0 = F32x4::load(q(&x0[c..c + 4])).sub(s);
        let mut d1 = F32x4::load(q(&x1[c..c + 4])).sub(s);
        if LO {
            d0 = d0.sub(l);
            d1 = d1.sub(l);
        }
        d0.mul(a).add(b).store(q_mut(&mut y0[c..c + 4]));
        d1.mul(a).add(b).store(q_mut(&mut y1[c..c + 4]));
    }
    for c in body..shift.len() {
        for (x, y) in [(x0[c], &mut y0[c]), (x1[c], &mut y1[c])] {
            let d = if LO { (x - shift[c]) - lo[c] } else { x - shift[c] };
            *y = d * scale[c] + offset[c];
        }
    }
}
