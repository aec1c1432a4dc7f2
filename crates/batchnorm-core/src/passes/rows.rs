//! The row geometry: statistics of each contiguous row of `len` values, affine along the
//! row. LayerNorm over the last dims of any tensor is `rows = numel / len` rows of
//! `len = prod(normalized_shape)`, one parameter per column; RMSNorm is the same without
//! the mean. GroupNorm and InstanceNorm channels-first are rows too: on `(N, C, S)` each
//! (sample, group) is a contiguous row of `C/G` planes of `S` values, one parameter per
//! plane ([`Rows::inner`] = `S`, [`Rows::period`] = `G`: row `r` uses the parameters of
//! group `r % G`).
//!
//! Each row is handled whole while it sits in cache: statistics, then the normalise loop,
//! so the forward reads `x` once and writes `y` once. The statistics are batch norm's
//! corrected two-pass blocks (`moments::row_mean_var`, through `moments::merge_run`: blocks
//! of up to 2,048 values, f64 merge across blocks, `1/n` formed once per call, and blocks
//! after a row's first borrow the mean so far as their shift and skip their first pass): a
//! one-pass variant about a shift sampled from 16 values was ~20% faster but its mean was
//! up to 3x less accurate (the f32 sum of `x - s` grows with `|mean - s|`; see
//! docs/norms.md), so it is not used. The backward does the same per row: the two row
//! sums `sum(g*dy)`, `sum(g*dy*(x-mean))`, then `dx`, reading `dy` and `x` once; the
//! column sums for `dgamma` / `dbeta` are accumulated on the way in f32 lanes over at most
//! [`COL_FLUSH_ROWS`] rows and then in f64 (as batch norm's channels-last reduction). The
//! hot loops iterate exact chunks zipped by value (no bounds checks), two quads a step.

use crate::inv_std;
use crate::moments::{row_mean_var, row_mean_var4, Recip, PLANE_BLOCK};
use crate::parallel;
use crate::simd::{q, q_mut, F32x4, F64x2};

/// Rows of f32 column sums before they go to f64 (as `moments::MAX_BLOCK_ROWS`).
const COL_FLUSH_ROWS: usize = 256;

/// Rows the forward takes [`GROUP`] at a time when they have at most this many values
/// (four rows of 512 measured 1.09x the time of one at a time).
const SHORT_ROW: usize = 256;
/// See [`forward`].
const GROUP: usize = 4;

/// `rows` contiguous rows of `len` values; each row is `len / inner` runs ("planes") of
/// `inner` values sharing one parameter; row `r` uses parameter block `r % period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub rows: usize,
    pub len: usize,
    /// Values per parameter: 1 for LayerNorm (a parameter per column), `S` for GroupNorm.
    pub inner: usize,
    /// Parameter blocks: 1 for LayerNorm, the group count for GroupNorm.
    pub period: usize,
}

impl Rows {
    /// Parameters per row (`len / inner`).
    #[inline]
    pub fn params_per_row(&self) -> usize {
        self.len / self.inner
    }

    /// Length of the weight / bias vectors (`period * len / inner`).
    pub fn params(&self) -> usize {
        self.period * self.params_per_row()
    }

