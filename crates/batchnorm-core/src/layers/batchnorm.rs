//! Batch norm's entry points: each checks all of its inputs before it writes anything, then
//! combines the passes (statistics, normalise, backward, running averages). Re-exported at
//! the crate root.

use crate::backward::{self, Gate, GradSums};
use crate::error::{BnError, Result};
use crate::moments;
use crate::passes::mask;
use crate::running::{self, Convention};
use crate::{affine, Dims};

/// Optional affine parameters; `None` means gamma = 1 / beta = 0 (`affine: false`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Affine<'a> {
    pub weight: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
}

/// What a forward pass does after the normalisation: `y = relu(BN(x) + z)`.
#[derive(Debug, Default)]
pub struct Fused<'a> {
    /// Apply ReLU last.
    pub relu: bool,
    /// Residual input added before the ReLU (same shape as `x`).
    pub z: Option<&'a [f32]>,
    /// With `relu`: where to write the 1-bit mask `y > 0` for the backward
    /// ([`mask_words`](crate::passes::mask::mask_words) words; [`Gate::Bits`] reads it).
    pub mask: Option<&'a mut [u32]>,
}

impl<'a> Fused<'a> {
    /// Plain batch norm.
    pub const NONE: Fused<'static> = Fused { relu: false, z: None, mask: None };

    fn check(&self, dims: Dims) -> Result<()> {
        if let Some(z) = self.z {
            dims.check_len("z", z.len())?;
        }
        if let Some(m) = &self.mask {
            if !self.relu {
                return Err(BnError::Option("a ReLU mask needs relu (it is the ReLU's backward mask)".into()));
            }
            check_mask_len(dims, m.len())?;
        }
        Ok(())
    }

    fn fuse(self) -> affine::Fuse<'a> {
        affine::Fuse { gate: None, add: self.z, relu: self.relu, mask: self.mask }
    }
}

fn check_mask_len(dims: Dims, words: usize) -> Result<()> {
    let want = mask::mask_words(dims);
    if words != want {
        return Err(BnError::Length(format!("the ReLU mask has {words} words but the shape implies {want}")));
    }
    Ok(())
}

/// Backward through a fused ReLU: where the ReLU passed the gradient (the forward's output
/// `y`, read as `y > 0`, or the bit mask the forward wrote) and, when the forward had a
/// residual `z`, where to write its gradient `dz`.
#[derive(Debug)]
pub struct ReluGrad<'a> {
    pub gate: Gate<'a>,
    pub dz: Option<&'a mut [f32]>,
}

/// The gate's length: `y` as the tensor, a bit mask as its words.
fn check_gate(gate: Gate, dims: Dims) -> Result<()> {
    match gate {
        Gate::Output(y) => dims.check_len("y", y.len()),
        Gate::Bits(b) => check_mask_len(dims, b.len()),
    }
}

impl ReluGrad<'_> {
    fn check(relu: &Option<ReluGrad>, dims: Dims) -> Result<()> {
        if let Some(r) = relu {
            check_gate(r.gate, dims)?;
            if let Some(dz) = &r.dz {
                dims.check_len("dz", dz.len())?;
            }
        }
        Ok(())
    }
}

/// Running statistics to update during a training forward pass.
#[derive(Debug)]
pub struct Running<'a> {
    pub mean: &'a mut [f32],
    pub var: &'a mut [f32],
    pub momentum: f32,
    pub convention: Convention,
}

pub fn check_eps(eps: f32) -> Result<()> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(BnError::Option(format!("eps must be a finite number >= 0, got {eps}")));
    }
    Ok(())
}

pub fn check_momentum(momentum: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&momentum) {
        return Err(BnError::Option(format!("momentum must be in [0, 1], got {momentum}")));
    }
    Ok(())
}

/// Training needs at least two values per channel: with one the batch variance is 0 and
/// the unbiased variance undefined (PyTorch raises the same error).
pub fn check_trainable(dims: Dims) -> Result<()> {
    if dims.per_channel() < 2 {
        return Err(BnError::TooFewValues(format!(
            "expected more than 1 value per channel when training, got {} value(s) per channel",
            dims.per_channel()
        )));
    }
    Ok(())
}

fn check_affine(dims: Dims, a: Affine) -> Result<()> {
    if let Some(w) = a.weight {
        dims.check_channels("weight", w.len())?;
    }
    if let Some(b) = a.bias {
        dims.check_channels("bias", b.len())?;
    }
    Ok(())
}

/// `1 / sqrt(var + eps)` in f64, rounded once.
pub fn inv_std(var: f64, eps: f32) -> f32 {
    (1.0 / (var + eps as f64).sqrt()) as f32
}

