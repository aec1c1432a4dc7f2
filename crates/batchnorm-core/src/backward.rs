//! Training-mode backward: one fused reduction pass, then one elementwise pass.
//!
//! With `m` values per channel, `xmu = x - mean`, `k = gamma * invstd`:
//!   dbeta  = sum(dy)
//!   dgamma = sum(dy * xmu) * invstd
//!   dx     = k * (dy - sum(dy)/m - xmu * invstd^2 * sum(dy * xmu)/m)
//!          = dy * k + xmu * b + c,  b = -k * invstd^2 * sum(dy*xmu)/m,  c = -k * sum(dy)/m
//! (PyTorch's `batch_norm_cpu_backward` folds the same way). Both sums come from a single
//! read of `dy` and `x` (f32 lanes within a cache-sized block, f64 across blocks).

use crate::dims::Dims;
use crate::moments::{outer_split, row_task_len, rows_per_block, split_task};
use crate::parallel;
use crate::simd::{q, q_mut, quads, F32x4};

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

    /// Channel-wise sum (merging per-thread or per-worker partial sums).
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

pub fn grad_sums(dy: &[f32], x: &[f32], dims: Dims, mean: &[f32]) -> GradSums {
    let par = parallel::worth_it(x.len());
    let ch = dims.channels;
    if dims.is_planar() {
        let split = outer_split(dims, par);
        let parts: Vec<(f64, f64)> = parallel::map_collect(ch * split, par, |t| {
            let (c, range) = split_task(dims, split, t);
            // Lane sums carry across this channel's planes and go to f64 every
            // PLANE_BLOCK elements: short planes (e.g. 64 elements) would otherwise pay
            // two horizontal sums and an f64 flush each.
            let mut acc = PlaneSums::new(mean[c]);
            let mut pending = 0;
            let (mut s_dy, mut s_dxm) = (0f64, 0f64);
            for o in range {
                let start = (o * ch + c) * dims.inner;
                let end = start + dims.inner;
                for (d, v) in dy[start..end].chunks(PLANE_BLOCK).zip(x[start..end].chunks(PLANE_BLOCK)) {
                    acc.add(d, v);
                    pending += d.len();
                    if pending >= PLANE_BLOCK {
                        let (a, b) = acc.take();
                        s_dy += a as f64;
                        s_dxm += b as f64;
                        pending = 0;
                    }
                }
            }
            let (a, b) = acc.take();
            (s_dy + a as f64, s_dxm + b as f64)
        });
        let per: Vec<(f64, f64)> =
            parts.chunks(split).map(|p| p.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))).collect();
        GradSums { sum_dy: per.iter().map(|p| p.0).collect(), sum_dy_xmu: per.iter().map(|p| p.1).collect() }
    } else {
        let rows = dims.outer;
        let block = rows_per_block(ch);
        let per_task = row_task_len(rows, block, par);
        parallel::map_reduce(
            rows.div_ceil(per_task),
            par,
            |t| {
                let r0 = t * per_task;
                let r1 = (r0 + per_task).min(rows);
                rows_sums(&dy[r0 * ch..r1 * ch], &x[r0 * ch..r1 * ch], mean, block)
            },
            GradSums::add,
        )
        .unwrap_or_else(|| GradSums::zeros(ch))
    }
}

/// `sum(dy)` and `sum(dy * (x - mean))` of one channel, accumulated in f32x4 lanes over
/// several contiguous runs, read out (and reset) by `take`.
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
    fn add(&mut self, dy: &[f32], x: &[f32]) {
        let m = F32x4::splat(self.mean);
        let dsteps = dy.chunks_exact(8);
        let xsteps = x.chunks_exact(8);
        let (dr, xr) = (dsteps.remainder(), xsteps.remainder());
        for (d, v) in dsteps.zip(xsteps) {
            let d0 = F32x4::load(q(&d[0..4]));
            let d1 = F32x4::load(q(&d[4..8]));
            self.a = self.a.add(d0);
            self.a2 = self.a2.add(d1);
            self.b = self.b.add(d0.mul(F32x4::load(q(&v[0..4])).sub(m)));
            self.b2 = self.b2.add(d1.mul(F32x4::load(q(&v[4..8])).sub(m)));
        }
        for (&d, &v) in dr.iter().zip(xr) {
            self.tail_dy += d;
            self.tail_dxm += d * (v - self.mean);
        }
    }

    #[inline]
    fn take(&mut self) -> (f32, f32) {
        let r = (self.a.add(self.a2).hsum() + self.tail_dy, self.b.add(self.b2).hsum() + self.tail_dxm);
        *self = PlaneSums::new(self.mean);
        r
    }
}