    /// The first parameter index of row `r`: 0 for LayerNorm / RMSNorm (one parameter
    /// block) without the two integer divisions, which sit on every row's path.
    #[inline]
    fn param0(&self, r: usize) -> usize {
        if self.period == 1 {
            0
        } else {
            (r % self.period) * self.params_per_row()
        }
    }
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
    let recip = Recip::new(r.len);
    let par = parallel::worth_it(x.len());
    let per_task = parallel::units_per_task(r.rows, r.len, par);
    parallel::for_each_chunk_mut3(y, per_task * r.len, mean, per_task, invstd, per_task, par, |t, ys, ms, iss| {
        let first = t * per_task;
        let xs = &x[first * r.len..first * r.len + ys.len()];
        // The per-row statistic from the row's moments.
        let stat_of = |(m, v): (f64, f64)| -> (f64, f64) {
            match stat {
                Stat::Centered => (m, v),
                // RMSNorm's mean of the squares, `M2 / n + mean^2`: the corrected
                // two-pass moments give it without a separate sum of squares.
                Stat::MeanSquare => (0.0, v + m * m),
            }
        };
        // What a row saves and normalises with: the mean split into two f32s (`hi`, and
        // `lo` = the rest of the f64 mean) and `1/sqrt(var + eps)`.
        let saved = |(mu, var): (f64, f64)| -> (f32, f32, f32) {
            let hi = mu as f32;
            (hi, (mu - hi as f64) as f32, inv_std(var, eps))
        };
        // Row `k` (of the whole tensor) normalised with its saved statistics.
        let normalize = |k: usize, xr: &[f32], yr: &mut [f32], hi: f32, lo: f32, is: f32| {
            let p0 = r.param0(k);
            let p = p0..p0 + r.params_per_row();
            if r.inner == 1 {
                normalize_row(xr, yr, hi, lo, is, &gamma[p.clone()], &beta[p]);
            } else {
                for ((xp, yp), (&g, &b)) in xr.chunks_exact(r.inner).zip(yr.chunks_exact_mut(r.inner)).zip(gamma[p.clone()].iter().zip(&beta[p])) {
                    // One scale and offset per plane: `(x - hi - lo) * is * g + b` is
                    // `(x - hi) * (is * g) + (b - lo * is * g)`, with `x - hi` exact for
                    // values near the mean and the rest formed in f64.
                    let sc = is as f64 * g as f64;
                    normalize_plane(xp, yp, hi, sc as f32, (b as f64 - lo as f64 * sc) as f32);
                }
            }
        };
        // Short rows GROUP at a time: each step of a row's statistics waits on the one
        // before (sums, shift, centred sums, f64 moments, square root, division), and a
        // short row has little work besides that chain. The group's chains run side by
        // side, their horizontal sums and f64 steps in vector lanes (`row_mean_var4`).
        // Measured in V8 (paired CPU time, `bench/norms-ab.mjs`, 4M values): four rows of
        // 64-256 values with scalar chains took 0.88-0.94x the time of one at a time; in
        // lanes, 0.80-0.91x that for rows of 3-128 values, 0.94-0.99x for 192-256, and
        // InstanceNorm's rows of 49 and 196 0.84-0.88x. (The scalar build, whose "lanes"
        // are arrays: rows of 8 1.17x, 16-32 1.05x, 64 and more 0.99-1.01x.) The same
        // operations on each row as one at a time (below), so the same bits.
        let mut done = 0;
        if r.len <= SHORT_ROW {
            let (xg, yg) = (xs.chunks_exact(GROUP * r.len), ys.chunks_exact_mut(GROUP * r.len));
            for ((xg, yg), (ms, iss)) in xg.zip(yg).zip(ms.chunks_exact_mut(GROUP).zip(iss.chunks_exact_mut(GROUP))) {
                let rows: [&[f32]; GROUP] = core::array::from_fn(|j| &xg[j * r.len..(j + 1) * r.len]);
                let (mean, var) = row_mean_var4(rows, recip);
                // `stat_of` and `saved` (above), a pair of rows at a time.
                let (mean, var) = match stat {
                    Stat::Centered => (mean, var),
                    Stat::MeanSquare => ([F64x2::splat(0.0); 2], [0, 1].map(|j| var[j].add(mean[j].mul(mean[j])))),
                };
                let hi = F64x2::narrow(mean[0], mean[1]);
                let hi64 = F64x2::widen(hi);
                let lo = F64x2::narrow(mean[0].sub(hi64[0]), mean[1].sub(hi64[1]));
                let eps = F64x2::splat(eps as f64);
                let is = [0, 1].map(|j| F64x2::splat(1.0).div(var[j].add(eps).sqrt()));
                let is = F64x2::narrow(is[0], is[1]);
                hi.store(q_mut(ms));
                is.store(q_mut(iss));
                let (hi, lo, is) = (hi.to_array(), lo.to_array(), is.to_array());
                for (j, (xr, yr)) in xg.chunks_exact(r.len).zip(yg.chunks_exact_mut(r.len)).enumerate() {
                    normalize(first + done + j, xr, yr, hi[j], lo[j], is[j]);
                }
                done += GROUP;
            }
        }
        let (xs, ys) = (&xs[done * r.len..], &mut ys[done * r.len..]);
        let (ms, iss) = (&mut ms[done..], &mut iss[done..]);
        for (k, (xr, yr)) in xs.chunks_exact(r.len).zip(ys.chunks_exact_mut(r.len)).enumerate() {
            let (hi, lo, is) = saved(stat_of(row_mean_var(xr, recip)));
            ms[k] = hi;
            iss[k] = is;
            normalize(first + done + k, xr, yr, hi, lo, is);
        }
    });
}