/// Training forward. Writes `y`, the batch `save_mean` and `save_invstd` (what backward
/// needs) and updates `running` if given.
#[allow(clippy::too_many_arguments)]
pub fn train_forward(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    affine: Affine,
    running: Option<Running>,
    eps: f32,
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) -> Result<()> {
    train_forward_fused(x, y, dims, affine, running, eps, save_mean, save_invstd, Fused::NONE)
}

/// [`train_forward`] followed, in the same pass, by `fused` (ReLU, residual add).
#[allow(clippy::too_many_arguments)]
pub fn train_forward_fused(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    affine: Affine,
    running: Option<Running>,
    eps: f32,
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
    fused: Fused,
) -> Result<()> {
    fused.check(dims)?;
    dims.check_len("x", x.len())?;
    dims.check_len("y", y.len())?;
    check_affine(dims, affine)?;
    dims.check_channels("mean output", save_mean.len())?;
    dims.check_channels("invStd output", save_invstd.len())?;
    check_eps(eps)?;
    check_trainable(dims)?;
    if let Some(r) = &running {
        dims.check_channels("runningMean", r.mean.len())?;
        dims.check_channels("runningVar", r.var.len())?;
        check_momentum(r.momentum)?;
    }
    let m = moments::moments(x, dims);
    for (si, b) in save_invstd.iter_mut().zip(&m) {
        *si = inv_std(b.biased_var(), eps);
    }
    if let Some(r) = running {
        running::update(r.mean, r.var, &m, r.momentum, r.convention);
    }
    let (hi, lo) = split_mean(m.iter().map(|b| b.mean));
    save_mean.copy_from_slice(&hi);
    normalize_split(x, y, dims, affine, &hi, Some(&lo), save_invstd, fused);
    Ok(())
}

/// An f64 mean as the unevaluated sum of two f32s: `hi` (the rounded mean, what is saved)
/// and `lo` (what rounding lost), subtracted one after the other (see affine.rs).
fn split_mean(mean: impl Iterator<Item = f64>) -> (Vec<f32>, Vec<f32>) {
    mean.map(|m| {
        let hi = m as f32;
        (hi, (m - hi as f64) as f32)
    })
    .unzip()
}

fn check_normalize(x: &[f32], y: &[f32], dims: Dims, affine: Affine, mean_len: usize, invstd_len: usize) -> Result<()> {
    dims.check_len("x", x.len())?;
    dims.check_len("y", y.len())?;
    check_affine(dims, affine)?;
    dims.check_channels("mean", mean_len)?;
    dims.check_channels("invStd", invstd_len)
}

/// `y = (x - mean) * invstd * gamma + beta` with given per-channel statistics: the second
/// half of a training forward (used on its own by data-parallel training, where the
/// statistics come from several shards).
pub fn normalize(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f32], invstd: &[f32]) -> Result<()> {
    normalize_fused(x, y, dims, affine, mean, invstd, Fused::NONE)
}

/// [`normalize`] followed by `fused`.
pub fn normalize_fused(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f32], invstd: &[f32], fused: Fused) -> Result<()> {
    fused.check(dims)?;
    check_normalize(x, y, dims, affine, mean.len(), invstd.len())?;
    normalize_split(x, y, dims, affine, mean, None, invstd, fused);
    Ok(())
}

/// [`normalize`] with an f64 mean (e.g. merged from several shards' [`Moments`](crate::Moments)): the mean
/// is applied as two f32s, so outputs do not inherit the f32 rounding of the mean.
/// With `fused` applied after it (ReLU, residual add).
pub fn normalize_f64_mean(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f64], invstd: &[f32], fused: Fused) -> Result<()> {
    fused.check(dims)?;
    check_normalize(x, y, dims, affine, mean.len(), invstd.len())?;
    let (hi, lo) = split_mean(mean.iter().copied());
    normalize_split(x, y, dims, affine, &hi, Some(&lo), invstd, fused);
    Ok(())
}

/// `normalize` after validation, with an optional low part of the mean.
#[allow(clippy::too_many_arguments)]
fn normalize_split(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f32], mean_lo: Option<&[f32]>, invstd: &[f32], fused: Fused) {
    // gamma * invstd in f64, rounded once.
    let scale: Vec<f32> =
        (0..dims.channels).map(|c| (invstd[c] as f64 * affine.weight.map_or(1.0, |w| w[c] as f64)) as f32).collect();
    let offset: Vec<f32> = (0..dims.channels).map(|c| affine.bias.map_or(0.0, |b| b[c])).collect();
    affine::affine_per_channel(x, y, dims, mean, mean_lo, &scale, &offset, fused.fuse());
}