fn rows_sums(dy: &[f32], x: &[f32], mean: &[f32], block_rows: usize) -> GradSums {
    let ch = mean.len();
    let mut out = GradSums::zeros(ch);
    let mut s_dy = vec![0f32; ch];
    let mut s_dxm = vec![0f32; ch];
    for (db, xb) in dy.chunks(block_rows * ch).zip(x.chunks(block_rows * ch)) {
        s_dy.fill(0.0);
        s_dxm.fill(0.0);
        for (dr, xr) in db.chunks_exact(ch).zip(xb.chunks_exact(ch)) {
            row_sums_into(&mut s_dy, &mut s_dxm, dr, xr, mean);
        }
        for c in 0..ch {
            out.sum_dy[c] += s_dy[c] as f64;
            out.sum_dy_xmu[c] += s_dxm[c] as f64;
        }
    }
    out
}

#[inline]
fn row_sums_into(s_dy: &mut [f32], s_dxm: &mut [f32], dy: &[f32], x: &[f32], mean: &[f32]) {
    let (db, dt) = quads(dy);
    let (xb, xt) = quads(x);
    let (mb, mt) = quads(mean);
    let mut c1 = s_dy.chunks_exact_mut(4);
    let mut c2 = s_dxm.chunks_exact_mut(4);
    for ((((a, b), d), v), m) in (&mut c1).zip(&mut c2).zip(db).zip(xb).zip(mb) {
        let (a, b) = (q_mut(a), q_mut(b));
        let d = F32x4::load(q(d));
        F32x4::load(a).add(d).store(a);
        F32x4::load(b).add(d.mul(F32x4::load(q(v)).sub(F32x4::load(q(m))))).store(b);
    }
    for ((((a, b), &d), &v), &m) in
        c1.into_remainder().iter_mut().zip(c2.into_remainder()).zip(dt).zip(xt).zip(mt)
    {
        *a += d;
        *b += d * (v - m);
    }
}

/// `dx = dy * k[c] + (x - mean[c]) * b[c] + c[c]`.
pub fn dx_apply(dy: &[f32], x: &[f32], dx: &mut [f32], dims: Dims, k: &[f32], mean: &[f32], b: &[f32], c0: &[f32]) {
    let par = parallel::worth_it(x.len());
    let ch = dims.channels;
    if dims.is_planar() {
        let inner = dims.inner;
        let planes_per_task = parallel::units_per_task(dims.outer * ch, inner, par);
        parallel::for_each_chunk_mut(dx, planes_per_task * inner, par, |t, out| {
            let first = t * planes_per_task;
            for (j, op) in out.chunks_mut(inner).enumerate() {
                let p = first + j;
                let c = p % ch;
                let r = p * inner..(p + 1) * inner;
                dx_plane(&dy[r.clone()], &x[r], op, k[c], mean[c], b[c], c0[c]);
            }
        });
    } else {
        let rows_per_task = parallel::units_per_task(dims.outer, ch, par);
        parallel::for_each_chunk_mut(dx, rows_per_task * ch, par, |t, out| {
            let first = t * rows_per_task * ch;
            for (j, orow) in out.chunks_mut(ch).enumerate() {
                let s = first + j * ch;
                dx_row(&dy[s..s + ch], &x[s..s + ch], orow, k, mean, b, c0);
            }
        });
    }
}

#[inline]
fn dx_plane(dy: &[f32], x: &[f32], dx: &mut [f32], k: f32, mean: f32, b: f32, c0: f32) {
    let (kv, mv, bv, cv) = (F32x4::splat(k), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c0));
    let (db, dt) = quads(dy);
    let (xb, xt) = quads(x);
    let mut oc = dx.chunks_exact_mut(4);
    for ((o, d), v) in (&mut oc).zip(db).zip(xb) {
        let r = F32x4::load(q(d)).mul(kv).add(F32x4::load(q(v)).sub(mv).mul(bv)).add(cv);
        r.store(q_mut(o));
    }
    for ((o, &d), &v) in oc.into_remainder().iter_mut().zip(dt).zip(xt) {
        *o = d * k + (v - mean) * b + c0;
    }
}

#[inline]
fn dx_row(dy: &[f32], x: &[f32], dx: &mut [f32], k: &[f32], mean: &[f32], b: &[f32], c0: &[f32]) {
    let (db, dt) = quads(dy);
    let (xb, xt) = quads(x);
    let (kb, kt) = quads(k);
    let (mb, mt) = quads(mean);
    let (bb, bt) = quads(b);
    let (cb, ct) = quads(c0);
    let mut oc = dx.chunks_exact_mut(4);
    for ((((((o, d), v), kk), m), bq), cq) in (&mut oc).zip(db).zip(xb).zip(kb).zip(mb).zip(bb).zip(cb) {
        let xm = F32x4::load(q(v)).sub(F32x4::load(q(m)));
        let r = F32x4::load(q(d)).mul(F32x4::load(q(kk))).add(xm.mul(F32x4::load(q(bq)))).add(F32x4::load(q(cq)));
        r.store(q_mut(o));
    }
    let tails = dt.iter().zip(xt).zip(kt).zip(mt).zip(bt).zip(ct);
    for (o, (((((&d, &v), &kk), &m), &bq), &cq)) in oc.into_remainder().iter_mut().zip(tails) {
        *o = d * kk + (v - m) * bq + cq;
    }
}