/// `y = ((x - shift - shift_lo) * scale) * g + b` along one row (a parameter per column):
/// the split mean subtracted first, as in [`crate::affine`], so large means lose nothing.
#[inline]
fn normalize_row(x: &[f32], y: &mut [f32], shift: f32, shift_lo: f32, scale: f32, g: &[f32], b: &[f32]) {
    let n = y.len();
    let (x, g, b) = (&x[..n], &g[..n], &b[..n]);
    let (s, l, a) = (F32x4::splat(shift), F32x4::splat(shift_lo), F32x4::splat(scale));
    let body = n / 8 * 8;
    let (yb, yt) = y.split_at_mut(body);
    // Exact chunks zipped by value: one index, no bounds checks; two quads a step.
    let ins = x.chunks_exact(8).zip(g.chunks_exact(8)).zip(b.chunks_exact(8));
    for (yv, ((xv, gv), bv)) in yb.chunks_exact_mut(8).zip(ins) {
        for k in [0, 4] {
            let xhat = F32x4::load(q(&xv[k..k + 4])).sub(s).sub(l).mul(a);
            xhat.mul(F32x4::load(q(&gv[k..k + 4]))).add(F32x4::load(q(&bv[k..k + 4]))).store(q_mut(&mut yv[k..k + 4]));
        }
    }
    for (i, yv) in yt.iter_mut().enumerate() {
        let i = body + i;
        *yv = ((x[i] - shift - shift_lo) * scale) * g[i] + b[i];
    }
}