/// Inference forward with running statistics.
pub fn eval_forward(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    affine: Affine,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Result<()> {
    eval_forward_fused(x, y, dims, affine, running_mean, running_var, eps, Fused::NONE)
}

/// [`eval_forward`] followed by `fused` (ReLU, residual add).
#[allow(clippy::too_many_arguments)]
pub fn eval_forward_fused(
    x: &[f32],
    y: &mut [f32],
    dims: Dims,
    affine: Affine,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    fused: Fused,
) -> Result<()> {
    dims.check_channels("runningMean", running_mean.len())?;
    dims.check_channels("runningVar", running_var.len())?;
    check_eps(eps)?;
    let invstd: Vec<f32> = running_var.iter().map(|&v| inv_std(v as f64, eps)).collect();
    normalize_fused(x, y, dims, affine, running_mean, &invstd, fused)
}

fn check_backward(dy: &[f32], x: &[f32], dx: &[f32], dims: Dims, weight: Option<&[f32]>, mean: &[f32], invstd: &[f32]) -> Result<()> {
    dims.check_len("dy", dy.len())?;
    dims.check_len("x", x.len())?;
    dims.check_len("dx", dx.len())?;
    if let Some(w) = weight {
        dims.check_channels("weight", w.len())?;
    }
    dims.check_channels("mean", mean.len())?;
    dims.check_channels("invStd", invstd.len())
}

fn write_param_grads(sums: &GradSums, invstd: &[f32], dweight: Option<&mut [f32]>, dbias: Option<&mut [f32]>) {
    if let Some(dw) = dweight {
        for (c, g) in dw.iter_mut().enumerate() {
            *g = (sums.sum_dy_xmu[c] * invstd[c] as f64) as f32;
        }
    }
    if let Some(db) = dbias {
        for (g, s) in db.iter_mut().zip(&sums.sum_dy) {
            *g = *s as f32;
        }
    }
}

fn check_grad_outputs(dims: Dims, dweight: &Option<&mut [f32]>, dbias: &Option<&mut [f32]>) -> Result<()> {
    if let Some(d) = dweight {
        dims.check_channels("dWeight", d.len())?;
    }
    if let Some(d) = dbias {
        dims.check_channels("dBias", d.len())?;
    }
    Ok(())
}

/// Training-mode backward (batch statistics `mean`, `invstd` as saved by the forward pass).
/// Writes `dx`, and `dweight` / `dbias` when given.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
) -> Result<()> {
    backward_fused(dy, x, dx, dims, weight, mean, invstd, dweight, dbias, None)
}

/// [`backward`] through a fused ReLU (and residual add) when `relu` is given: the ReLU's
/// mask folded into the reduction and the `dx` pass; `dz` written in the `dx` pass.
#[allow(clippy::too_many_arguments)]
pub fn backward_fused(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
    relu: Option<ReluGrad>,
) -> Result<()> {
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    check_grad_outputs(dims, &dweight, &dbias)?;
    ReluGrad::check(&relu, dims)?;
    let sums = backward::grad_sums(dy, x, dims, mean, relu.as_ref().map(|r| r.gate));
    backward_apply_fused(dy, x, dx, dims, weight, mean, invstd, &sums, dims.per_channel() as f64, relu)?;
    write_param_grads(&sums, invstd, dweight, dbias);
    Ok(())
}

/// The elementwise half of the training backward, given per-channel sums over `count`
/// values (from [`backward::grad_sums`], possibly merged across shards).
#[allow(clippy::too_many_arguments)]
pub fn backward_apply(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    sums: &GradSums,
    count: f64,
) -> Result<()> {
    backward_apply_fused(dy, x, dx, dims, weight, mean, invstd, sums, count, None)
}

/// [`backward_apply`] through a fused ReLU when `relu` is given (the sums must have been
/// taken with the same gate).
#[allow(clippy::too_many_arguments)]
pub fn backward_apply_fused(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    sums: &GradSums,
    count: f64,
    relu: Option<ReluGrad>,
) -> Result<()> {
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    ReluGrad::check(&relu, dims)?;
    let (k, b, c0) = dx_coefficients(dims, weight, invstd, sums, count);
    let (gate, dz) = match relu {
        Some(r) => (Some(r.gate), r.dz),
        None => (None, None),
    };
    backward::dx_apply(dy, x, gate, dx, dz, dims, &k, mean, &b, &c0);
    Ok(())
}

