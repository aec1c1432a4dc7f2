//! Batch Normalization kernels (Ioffe & Szegedy 2015) on f32 data.
//!
//! Pure Rust, no wasm dependencies: `cargo test` runs natively. The `batchnorm-wasm` crate
//! exports these to JavaScript. Layouts: channels-first `(N, C, ...)` and channels-last
//! `(N, ..., C)` at any rank >= 2, both reduced to [`Dims`]. Every public function checks
//! all of its inputs before it writes anything, so a rejected call changes no state.
//!
//! Module map: [`moments`] (batch statistics, one read), [`affine`] (the elementwise
//! forward kernel), [`backward`] (fused reductions and `dx`), [`running`] (moving
//! averages), [`simd`] (the f32x4 type), [`parallel`] (rayon or not).

pub mod affine;
pub mod backward;
mod dims;
mod error;
pub mod moments;
pub mod parallel;
pub mod running;
pub mod simd;

pub use backward::GradSums;
pub use dims::{Dims, Layout};
pub use error::{BnError, Result};
pub use moments::Moments;
pub use running::Convention;

/// Optional affine parameters; `None` means gamma = 1 / beta = 0 (`affine: false`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Affine<'a> {
    pub weight: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
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
    normalize_split(x, y, dims, affine, &hi, Some(&lo), save_invstd);
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
    check_normalize(x, y, dims, affine, mean.len(), invstd.len())?;
    normalize_split(x, y, dims, affine, mean, None, invstd);
    Ok(())
}

/// [`normalize`] with an f64 mean (e.g. merged from several shards' [`Moments`]): the mean
/// is applied as two f32s, so outputs do not inherit the f32 rounding of the mean.
pub fn normalize_f64_mean(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f64], invstd: &[f32]) -> Result<()> {
    check_normalize(x, y, dims, affine, mean.len(), invstd.len())?;
    let (hi, lo) = split_mean(mean.iter().copied());
    normalize_split(x, y, dims, affine, &hi, Some(&lo), invstd);
    Ok(())
}

/// `normalize` after validation, with an optional low part of the mean.
fn normalize_split(x: &[f32], y: &mut [f32], dims: Dims, affine: Affine, mean: &[f32], mean_lo: Option<&[f32]>, invstd: &[f32]) {
    // gamma * invstd in f64, rounded once.
    let scale: Vec<f32> =
        (0..dims.channels).map(|c| (invstd[c] as f64 * affine.weight.map_or(1.0, |w| w[c] as f64)) as f32).collect();
    let offset: Vec<f32> = (0..dims.channels).map(|c| affine.bias.map_or(0.0, |b| b[c])).collect();
    affine::affine_per_channel(x, y, dims, mean, mean_lo, &scale, &offset);
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
    dims.check_channels("runningMean", running_mean.len())?;
    dims.check_channels("runningVar", running_var.len())?;
    check_eps(eps)?;
    let invstd: Vec<f32> = running_var.iter().map(|&v| inv_std(v as f64, eps)).collect();
    normalize(x, y, dims, affine, running_mean, &invstd)
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
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    check_grad_outputs(dims, &dweight, &dbias)?;
    let sums = backward::grad_sums(dy, x, dims, mean);
    backward_apply(dy, x, dx, dims, weight, mean, invstd, &sums, dims.per_channel() as f64)?;
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
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    let ch = dims.channels;
    let (mut k, mut b, mut c0) = (vec![0f32; ch], vec![0f32; ch], vec![0f32; ch]);
    for c in 0..ch {
        let is = invstd[c] as f64;
        let kc = weight.map_or(1.0, |w| w[c] as f64) * is;
        k[c] = kc as f32;
        b[c] = (-kc * is * is * sums.sum_dy_xmu[c] / count) as f32;
        c0[c] = (-kc * sums.sum_dy[c] / count) as f32;
    }
    backward::dx_apply(dy, x, dx, dims, &k, mean, &b, &c0);
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
    check_backward(dy, x, dx, dims, weight, mean, invstd)?;
    check_grad_outputs(dims, &dweight, &dbias)?;
    if dweight.is_some() || dbias.is_some() {
        let sums = backward::grad_sums(dy, x, dims, mean);
        write_param_grads(&sums, invstd, dweight, dbias);
    }
    let scale: Vec<f32> = (0..dims.channels).map(|c| invstd[c] * weight.map_or(1.0, |w| w[c])).collect();
    let zeros = vec![0f32; dims.channels];
    affine::affine_per_channel(dy, dx, dims, &zeros, None, &scale, &zeros);
    Ok(())
}