/// `y = (x - shift) * scale + offset` over one plane (a parameter per plane).
#[inline]
fn normalize_plane(x: &[f32], y: &mut [f32], shift: f32, scale: f32, offset: f32) {
    let n = y.len();
    let x = &x[..n];
    let (s, a, o) = (F32x4::splat(shift), F32x4::splat(scale), F32x4::splat(offset));
    let body = n / 8 * 8;
    let (yb, yt) = y.split_at_mut(body);
    for (yv, xv) in yb.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
        for k in [0, 4] {
            F32x4::load(q(&xv[k..k + 4])).sub(s).mul(a).add(o).store(q_mut(&mut yv[k..k + 4]));
        }
    }
    for (i, yv) in yt.iter_mut().enumerate() {
        *yv = (x[body + i] - shift) * scale + offset;
    }
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
    // Tasks cut by the shape alone: the column sums combine per task.
    let per_task = parallel::units_per_reduction_task(r.len);
    let len = r.len;
    // Products by `1 / len` instead of quotients: see `moments::Recip`.
    let inv_n = Recip::new(len).inv();
    let sums = parallel::map_reduce_chunks_mut(
        dx,
        per_task * len,
        par,
        |t, dxs| {
            let first = t * per_task;
            let mut cols = param_grads.then(|| ColAcc::new(r.params()));
            if r.inner > 1 {
                planes_backward(dy, x, dxs, first, r, gamma, mean, invstd, stat, cols.as_mut());
                return cols.map(ColAcc::finish);
            }
            for (k, dxr) in dxs.chunks_mut(len).enumerate() {
                let row = first + k;
                let s = row * len..(row + 1) * len;
                let (dyr, xr) = (&dy[s.clone()], &x[s]);
                let (mu, is) = (mean[row], invstd[row]);
                let p0 = r.param0(row);
                let g = &gamma[p0..p0 + r.params_per_row()];
                let (s_g, s_gx) = match cols.as_mut() {
                    Some(c) => c.row_sums(dyr, xr, g, mu, is, p0),
                    None => row_sums::<false>(dyr, xr, g, mu, is, &mut [], &mut []),
                };
                let isf = is as f64;
                let b = (-isf * isf * isf * s_gx * inv_n) as f32;
                let c0 = match stat {
                    Stat::Centered => (-isf * s_g * inv_n) as f32,
                    Stat::MeanSquare => 0.0,
                };
                dx_row(dyr, xr, dxr, g, is, mu, b, c0);
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
/// With `COLS`, the same read also adds `dy * xhat` and `dy` to the column sums `dg`, `db`.
#[inline]
#[allow(clippy::too_many_arguments)]
fn row_sums<const COLS: bool>(dy: &[f32], x: &[f32], g: &[f32], mean: f32, invstd: f32, dg: &mut [f32], db: &mut [f32]) -> (f64, f64) {
    let n = dy.len();
    let (mut s1, mut s2) = (0f64, 0f64);
    let mut start = 0;
    while start < n {
        let end = (start + PLANE_BLOCK).min(n);
        let r = start..end;
        let (t1, t2) = if COLS {
            block_sums_cols(&dy[r.clone()], &x[r.clone()], &g[r.clone()], mean, invstd, &mut dg[r.clone()], &mut db[r])
        } else {
            block_sums(&dy[r.clone()], &x[r.clone()], &g[r], mean)
        };
        s1 += t1 as f64;
        s2 += t2 as f64;
        start = end;
    }
    (s1, s2)
}

/// [`row_sums`] of one block without column sums: two quads a step, two accumulator pairs.
#[inline]
fn block_sums(dy: &[f32], x: &[f32], g: &[f32], mean: f32) -> (f32, f32) {
    let n = dy.len();
    let (x, g) = (&x[..n], &g[..n]);
    let m = F32x4::splat(mean);
    let (mut a, mut b) = ([F32x4::zero(); 2], [F32x4::zero(); 2]);
    for ((d, xv), gv) in dy.chunks_exact(8).zip(x.chunks_exact(8)).zip(g.chunks_exact(8)) {
        for k in 0..2 {
            let gd = F32x4::load(q(&d[4 * k..4 * k + 4])).mul(F32x4::load(q(&gv[4 * k..4 * k + 4])));
            a[k] = a[k].add(gd);
            b[k] = b[k].add(gd.mul(F32x4::load(q(&xv[4 * k..4 * k + 4])).sub(m)));
        }
    }
    let (mut t1, mut t2) = (a[0].add(a[1]).hsum(), b[0].add(b[1]).hsum());
    for i in n / 8 * 8..n {
        let gd = dy[i] * g[i];
        t1 += gd;
        t2 += gd * (x[i] - mean);
    }
    (t1, t2)
}

/// [`block_sums`] that also adds `dy * (x - mean) * invstd` and `dy` to the column sums.
#[inline]
fn block_sums_cols(dy: &[f32], x: &[f32], g: &[f32], mean: f32, invstd: f32, dg: &mut [f32], db: &mut [f32]) -> (f32, f32) {
    let n = dy.len();
    let (x, g, dg, db) = (&x[..n], &g[..n], &mut dg[..n], &mut db[..n]);
    let (m, is) = (F32x4::splat(mean), F32x4::splat(invstd));
    let (mut a, mut b) = ([F32x4::zero(); 2], [F32x4::zero(); 2]);
    let ins = dy.chunks_exact(8).zip(x.chunks_exact(8)).zip(g.chunks_exact(8));
    for (((d, xv), gv), (cg, cb)) in ins.zip(dg.chunks_exact_mut(8).zip(db.chunks_exact_mut(8))) {
        for k in 0..2 {
            let r = 4 * k..4 * k + 4;
            let d = F32x4::load(q(&d[r.clone()]));
            let xm = F32x4::load(q(&xv[r.clone()])).sub(m);
            let gd = d.mul(F32x4::load(q(&gv[r.clone()])));
            a[k] = a[k].add(gd);
            b[k] = b[k].add(gd.mul(xm));
            let cg = q_mut(&mut cg[r.clone()]);
            F32x4::load(cg).add(d.mul(xm.mul(is))).store(cg);
            let cb = q_mut(&mut cb[r]);
            F32x4::load(cb).add(d).store(cb);
        }
    }
    let (mut t1, mut t2) = (a[0].add(a[1]).hsum(), b[0].add(b[1]).hsum());
    for i in n / 8 * 8..n {
        let gd = dy[i] * g[i];
        t1 += gd;
        t2 += gd * (x[i] - mean);
        dg[i] += dy[i] * ((x[i] - mean) * invstd);
        db[i] += dy[i];
    }
    (t1, t2)
}

/// `dx = dy * (g * invstd) + (x - mean) * b + c` along one row.
#[inline]
#[allow(clippy::too_many_arguments)]
fn dx_row(dy: &[f32], x: &[f32], dx: &mut [f32], g: &[f32], invstd: f32, mean: f32, b: f32, c: f32) {
    let n = dx.len();
    let (dy, x, g) = (&dy[..n], &x[..n], &g[..n]);
    let (is, m, bv, cv) = (F32x4::splat(invstd), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c));
    let body = n / 8 * 8;
    let (head, tail) = dx.split_at_mut(body);
    let ins = dy.chunks_exact(8).zip(x.chunks_exact(8)).zip(g.chunks_exact(8));
    for (o, ((d, xv), gv)) in head.chunks_exact_mut(8).zip(ins) {
        for k in [0, 4] {
            let kv = F32x4::load(q(&gv[k..k + 4])).mul(is);
            let xm = F32x4::load(q(&xv[k..k + 4])).sub(m);
            F32x4::load(q(&d[k..k + 4])).mul(kv).add(xm.mul(bv)).add(cv).store(q_mut(&mut o[k..k + 4]));
        }
    }
    for (i, o) in tail.iter_mut().enumerate() {
        let i = body + i;
        *o = dy[i] * (g[i] * invstd) + (x[i] - mean) * b + c;
    }
}

/// Backward of the rows `first..` that `dx` covers, for rows of planes (one parameter per
/// plane: GroupNorm / InstanceNorm channels-first), software-pipelined: the per-plane sums
/// of row `k + 1` are taken in the same loop that writes `dx` of row `k`, so every step
/// streams a new row in and `dx` out, where two separate passes alternate a read-only phase
/// and a write phase and leave the memory system idle in turns.
#[allow(clippy::too_many_arguments)]
fn planes_backward(dy: &[f32], x: &[f32], dx: &mut [f32], first: usize, r: Rows, gamma: &[f32], mean: &[f32], invstd: &[f32], stat: Stat, mut cols: Option<&mut ColAcc>) {
    let (len, inner, planes) = (r.len, r.inner, r.params_per_row());
    // Products by `1 / len` instead of quotients: see `moments::Recip`.
    let inv_n = Recip::new(len).inv();
    let rows = dx.len() / len;
    let span = |k: usize| (first + k) * len..(first + k + 1) * len;
    // Per plane `(sum(dy), sum(dy * (x - mean)))` of the current row and of the next.
    let (mut cur, mut next) = (vec![(0f64, 0f64); planes], vec![(0f64, 0f64); planes]);
    if rows > 0 {
        let (d, xv) = (&dy[span(0)], &x[span(0)]);
        for (c, (dp, xp)) in cur.iter_mut().zip(d.chunks_exact(inner).zip(xv.chunks_exact(inner))) {
            *c = plane_sums(dp, xp, mean[first]);
        }
    }
    for (k, dxr) in dx.chunks_exact_mut(len).enumerate() {
        let row = first + k;
        let (mu, is) = (mean[row], invstd[row]);
        let p0 = r.param0(row);
        let g = &gamma[p0..p0 + planes];
        let (mut s1, mut s2) = (0f64, 0f64);
        for (p, (&(t1, t2), &gp)) in cur.iter().zip(g).enumerate() {
            s1 += gp as f64 * t1;
            s2 += gp as f64 * t2;
            if let Some(c) = cols.as_mut() {
                c.out.dgamma[p0 + p] += t2 * is as f64;
                c.out.dbeta[p0 + p] += t1;
            }
        }
        let isf = is as f64;
        let b = (-isf * isf * isf * s2 * inv_n) as f32;
        let c0 = match stat {
            Stat::Centered => (-isf * s1 * inv_n) as f32,
            Stat::MeanSquare => 0.0,
        };
        let (dyr, xr) = (&dy[span(k)], &x[span(k)]);
        let planes_k = dyr.chunks_exact(inner).zip(xr.chunks_exact(inner)).zip(dxr.chunks_exact_mut(inner)).zip(g);
        if k + 1 == rows {
            for (((dyp, xp), dxp), &gp) in planes_k {
                dx_plane(dyp, xp, dxp, gp * is, mu, b, c0);
            }
            break;
        }
        let (dyn_, xn, mn) = (&dy[span(k + 1)], &x[span(k + 1)], mean[row + 1]);
        let planes_n = dyn_.chunks_exact(inner).zip(xn.chunks_exact(inner));
        for ((((dyp, xp), dxp), &gp), ((dnp, xnp), nx)) in planes_k.zip(planes_n.zip(next.iter_mut())) {
            let (mut t1, mut t2) = (0f64, 0f64);
            let blocks = dyp.chunks(PLANE_BLOCK).zip(xp.chunks(PLANE_BLOCK)).zip(dxp.chunks_mut(PLANE_BLOCK));
            for (((d, xv), o), (dn, xnv)) in blocks.zip(dnp.chunks(PLANE_BLOCK).zip(xnp.chunks(PLANE_BLOCK))) {
                let (u1, u2) = dx_plane_and_sums(d, xv, o, gp * is, mu, b, c0, dn, xnv, mn);
                t1 += u1 as f64;
                t2 += u2 as f64;
            }
            *nx = (t1, t2);
        }
        core::mem::swap(&mut cur, &mut next);
    }
}

/// `(sum(dy), sum(dy * (x - mean)))` of one plane: f32 lanes per cache block, f64 across.
#[inline]
fn plane_sums(dy: &[f32], x: &[f32], mean: f32) -> (f64, f64) {
    let (mut t1, mut t2) = (0f64, 0f64);
    for (db, xb) in dy.chunks(PLANE_BLOCK).zip(x.chunks(PLANE_BLOCK)) {
        let (u1, u2) = plane_block_sums(db, xb, mean);
        t1 += u1 as f64;
        t2 += u2 as f64;
    }
    (t1, t2)
}

/// [`dx_plane`] of one block and, in the same loop, [`plane_block_sums`] of the matching
/// block of the next row (`dy2`, `x2`, `mean2`; same lanes and order, so the same sums).
#[inline]
#[allow(clippy::too_many_arguments)]
fn dx_plane_and_sums(dy: &[f32], x: &[f32], dx: &mut [f32], k: f32, mean: f32, b: f32, c: f32, dy2: &[f32], x2: &[f32], mean2: f32) -> (f32, f32) {
    let n = dx.len();
    let (dy, x, dy2, x2) = (&dy[..n], &x[..n], &dy2[..n], &x2[..n]);
    let (kv, m, bv, cv, m2) = (F32x4::splat(k), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c), F32x4::splat(mean2));
    let (mut a, mut s) = ([F32x4::zero(); 2], [F32x4::zero(); 2]);
    let body = n / 8 * 8;
    let (head, tail) = dx.split_at_mut(body);
    let ins = dy.chunks_exact(8).zip(x.chunks_exact(8)).zip(dy2.chunks_exact(8).zip(x2.chunks_exact(8)));
    for (o, ((d, xv), (d2, x2v))) in head.chunks_exact_mut(8).zip(ins) {
        for j in 0..2 {
            let r = 4 * j..4 * j + 4;
            let xm = F32x4::load(q(&xv[r.clone()])).sub(m);
            F32x4::load(q(&d[r.clone()])).mul(kv).add(xm.mul(bv)).add(cv).store(q_mut(&mut o[r.clone()]));
            let dn = F32x4::load(q(&d2[r.clone()]));
            a[j] = a[j].add(dn);
            s[j] = s[j].add(dn.mul(F32x4::load(q(&x2v[r])).sub(m2)));
        }
    }
    for (i, o) in tail.iter_mut().enumerate() {
        let i = body + i;
        *o = dy[i] * k + (x[i] - mean) * b + c;
    }
    let (mut u1, mut u2) = (a[0].add(a[1]).hsum(), s[0].add(s[1]).hsum());
    for i in body..n {
        u1 += dy2[i];
        u2 += dy2[i] * (x2[i] - mean2);
    }
    (u1, u2)
}

/// `(sum(dy), sum(dy * (x - mean)))` of one block of a plane in f32 lanes.
#[inline]
fn plane_block_sums(dy: &[f32], x: &[f32], mean: f32) -> (f32, f32) {
    let n = dy.len();
    let x = &x[..n];
    let m = F32x4::splat(mean);
    let (mut a, mut b) = ([F32x4::zero(); 2], [F32x4::zero(); 2]);
    for (d, xv) in dy.chunks_exact(8).zip(x.chunks_exact(8)) {
        for k in 0..2 {
            let d = F32x4::load(q(&d[4 * k..4 * k + 4]));
            a[k] = a[k].add(d);
            b[k] = b[k].add(d.mul(F32x4::load(q(&xv[4 * k..4 * k + 4])).sub(m)));
        }
    }
    let (mut u1, mut u2) = (a[0].add(a[1]).hsum(), b[0].add(b[1]).hsum());
    for i in n / 8 * 8..n {
        u1 += dy[i];
        u2 += dy[i] * (x[i] - mean);
    }
    (u1, u2)
}

/// `dx = dy * k + (x - mean) * b + c` over one plane.
#[inline]
fn dx_plane(dy: &[f32], x: &[f32], dx: &mut [f32], k: f32, mean: f32, b: f32, c: f32) {
    let n = dx.len();
    let (dy, x) = (&dy[..n], &x[..n]);
    let (kv, m, bv, cv) = (F32x4::splat(k), F32x4::splat(mean), F32x4::splat(b), F32x4::splat(c));
    let body = n / 8 * 8;
    let (head, tail) = dx.split_at_mut(body);
    for (o, (d, xv)) in head.chunks_exact_mut(8).zip(dy.chunks_exact(8).zip(x.chunks_exact(8))) {
        for j in [0, 4] {
            let xm = F32x4::load(q(&xv[j..j + 4])).sub(m);
            F32x4::load(q(&d[j..j + 4])).mul(kv).add(xm.mul(bv)).add(cv).store(q_mut(&mut o[j..j + 4]));
        }
    }
    for (i, o) in tail.iter_mut().enumerate() {
        let i = body + i;
        *o = dy[i] * k + (x[i] - mean) * b + c;
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

    /// [`row_sums`] of a row whose parameters start at `p0`, adding to the column sums.
    #[inline]
    fn row_sums(&mut self, dy: &[f32], x: &[f32], g: &[f32], mean: f32, invstd: f32, p0: usize) -> (f64, f64) {
        let n = dy.len();
        let r = row_sums::<true>(dy, x, g, mean, invstd, &mut self.dg[p0..p0 + n], &mut self.db[p0..p0 + n]);
        self.rows += 1;
        if self.rows == COL_FLUSH_ROWS {
            self.flush();
        }
        r
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
