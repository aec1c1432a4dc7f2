//! The group geometry: statistics per (sample, group of channels), affine per channel
//! (GroupNorm; InstanceNorm is GroupNorm with one channel per group).
//!
//! Every pass is batch norm's own pass over a view in which each (sample, channel) pair is
//! a "channel" (what PyTorch's GroupNorm CPU kernel does too):
//! - channels-first `(N, C, *S)`: one view `Dims { outer: 1, channels: N*C, inner: S }`,
//!   each (n, c) a contiguous plane;
//! - channels-last `(N, *S, C)`: per sample, `Dims { outer: S, channels: C, inner: 1 }`.
//!
//! Statistics: per-(n, c) [`Moments`] from [`crate::moments::moments`], merged over the
//! channels of a group in f64 (Chan's formula; exact for any split). Normalise: the group's
//! mean / invstd and the channel's gamma / beta folded into per-(n, c) shift, scale and
//! offset for [`crate::affine::affine_per_channel`]. Backward: per-(n, c) `sum(dy)` and
//! `sum(dy * (x - mean))` from [`crate::backward::grad_sums`], combined per group with
//! gamma in f64, then [`crate::backward::dx_apply`] with per-(n, c) coefficients.

use crate::affine::{self, affine_per_channel};
use crate::backward::{dx_apply, grad_sums, GradSums};
use crate::dims::{Dims, Layout};
use crate::moments::{self, Moments};
use crate::parallel;

/// `(N, C, *S)` or `(N, *S, C)` with `S` = the product of the spatial dims, in `groups`
/// groups of `C / groups` consecutive channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    pub n: usize,
    pub channels: usize,
    pub spatial: usize,
    pub groups: usize,
    pub layout: Layout,
}

