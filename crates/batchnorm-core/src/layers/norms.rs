//! The per-sample normalisation layers on batch norm's kernels: LayerNorm, RMSNorm,
//! GroupNorm and InstanceNorm.
//!
//! Each layer is "statistics over some index set, then `y = xhat * gamma + beta`", and the
//! two geometries here cover them all:
//! - [`rows`]: one statistic per contiguous row, affine along the row (LayerNorm over the
//!   trailing dims, RMSNorm);
//! - [`groups`]: one statistic per (sample, group of channels), affine per channel
//!   (GroupNorm in both layouts, InstanceNorm = one channel per group), run through batch
//!   norm's own statistics / normalise / backward passes on a (sample, channel) view.
//!
//! Same accuracy scheme as batch norm everywhere: corrected two-pass moments in
//! cache-sized blocks, f64 merges, the mean subtracted (as two f32s) before scaling. Every
//! function checks all inputs before writing anything.

pub use crate::passes::{groups, rows};

pub use groups::Groups;
pub use rows::{Rows, Stat};

use crate::error::{BnError, Result};
use crate::moments::Moments;
use crate::{check_eps, check_momentum, inv_std, Layout};

fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len != want {
        return Err(BnError::Length(format!("{what} has {len} elements, expected {want}")));
    }
    Ok(())
}

fn check_opt(what: &str, v: Option<&[f32]>, want: usize) -> Result<()> {
    v.map_or(Ok(()), |v| check_len(what, v.len(), want))
}

fn check_opt_mut(what: &str, v: &Option<&mut [f32]>, want: usize) -> Result<()> {
    v.as_ref().map_or(Ok(()), |v| check_len(what, v.len(), want))
}

impl Rows {
    /// `rows` rows of `len` values, both > 0.
    pub fn new(rows: usize, len: usize) -> Result<Rows> {
        if rows == 0 || len == 0 {
            return Err(BnError::Shape(format!("rows ({rows}) and row length ({len}) must be > 0")));
        }
        rows.checked_mul(len).ok_or_else(|| BnError::Shape(format!("{rows} rows of {len} overflow")))?;
        Ok(Rows { rows, len, inner: 1, period: 1 })
    }

    /// Rows of `len / inner` planes of `inner` values, a parameter per plane, row `r` using
    /// parameter block `r % period` (GroupNorm channels-first: see [`rows`]).
    pub fn planes(rows: usize, len: usize, inner: usize, period: usize) -> Result<Rows> {
        let r = Rows::new(rows, len)?;
        if inner == 0 || !len.is_multiple_of(inner) || period == 0 {
            return Err(BnError::Shape(format!("a row of {len} values is not whole planes of {inner}, or period {period} is 0")));
        }
        Ok(Rows { inner, period, ..r })
    }

    fn numel(&self) -> usize {
        self.rows * self.len
    }
}

/// A parameter vector, or a constant one (gamma = 1, beta = 0 when a layer has none).
fn or_const(v: Option<&[f32]>, len: usize, value: f32) -> std::borrow::Cow<'_, [f32]> {
    match v {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(vec![value; len]),
    }
}

/// LayerNorm / RMSNorm forward over rows (see [`rows`]): writes `y`, and per row the mean
/// (0 for [`Stat::MeanSquare`]) and `1/sqrt(var + eps)` (`var` = the mean square for RMSNorm).
#[allow(clippy::too_many_arguments)]
pub fn rows_forward(
    x: &[f32],
    y: &mut [f32],
    r: Rows,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
    stat: Stat,
    mean: &mut [f32],
    invstd: &mut [f32],
) -> Result<()> {
    check_len("x", x.len(), r.numel())?;
    check_len("y", y.len(), r.numel())?;
    check_opt("weight", weight, r.params())?;
    check_opt("bias", bias, r.params())?;
    check_len("mean output", mean.len(), r.rows)?;
    check_len("invStd output", invstd.len(), r.rows)?;
    check_eps(eps)?;
    let (g, b) = (or_const(weight, r.params(), 1.0), or_const(bias, r.params(), 0.0));
    rows::forward(x, y, r, &g, &b, eps, stat, mean, invstd);
    Ok(())
}

/// LayerNorm / RMSNorm backward from the forward's saved `mean` / `invstd`: writes `dx`,
/// and `dweight` (`sum(dy * xhat)`) / `dbias` (`sum(dy)`) over rows when given.
#[allow(clippy::too_many_arguments)]
pub fn rows_backward(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    r: Rows,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    stat: Stat,
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
) -> Result<()> {
    check_len("dy", dy.len(), r.numel())?;
    check_len("x", x.len(), r.numel())?;
    check_len("dx", dx.len(), r.numel())?;
    check_opt("weight", weight, r.params())?;
    check_len("mean", mean.len(), r.rows)?;
    check_len("invStd", invstd.len(), r.rows)?;
    check_opt_mut("dWeight", &dweight, r.params())?;
    check_opt_mut("dBias", &dbias, r.params())?;
    let g = or_const(weight, r.params(), 1.0);
    let want = dweight.is_some() || dbias.is_some();
    let sums = rows::backward(dy, x, dx, r, &g, mean, invstd, stat, want);
    write_col_sums(sums, dweight, dbias);
    Ok(())
}

fn write_col_sums(sums: Option<rows::ColSums>, dweight: Option<&mut [f32]>, dbias: Option<&mut [f32]>) {
    if let Some(s) = sums {
        if let Some(dw) = dweight {
            dw.iter_mut().zip(&s.dgamma).for_each(|(o, &v)| *o = v as f32);
        }
        if let Some(db) = dbias {
            db.iter_mut().zip(&s.dbeta).for_each(|(o, &v)| *o = v as f32);
        }
    }
}