/// The dx pass's per-channel `k`, `b`, `c` (`dx = g * k + (x - mean) * b + c`, see
/// [`backward`]) from the sums over `count` values.
fn dx_coefficients(dims: Dims, weight: Option<&[f32]>, invstd: &[f32], sums: &GradSums, count: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let ch = dims.channels;
    let (mut k, mut b, mut c0) = (vec![0f32; ch], vec![0f32; ch], vec![0f32; ch]);
    for c in 0..ch {
        let is = invstd[c] as f64;
        let kc = weight.map_or(1.0, |w| w[c] as f64) * is;
        k[c] = kc as f32;
        b[c] = (-kc * is * is * sums.sum_dy_xmu[c] / count) as f32;
        c0[c] = (-kc * sums.sum_dy[c] / count) as f32;
    }
    (k, b, c0)
}

/// [`backward_fused`] through a ReLU with a residual, its gradient `dz` written over `dy`:
/// `dy` is read by the sums, then element by element by the dx pass, which overwrites it
/// with `dz` (the gated `dy`). The same `dx`, `dz`, `dweight`, `dbias` as `backward_fused`
/// with a separate `dz`, bit for bit; `dz`'s lines are the ones just read, so the pass
/// writes one tensor less through the cache (no line is fetched to be overwritten).
#[allow(clippy::too_many_arguments)]
pub fn backward_fused_dz_over_dy(
    dy: &mut [f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
    gate: Gate,
) -> Result<()> {
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    check_grad_outputs(dims, &dweight, &dbias)?;
    check_gate(gate, dims)?;
    let sums = backward::grad_sums(dy, x, dims, mean, Some(gate));
    let (k, b, c0) = dx_coefficients(dims, weight, invstd, &sums, dims.per_channel() as f64);
    backward::dx_apply_dz_over_dy(dy, x, Some(gate), dx, dims, &k, mean, &b, &c0);
    write_param_grads(&sums, invstd, dweight, dbias);
    Ok(())
}

/// Eval-mode backward: the statistics are constants, so `dx = dy * gamma * invstd`;
/// `dweight = sum(dy * (x - mean)) * invstd`, `dbias = sum(dy)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_eval(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
) -> Result<()> {
    backward_eval_fused(dy, x, dx, dims, weight, mean, invstd, dweight, dbias, None)
}

/// [`backward_eval`] through a fused ReLU when `relu` is given.
#[allow(clippy::too_many_arguments)]
pub fn backward_eval_fused(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    dims: Dims,
    weight: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    dweight: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
    relu: Option<ReluGrad>,
) -> Result<()> {
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    check_grad_outputs(dims, &dweight, &dbias)?;
    ReluGrad::check(&relu, dims)?;
    let gate = relu.as_ref().map(|r| r.gate);
    if dweight.is_some() || dbias.is_some() {
        let sums = backward::grad_sums(dy, x, dims, mean, gate);
        write_param_grads(&sums, invstd, dweight, dbias);
    }
    // The elementwise pass gates by an output; a bit mask is unpacked into one (1 where the
    // ReLU passed, else 0: the same `g` as gating by `y`). The eval-mode backward through
    // a ReLU is the rare case (frozen statistics), so it gets the simple path, not a kernel.
    let unpacked = match gate {
        Some(Gate::Bits(b)) => Some(unpack_mask(b, dims)),
        _ => None,
    };
    let gate = match gate {
        Some(Gate::Output(y)) => Some(y),
        Some(Gate::Bits(_)) => unpacked.as_deref(),
        None => None,
    };
    let scale: Vec<f32> = (0..dims.channels).map(|c| invstd[c] * weight.map_or(1.0, |w| w[c])).collect();
    let zeros = vec![0f32; dims.channels];
    let fuse = || affine::Fuse { gate, add: None, relu: false, mask: None };
    affine::affine_per_channel(dy, dx, dims, &zeros, None, &scale, &zeros, fuse());
    if let Some(dz) = relu.and_then(|r| r.dz) {
        // dz = dy where y > 0: the same gated copy, with unit scale.
        let ones = vec![1f32; dims.channels];
        affine::affine_per_channel(dy, dz, dims, &zeros, None, &ones, &zeros, fuse());
    }
    Ok(())
}

/// A bit mask as an output-shaped gate: 1 where the bit is set, else 0.
fn unpack_mask(bits: &[u32], dims: Dims) -> Vec<f32> {
    let unit = mask::unit_len(dims);
    let wpu = mask::words_per_unit(dims);
    let mut g = vec![0f32; dims.len()];
    for (gu, words) in g.chunks_mut(unit).zip(bits.chunks(wpu)) {
        for (i, v) in gu.iter_mut().enumerate() {
            *v = ((words[i / 32] >> (i % 32)) & 1) as f32;
        }
    }
    g
}