impl Groups {
    pub fn len(&self) -> usize {
        self.n * self.channels * self.spatial
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels per group.
    pub fn group_size(&self) -> usize {
        self.channels / self.groups
    }

    /// Values each (sample, group) statistic is taken over.
    pub fn per_group(&self) -> usize {
        self.group_size() * self.spatial
    }

    /// Number of (sample, group) statistics.
    pub fn stats(&self) -> usize {
        self.n * self.groups
    }

    /// The (sample, group) index of the (sample, channel) pair `nc = n * C + c`.
    #[inline]
    fn group_of(&self, nc: usize) -> usize {
        (nc / self.channels) * self.groups + (nc % self.channels) / self.group_size()
    }

    /// Runs `f(element range, view, first (n, c) index)` on each view (see the module comment).
    fn views(&self) -> Vec<(core::ops::Range<usize>, Dims, usize)> {
        match self.layout {
            Layout::ChannelsFirst => vec![(0..self.len(), Dims { outer: 1, channels: self.n * self.channels, inner: self.spatial }, 0)],
            Layout::ChannelsLast => {
                let per = self.spatial * self.channels;
                (0..self.n).map(|n| (n * per..(n + 1) * per, Dims { outer: self.spatial, channels: self.channels, inner: 1 }, n * self.channels)).collect()
            }
        }
    }
}

/// Per-(n, c) moments, in `n * C + c` order.
pub(crate) fn channel_moments(x: &[f32], g: Groups) -> Vec<Moments> {
    let views = g.views();
    let par = parallel::worth_it(x.len()) && views.len() > 1;
    parallel::map_collect(views.len(), par, |v| {
        let (r, d, _) = &views[v];
        moments::moments(&x[r.clone()], *d)
    })
    .concat()
}

/// Per-(n, g) moments from per-(n, c) ones.
pub(crate) fn group_moments(per_channel: &[Moments], g: Groups) -> Vec<Moments> {
    per_channel.chunks(g.group_size()).map(|c| c.iter().fold(Moments::EMPTY, |a, &b| a.merge(b))).collect()
}

/// `y` from per-(n, g) statistics: the f64 `mean` (applied as two f32s) and `invstd`.
pub(crate) fn normalize(x: &[f32], y: &mut [f32], g: Groups, weight: Option<&[f32]>, bias: Option<&[f32]>, mean: &[f64], invstd: &[f32]) {
    let nc = g.n * g.channels;
    let (mut shift, mut lo, mut scale, mut offset) = (vec![0f32; nc], vec![0f32; nc], vec![0f32; nc], vec![0f32; nc]);
    for i in 0..nc {
        let (s, c) = (g.group_of(i), i % g.channels);
        let hi = mean[s] as f32;
        shift[i] = hi;
        lo[i] = (mean[s] - hi as f64) as f32;
        scale[i] = (invstd[s] as f64 * weight.map_or(1.0, |w| w[c] as f64)) as f32;
        offset[i] = bias.map_or(0.0, |b| b[c]);
    }
    let views = g.views();
    if views.len() == 1 {
        let (_, d, _) = views[0];
        affine_per_channel(x, y, d, &shift, Some(&lo), &scale, &offset, affine::Fuse::default());
        return;
    }
    let per = g.spatial * g.channels;
    let ch = g.channels;
    parallel::for_each_chunk_mut(y, per, parallel::worth_it(x.len()), |n, yn| {
        let (r, d, first) = &views[n];
        let p = *first..first + ch;
        let (s, l, a, o) = (&shift[p.clone()], &lo[p.clone()], &scale[p.clone()], &offset[p]);
        affine_per_channel(&x[r.clone()], yn, *d, s, Some(l), a, o, affine::Fuse::default());
    });
}

/// Per-(n, c) `sum(dy)` and `sum(dy * (x - mean))`, `mean` per (n, g).
fn channel_grad_sums(dy: &[f32], x: &[f32], g: Groups, mean: &[f32]) -> GradSums {
    let mean_nc: Vec<f32> = (0..g.n * g.channels).map(|i| mean[g.group_of(i)]).collect();
    let views = g.views();
    let par = parallel::worth_it(x.len()) && views.len() > 1;
    let parts = parallel::map_collect(views.len(), par, |v| {
        let (r, d, first) = &views[v];
        grad_sums(&dy[r.clone()], &x[r.clone()], *d, &mean_nc[*first..first + d.channels], None)
    });
    let mut out = GradSums { sum_dy: Vec::with_capacity(mean_nc.len()), sum_dy_xmu: Vec::with_capacity(mean_nc.len()) };
    for p in parts {
        out.sum_dy.extend(p.sum_dy);
        out.sum_dy_xmu.extend(p.sum_dy_xmu);
    }
    out
}

/// Backward from the saved per-(n, g) `mean` and `invstd`: writes `dx`, and `dweight` /
/// `dbias` when given. With `k = gamma * invstd`, `m` values per group,
/// `ds = sum_c gamma[c] * sum(dy * (x - mean))`, `db = sum_c gamma[c] * sum(dy)` per group:
/// `dx = dy * k + (x - mean) * (-invstd^3 * ds / m) - invstd * db / m`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    g: Groups,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
) {
    let sums = channel_grad_sums(dy, x, g, mean);
    let nc = g.n * g.channels;
    let w = |c: usize| weight.map_or(1.0, |w| w[c] as f64);
    let (mut ds, mut db) = (vec![0f64; g.stats()], vec![0f64; g.stats()]);
    for i in 0..nc {
        let s = g.group_of(i);
        ds[s] += w(i % g.channels) * sums.sum_dy_xmu[i];
        db[s] += w(i % g.channels) * sums.sum_dy[i];
    }
    if let Some(dw) = dweight {
        let mut acc = vec![0f64; g.channels];
        for i in 0..nc {
            acc[i % g.channels] += sums.sum_dy_xmu[i] * invstd[g.group_of(i)] as f64;
        }
        dw.iter_mut().zip(acc).for_each(|(o, v)| *o = v as f32);
    }
    if let Some(dbias) = dbias {
        let mut acc = vec![0f64; g.channels];
        for i in 0..nc {
            acc[i % g.channels] += sums.sum_dy[i];
        }
        dbias.iter_mut().zip(acc).for_each(|(o, v)| *o = v as f32);
    }
    let m = g.per_group() as f64;
    let (mut k, mut mu, mut b, mut c0) = (vec![0f32; nc], vec![0f32; nc], vec![0f32; nc], vec![0f32; nc]);
    for i in 0..nc {
        let s = g.group_of(i);
        let is = invstd[s] as f64;
        k[i] = (w(i % g.channels) * is) as f32;
        mu[i] = mean[s];
        b[i] = (-is * is * is * ds[s] / m) as f32;
        c0[i] = (-is * db[s] / m) as f32;
    }
    let views = g.views();
    if views.len() == 1 {
        dx_apply(dy, x, None, dx, None, views[0].1, &k, &mu, &b, &c0);
        return;
    }
    let ch = g.channels;
    parallel::for_each_chunk_mut(dx, g.spatial * ch, parallel::worth_it(x.len()), |n, dxn| {
        let (r, d, first) = &views[n];
        let p = *first..first + ch;
        dx_apply(&dy[r.clone()], &x[r.clone()], None, dxn, None, *d, &k[p.clone()], &mu[p.clone()], &b[p.clone()], &c0[p]);
    });
}
