//! The row geometry: statistics of each contiguous row of `len` values, affine along the
//! row (per column). LayerNorm over the last dims of any tensor is `rows = numel / len`
//! rows of `len = prod(normalized_shape)`; RMSNorm is the same without the mean.
//!
//! Each row is handled whole while it sits in cache: statistics (the same corrected
//! two-pass blocks and f64 merge as batch norm's [`crate::moments`]), then the normalise
//! loop, so the forward reads `x` once and writes `y` once. The backward does the same
//! per row: the two row sums `sum(g*dy)`, `sum(g*dy*(x-mean))`, then `dx`, reading `dy`
//! and `x` once; the column sums for `dgamma` / `dbeta` are accumulated on the way in f32
//! lanes over at most [`COL_FLUSH_ROWS`] rows and then in f64 (as batch norm's
//! channels-last reduction).

use crate::affine::row_stat;
use crate::inv_std;
use crate::moments::{run_moments, PLANE_BLOCK};
use crate::parallel;
use crate::simd::{q, q_mut, F32x4};

/// Rows of f32 column sums before they go to f64 (as `moments::MAX_BLOCK_ROWS`).
const COL_FLUSH_ROWS: usize = 256;

/// `rows` contiguous rows of `len` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub rows: usize,
    pub len: usize,
}

/// Whether the statistic is the centred variance (LayerNorm) or the mean square (RMSNorm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Centered,
    MeanSquare,
}

/// Forward over rows: writes `y`, and per row the mean (0 for [`Stat::MeanSquare`]) and
/// `1/sqrt(var + eps)`. `gamma` / `beta` have `len` values (ones / zeros when absent).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(x: &[f32], y: &mut [f32], r: Rows, gamma: &[f32], beta: &[f32], eps: f32, stat: Stat, mean: &mut [f32], invstd: &mut [f32]) {
    let par = parallel::worth_it(x.len());
    let per_task = parallel::units_per_task(r.rows, r.len, par);
    parallel::for_each_chunk_mut3(y, per_task * r.len, mean, per_task, invstd, per_task, par, |t, ys, ms, iss| {
        let first = t * per_task;
        for (k, yr) in ys.chunks_mut(r.len).enumerate() {
            let start = (first + k) * r.len;
            let xr = &x[start..start + r.len];
            let m = run_moments(xr);
            let (mu, var) = match stat {
                Stat::Centered => (m.mean, m.biased_var()),
                Stat::MeanSquare => (0.0, m.mean_square()),
            };
            let is = inv_std(var, eps);
            let hi = mu as f32;
            ms[k] = hi;
            iss[k] = is;
            row_stat(xr, yr, hi, (mu - hi as f64) as f32, is, gamma, beta);
        }
    });
}

/// Column sums `sum(dy * xhat)` and `sum(dy)` in f64.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColSums {
    pub dgamma: Vec<f64>,
    pub dbeta: Vec<f64>,
}

impl ColSums {
    fn add(mut self, o: ColSums) -> ColSums {
        self.dgamma.iter_mut().zip(o.dgamma).for_each(|(a, b)| *a += b);
        self.dbeta.iter_mut().zip(o.dbeta).for_each(|(a, b)| *a += b);
        self
    }
}

/// Backward over rows: writes `dx` from the saved per-row `mean` / `invstd`; returns the
/// column sums when `param_grads`. With `y = xhat * g + b` and `m = len`:
/// `dx = invstd * g * dy + (x - mean) * b_r + c_r`, `b_r = -invstd^3 * sum(g*dy*(x-mean)) / m`,
/// `c_r = -invstd * sum(g*dy) / m` (`c_r = 0` for RMSNorm, whose statistic has no mean).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    r: Rows,
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    stat: Stat,
    param_grads: bool,
) -> Option<ColSums> {
    let par = parallel::worth_it(x.len());
    let per_task = parallel::units_per_task(r.rows, r.len, par);
    let len = r.len;
    let n = len as f64;
    let sums = parallel::map_reduce_chunks_mut(
        dx,
        per_task * len,
        par,
        |t, dxs| {
            let first = t * per_task;
            let mut cols = param_grads.then(|| ColAcc::new(len));
            for (k, dxr) in dxs.chunks_mut(len).enumerate() {
                let row = first + k;
                let s = row * len..(row + 1) * len;
                let (dyr, xr) = (&dy[s.clone()], &x[s]);
                let (mu, is) = (mean[row], invstd[row]);
                let (s_g, s_gx) = row_sums(dyr, xr, gamma, mu);
                if let Some(c) = cols.as_mut() {
                    c.add_row(dyr, xr, mu, is);
                }
                let isf = is as f64;
                let b = (-isf * isf * isf * s_gx / n) as f32;
                let c0 = match stat {
                    Stat::Centered => (-isf * s_g / n) as f32,
                    Stat::MeanSquare => 0.0,
                };
                dx_row(dyr, xr, dxr, gamma, is, mu, b, c0);
            }
            cols.map(ColAcc::finish)
        },
        |a, b| match (a, b) {
            (Some(a), Some(b)) => Some(a.add(b)),
            _ => None,
        },
    );
    sums.flatten()
}