impl Groups {
    /// `(N, C, *S)` / `(N, *S, C)` in `groups` groups; PyTorch's errors: `groups` must divide
    /// `channels`, no dimension may be zero.
    pub fn new(n: usize, channels: usize, spatial: usize, groups: usize, layout: Layout) -> Result<Groups> {
        if n == 0 || channels == 0 || spatial == 0 {
            return Err(BnError::Shape(format!("N ({n}), C ({channels}) and the spatial size ({spatial}) must be > 0")));
        }
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(BnError::Shape(format!(
                "expected number of channels in input to be divisible by num_groups, but got input of {channels} channels and num_groups={groups}"
            )));
        }
        n.checked_mul(channels)
            .and_then(|v| v.checked_mul(spatial))
            .ok_or_else(|| BnError::Shape(format!("{n} x {channels} x {spatial} overflows")))?;
        Ok(Groups { n, channels, spatial, groups, layout })
    }
}

impl Groups {
    /// Channels-first groups as rows: one row per (sample, group) of `C/G` planes of `S`.
    fn as_rows(&self) -> Rows {
        Rows { rows: self.n * self.groups, len: self.group_size() * self.spatial, inner: self.spatial, period: self.groups }
    }
}

/// Running statistics of InstanceNorm (PyTorch's convention): each channel's mean and
/// unbiased variance averaged over the samples, then `new = (1 - m) * old + m * batch`.
#[derive(Debug)]
pub struct InstanceRunning<'a> {
    pub mean: &'a mut [f32],
    pub var: &'a mut [f32],
    pub momentum: f32,
}

/// GroupNorm / InstanceNorm training forward: writes `y` and the per-(n, g) `mean` /
/// `invstd` (`N * groups` each, what backward needs); updates `running` (per channel,
/// InstanceNorm with `groups == channels` only) when given.
#[allow(clippy::too_many_arguments)]
pub fn groups_forward(
    x: &[f32],
    y: &mut [f32],
    g: Groups,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
    mean: &mut [f32],
    invstd: &mut [f32],
    running: Option<InstanceRunning>,
) -> Result<()> {
    check_len("x", x.len(), g.len())?;
    check_len("y", y.len(), g.len())?;
    check_opt("weight", weight, g.channels)?;
    check_opt("bias", bias, g.channels)?;
    check_len("mean output", mean.len(), g.stats())?;
    check_len("invStd output", invstd.len(), g.stats())?;
    check_eps(eps)?;
    if let Some(r) = &running {
        if g.groups != g.channels {
            return Err(BnError::Option("running statistics are per channel: one channel per group (InstanceNorm) only".into()));
        }
        check_len("runningMean", r.mean.len(), g.channels)?;
        check_len("runningVar", r.var.len(), g.channels)?;
        check_momentum(r.momentum)?;
        if g.spatial < 2 {
            return Err(BnError::TooFewValues(format!(
                "expected more than 1 spatial element when training, got {} spatial element(s)",
                g.spatial
            )));
        }
    }
    if running.is_none() && g.layout == Layout::ChannelsFirst {
        // Each (sample, group) is one contiguous row: statistics and normalise while it is
        // in cache, one read of x (see rows.rs).
        rows::forward(x, y, g.as_rows(), &or_const(weight, g.channels, 1.0), &or_const(bias, g.channels, 0.0), eps, Stat::Centered, mean, invstd);
        return Ok(());
    }
    let per_channel = groups::channel_moments(x, g);
    let stats = groups::group_moments(&per_channel, g);
    for ((m, is), s) in mean.iter_mut().zip(invstd.iter_mut()).zip(&stats) {
        *m = s.mean as f32;
        *is = inv_std(s.biased_var(), eps);
    }
    if let Some(r) = running {
        update_instance_running(r, &per_channel, g);
    }
    let mean64: Vec<f64> = stats.iter().map(|s| s.mean).collect();
    groups::normalize(x, y, g, weight, bias, &mean64, invstd);
    Ok(())
}

fn update_instance_running(r: InstanceRunning, per_channel: &[Moments], g: Groups) {
    let m = r.momentum as f64;
    let n = g.n as f64;
    for c in 0..g.channels {
        let (mut mu, mut var) = (0f64, 0f64);
        for s in 0..g.n {
            let pc = per_channel[s * g.channels + c];
            mu += pc.mean;
            var += pc.unbiased_var();
        }
        r.mean[c] = ((1.0 - m) * r.mean[c] as f64 + m * mu / n) as f32;
        r.var[c] = ((1.0 - m) * r.var[c] as f64 + m * var / n) as f32;
    }
}

/// GroupNorm / InstanceNorm backward from the forward's per-(n, g) `mean` / `invstd`:
/// writes `dx`, and `dweight` / `dbias` (per channel) when given.
#[allow(clippy::too_many_arguments)]
pub fn groups_backward(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    g: Groups,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
) -> Result<()> {
    check_len("dy", dy.len(), g.len())?;
    check_len("x", x.len(), g.len())?;
    check_len("dx", dx.len(), g.len())?;
    check_opt("weight", weight, g.channels)?;
    check_len("mean", mean.len(), g.stats())?;
    check_len("invStd", invstd.len(), g.stats())?;
    check_opt_mut("dWeight", &dweight, g.channels)?;
    check_opt_mut("dBias", &dbias, g.channels)?;
    if g.layout == Layout::ChannelsFirst {
        let r = g.as_rows();
        let sums = rows::backward(dy, x, dx, r, &or_const(weight, g.channels, 1.0), mean, invstd, Stat::Centered, dweight.is_some() || dbias.is_some());
        write_col_sums(sums, dweight, dbias);
        return Ok(());
    }
    groups::backward(dy, x, dx, g, weight, mean, invstd, dweight, dbias);
    Ok(())
}