/// `(sum(g*dy), sum(g*dy*(x - mean)))` of one row: f32 lanes per cache block, f64 across.
#[inline]
fn row_sums(dy: &[f32], x: &[f32], g: &[f32], mean: f32) -> (f64, f64) {
    let m = F32x4::splat(mean);
    let (mut s1, mut s2) = (0f64, 0f64);
    for ((d, xv), gv) in dy.chunks(PLANE_BLOCK).zip(x.chunks(PLANE_BLOCK)).zip(g.chunks(PLANE_BLOCK)) {
        let (mut a, mut a2, mut b, mut b2) = (F32x4::zero(), F32x4::zero(), F32x4::zero(), F32x4::zero());
        let body = d.len() / 8 * 8;
        for i in (0..body).step_by(8) {
            let g0 = F32x4::load(q(&d[i..i + 4])).mul(F32x4::load(q(&gv[i..i + 4])));
            let g1 = F32x4::load(q(&d[i + 4..i + 8])).mul(F32x4::load(q(&gv[i + 4..i + 8])));
            a = a.add(g0);
            a2 = a2.add(g1);
            b = b.add(g0.mul(F32x4::load(q(&xv[i..i + 4])).sub(m)));
            b2 = b2.add(g1.mul(F32x4::load(q(&xv[i + 4..i + 8])).sub(m)));
        }
        let (mut t1, mut t2) = (a.add(a2).hsum(), b.add(b2).hsum());
        for i in body..d.len() {
            let gd = d[i] * gv[i];
            t1 += gd;
            t2 += gd * (xv[i] - mean);
        }
        s1 += t1 as f64;
        s2 += t2 as f64;
    }
    (s1, s2)
}

/// `dx = dy * (g * invstd) + (x - mean) * b + c` along one row.
#[inline]
#[allow(clippy::too_many_arguments)]
fn dx_row(dy: &[f32], x: &[f32], dx: &mut [f32], g: &[f32], invstd: f32, mean: f32, b: f32, c: f32) {
    let (is, m, bv, cv) = (F32x4::splat(invstd), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c));
    let body = dx.len() / 4 * 4;
    for i in (0..body).step_by(4) {
        let k = F32x4::load(q(&g[i..i + 4])).mul(is);
        let xm = F32x4::load(q(&x[i..i + 4])).sub(m);
        F32x4::load(q(&dy[i..i + 4])).mul(k).add(xm.mul(bv)).add(cv).store(q_mut(&mut dx[i..i + 4]));
    }
    for i in body..dx.len() {
        dx[i] = dy[i] * (g[i] * invstd) + (x[i] - mean) * b + c;
    }
}

/// Per-column `sum(dy * xhat)` and `sum(dy)` over rows: f32 lanes for up to
/// [`COL_FLUSH_ROWS`] rows, then f64.
struct ColAcc {
    dg: Vec<f32>,
    db: Vec<f32>,
    rows: usize,
    out: ColSums,
}

impl ColAcc {
    fn new(len: usize) -> Self {
        ColAcc { dg: vec![0.0; len], db: vec![0.0; len], rows: 0, out: ColSums { dgamma: vec![0.0; len], dbeta: vec![0.0; len] } }
    }

    #[inline]
    fn add_row(&mut self, dy: &[f32], x: &[f32], mean: f32, invstd: f32) {
        let (m, is) = (F32x4::splat(mean), F32x4::splat(invstd));
        let body = dy.len() / 4 * 4;
        for i in (0..body).step_by(4) {
            let d = F32x4::load(q(&dy[i..i + 4]));
            let xhat = F32x4::load(q(&x[i..i + 4])).sub(m).mul(is);
            let g = q_mut(&mut self.dg[i..i + 4]);
            F32x4::load(g).add(d.mul(xhat)).store(g);
            let b = q_mut(&mut self.db[i..i + 4]);
            F32x4::load(b).add(d).store(b);
        }
        for i in body..dy.len() {
            self.dg[i] += dy[i] * ((x[i] - mean) * invstd);
            self.db[i] += dy[i];
        }
        self.rows += 1;
        if self.rows == COL_FLUSH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (o, v) in self.out.dgamma.iter_mut().zip(self.dg.iter_mut()) {
            *o += *v as f64;
            *v = 0.0;
        }
        for (o, v) in self.out.dbeta.iter_mut().zip(self.db.iter_mut()) {
            *o += *v as f64;
            *v = 0.0;
        }
        self.rows = 0;
    }

    fn finish(mut self) -> ColSums {
        self.flush();
        self.out
    }
}
