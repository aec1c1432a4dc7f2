//! wasm-bindgen exports of `batchnorm-core`.
//!
//! Tensors cross the boundary as *pointers into wasm memory* (byte offsets, `0` = absent),
//! never as copied slices: the TypeScript layer owns allocation (`alloc_f32`/`free_f32`),
//! keeps data resident for zero-copy calls, and validates shapes and lengths before it
//! calls in (it has the user-facing error types). The kernel crate re-checks what it can.

use batchnorm_core as bn;
use std::alloc::{alloc_zeroed, dealloc, Layout as AllocLayout};
use wasm_bindgen::prelude::*;

#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// 16-byte alignment so every f32x4 load of a tensor's body is aligned.
const ALIGN: usize = 16;

/// The layout of `len` f32s, or `None` when its byte size does not fit (wasm32's `usize`
/// is 32 bits and one allocation may not exceed `isize::MAX`).
fn layout_for(len: usize) -> Option<AllocLayout> {
    let bytes = len.max(1).checked_mul(4)?;
    AllocLayout::from_size_align(bytes, ALIGN).ok()
}

/// Allocates `len` zeroed f32s in wasm memory; returns the byte offset, or 0 when the
/// memory cannot hold them (the TypeScript layer turns 0 into an `OutOfMemoryError`).
/// Never traps: a failed allocation leaves the module as it was, usable.
#[wasm_bindgen]
pub fn alloc_f32(len: usize) -> usize {
    match layout_for(len) {
        // SAFETY: the layout has non-zero size.
        Some(layout) => unsafe { alloc_zeroed(layout) as usize },
        None => 0,
    }
}

/// Allocates `len` f32s without zeroing them: scratch that is fully written before it is
/// read (staged inputs, kernel outputs). Zeroing would be one more pass over the data.
/// Returns 0 when the memory cannot hold them, as `alloc_f32`.
#[wasm_bindgen]
pub fn alloc_f32_scratch(len: usize) -> usize {
    match layout_for(len) {
        // SAFETY: the layout has non-zero size.
        Some(layout) => unsafe { std::alloc::alloc(layout) as usize },
        None => 0,
    }
}

/// Frees memory from `alloc_f32(len)` or `alloc_f32_scratch(len)`.
#[wasm_bindgen]
pub fn free_f32(ptr: usize, len: usize) {
    let layout = layout_for(len).expect("free_f32: a length alloc_f32 could not have allocated");
    // SAFETY: the caller passes a pointer and length from alloc_f32, once.
    unsafe { dealloc(ptr as *mut u8, layout) }
}

/// Which flavour this binary is: "scalar", "simd" or "simd-threads".
#[wasm_bindgen]
pub fn build_name() -> String {
    let simd = cfg!(target_feature = "simd128");
    let threads = cfg!(feature = "threads");
    match (simd, threads) {
        (true, true) => "simd-threads",
        (true, false) => "simd",
        (false, true) => "scalar-threads",
        (false, false) => "scalar",
    }
    .to_string()
}

/// Tensors with fewer elements than this run single-threaded (threads build only).
#[wasm_bindgen]
pub fn set_min_parallel_elems(n: usize) {
    bn::parallel::set_min_parallel_elems(n);
}

#[wasm_bindgen]
pub fn min_parallel_elems() -> usize {
    bn::parallel::min_parallel_elems()
}

/// Threads rayon's pool has (1 in single-threaded builds).
#[wasm_bindgen]
pub fn thread_count() -> usize {
    bn::parallel::threads()
}

// SAFETY (for the three helpers below): the TypeScript caller guarantees that `ptr` is a
// live allocation of at least `len` f32s in this module's memory, and that no output
// overlaps any other argument (it rejects aliasing before calling).
unsafe fn view<'a>(ptr: usize, len: usize) -> &'a [f32] {
    std::slice::from_raw_parts(ptr as *const f32, len)
}
unsafe fn view_mut<'a>(ptr: usize, len: usize) -> &'a mut [f32] {
    std::slice::from_raw_parts_mut(ptr as *mut f32, len)
}
unsafe fn opt<'a>(ptr: usize, len: usize) -> Option<&'a [f32]> {
    (ptr != 0).then(|| view(ptr, len))
}
unsafe fn opt_mut<'a>(ptr: usize, len: usize) -> Option<&'a mut [f32]> {
    (ptr != 0).then(|| view_mut(ptr, len))
}

fn dims(outer: usize, channels: usize, inner: usize) -> bn::Dims {
    bn::Dims { outer, channels, inner }
}

/// Convention codes of the exports: 0 = PyTorch, 1 = ONNX.
fn convention_of(code: u8) -> bn::Convention {
    if code == 1 {
        bn::Convention::Onnx
    } else {
        bn::Convention::PyTorch
    }
}

/// Optional gamma/beta pointers (0 = absent) as the kernels' `Affine`.
unsafe fn affine<'a>(weight: usize, bias: usize, channels: usize) -> bn::Affine<'a> {
    bn::Affine { weight: opt(weight, channels), bias: opt(bias, channels) }
}

/// The `u32` words of a fused ReLU's bit mask at `ptr` (0 = none), as many as `d` implies.
unsafe fn mask_words<'a>(ptr: usize, d: bn::Dims) -> Option<&'a mut [u32]> {
    (ptr != 0).then(|| std::slice::from_raw_parts_mut(ptr as *mut u32, bn::passes::mask::mask_words(d)))
}

/// A fused activation from the exports' arguments: ReLU when `relu`, residual `z` when
/// non-zero, the bit mask `y > 0` written to `mask` when non-zero.
unsafe fn fused<'a>(relu: bool, z: usize, mask: usize, d: bn::Dims) -> bn::Fused<'a> {
    bn::Fused { relu, z: opt(z, d.len()), mask: mask_words(mask, d) }
}

/// Backward through a fused ReLU when `mask` (the forward's bit mask) or `y` (its output)
/// is non-zero, the mask first; `dz` written when non-zero.
unsafe fn relu_grad<'a>(y: usize, mask: usize, dz: usize, d: bn::Dims) -> Option<bn::ReluGrad<'a>> {
    gate(y, mask, d).map(|gate| bn::ReluGrad { gate, dz: opt_mut(dz, d.len()) })
}

unsafe fn gate<'a>(y: usize, mask: usize, d: bn::Dims) -> Option<bn::backward::Gate<'a>> {
    match mask_words(mask, d) {
        Some(m) => Some(bn::backward::Gate::Bits(m)),
        None => opt(y, d.len()).map(bn::backward::Gate::Output),
    }
}

/// Words of the fused ReLU's bit mask of a tensor `(outer, channels, inner)` (see
/// `batchnorm_core::passes::mask`): allocate them with `alloc_f32` (4 bytes each too).
#[wasm_bindgen]
pub fn relu_mask_words(outer: usize, channels: usize, inner: usize) -> usize {
    bn::passes::mask::mask_words(dims(outer, channels, inner))
}

fn js(e: bn::BnError) -> JsError {
    JsError::new(&e.to_string())
}

/// Training forward; `convention`: 0 = PyTorch, 1 = ONNX. Running stats are updated when
/// both pointers are non-zero. `relu` / `z` (0 = none): `y = relu(BN(x) + z)` in one pass.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn train_forward(
    x: usize,
    y: usize,
    outer: usize,
    channels: usize,
    inner: usize,
    weight: usize,
    bias: usize,
    running_mean: usize,
    running_var: usize,
    momentum: f32,
    convention: u8,
    eps: f32,
    save_mean: usize,
    save_invstd: usize,
    relu: bool,
    z: usize,
    mask: usize,
) -> Result<(), JsError> {
    let d = dims(outer, channels, inner);
    let n = d.len();
    unsafe {
        let running = match (opt_mut(running_mean, channels), opt_mut(running_var, channels)) {
            (Some(mean), Some(var)) => Some(bn::Running {
                mean,
                var,
                momentum,
                convention: convention_of(convention),
            }),
            _ => None,
        };
        bn::train_forward_fused(
            view(x, n),
            view_mut(y, n),
            d,
            affine(weight, bias, channels),
            running,
            eps,
            view_mut(save_mean, channels),
            view_mut(save_invstd, channels),
            fused(relu, z, mask, d),
        )
        .map_err(js)
    }
}

/// Inference forward; `relu` / `z` as in `train_forward`.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn eval_forward(
    x: usize,
    y: usize,
    outer: usize,
    channels: usize,
    inner: usize,
    weight: usize,
    bias: usize,
    running_mean: usize,
    running_var: usize,
    eps: f32,
    relu: bool,
    z: usize,
    mask: usize,
) -> Result<(), JsError> {
    let d = dims(outer, channels, inner);
    let n = d.len();
    unsafe {
        bn::eval_forward_fused(
            view(x, n),
            view_mut(y, n),
            d,
            affine(weight, bias, channels),
            view(running_mean, channels),
            view(running_var, channels),
            eps,
            fused(relu, z, mask, d),
        )
        .map_err(js)
    }
}

/// Backward. `training`: batch statistics (fused reductions) or constant statistics
/// (`dx = dy * gamma * invstd`). `dweight` / `dbias` are written when non-zero. Through a
/// fused ReLU when `mask` (the forward's bit mask) or `y` (its output) is non-zero; `dz`
/// (residual gradient) when non-zero. `dz` may be `dy` itself (then written over it, read
/// first): in training through a ReLU that saves the write of a separate tensor; otherwise
/// `dz` is computed aside and copied over `dy` (the eval-mode backward, and without a ReLU
/// `dz` is `dy` already).
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: usize,
    x: usize,
    dx: usize,
    outer: usize,
    channels: usize,
    inner: usize,
    weight: usize,
    mean: usize,
    invstd: usize,
    dweight: usize,
    dbias: usize,
    training: bool,
    y: usize,
    dz: usize,
    mask: usize,
) -> Result<(), JsError> {
    let d = dims(outer, channels, inner);
    let n = d.len();
    let over_dy = dz != 0 && dz == dy;
    unsafe {
        let (xs, dxs, w, m, is) = (view(x, n), view_mut(dx, n), opt(weight, channels), view(mean, channels), view(invstd, channels));
        let (dw, db) = (opt_mut(dweight, channels), opt_mut(dbias, channels));
        match gate(y, mask, d) {
            // dz over dy in training: the dx pass reads dy, then overwrites it.
            Some(g) if over_dy && training => bn::backward_fused_dz_over_dy(view_mut(dy, n), xs, dxs, d, w, m, is, dw, db, g).map_err(js),
            // dz over dy in eval mode: computed aside, then copied over dy.
            Some(g) if over_dy => {
                let mut aside = vec![0f32; n];
                let relu = bn::ReluGrad { gate: g, dz: Some(&mut aside) };
                bn::backward_eval_fused(view(dy, n), xs, dxs, d, w, m, is, dw, db, Some(relu)).map_err(js)?;
                view_mut(dy, n).copy_from_slice(&aside);
                Ok(())
            }
            // Otherwise a separate dz, if any (without a ReLU there is none to write: dz is dy).
            g => {
                let f = if training { bn::backward_fused } else { bn::backward_eval_fused };
                let relu = g.map(|gate| bn::ReluGrad { gate, dz: opt_mut(dz, n) });
                f(view(dy, n), xs, dxs, d, w, m, is, dw, db, relu).map_err(js)
            }
        }
    }
}

// ---- Pieces of the training step, for data-parallel (SyncBN) training -------------------
// A pool of workers, each holding a shard of the batch, runs: `moments` on each shard ->
// merge (Chan) -> `normalize_f64_mean` with the global statistics; `grad_sums` on each
// shard -> add -> `backward_apply` with the global sums. f64 vectors live in wasm memory
// as `alloc_f32(2 * len)` allocations.

unsafe fn view_f64<'a>(ptr: usize, len: usize) -> &'a [f64] {
    std::slice::from_raw_parts(ptr as *const f64, len)
}
unsafe fn view_f64_mut<'a>(ptr: usize, len: usize) -> &'a mut [f64] {
    std::slice::from_raw_parts_mut(ptr as *mut f64, len)
}

/// Per-channel mean and M2 of `x`, written as f64 `[mean_0..mean_C, m2_0..m2_C]` to `out`.
#[wasm_bindgen]
pub fn moments(x: usize, outer: usize, channels: usize, inner: usize, out: usize) {
    let d = dims(outer, channels, inner);
    unsafe {
        let m = bn::moments::moments(view(x, d.len()), d);
        let o = view_f64_mut(out, 2 * channels);
        for (c, mc) in m.iter().enumerate() {
            o[c] = mc.mean;
            o[channels + c] = mc.m2;
        }
    }
}

/// Merges the per-channel moments of `x`, one piece of a reduction segment (pieces in
/// order), into `state`: f64 `[count, mean, m2]` per channel of the piece, all zero to
/// start the segment. A segment's pieces give its moments as `moments` takes them, bit for
/// bit (see `moments::accumulate`; `moments_merge` combines the segments): the streamed
/// plain-array training forward.
#[wasm_bindgen]
pub fn moments_accumulate(x: usize, outer: usize, channels: usize, inner: usize, state: usize) {
    let d = dims(outer, channels, inner);
    unsafe {
        let s = view_f64_mut(state, 3 * channels);
        let mut acc = read_moments(s);
        bn::moments::accumulate(view(x, d.len()), d, &mut acc);
        write_moments(s, &acc);
    }
}

/// Merges a segment's moments state into the running total (both f64 `[count, mean, m2]`
/// per channel, the total all zero before the first segment), as `moments` combines its
/// segments.
#[wasm_bindgen]
pub fn moments_merge(total: usize, segment: usize, channels: usize) {
    unsafe {
        let seg = read_moments(view_f64(segment, 3 * channels));
        let t = view_f64_mut(total, 3 * channels);
        let merged: Vec<bn::Moments> = read_moments(t).into_iter().zip(seg).map(|(a, b)| a.merge(b)).collect();
        write_moments(t, &merged);
    }
}

fn read_moments(s: &[f64]) -> Vec<bn::Moments> {
    s.chunks_exact(3).map(|m| bn::Moments { count: m[0], mean: m[1], m2: m[2] }).collect()
}

fn write_moments(s: &mut [f64], m: &[bn::Moments]) {
    for (o, m) in s.chunks_exact_mut(3).zip(m) {
        o.copy_from_slice(&[m.count, m.mean, m.m2]);
    }
}

/// Outer units (samples, or channels-last rows) per reduction segment of a tensor of these
/// dims (`moments::segment_len`): `moments` and `grad_sums` combine segments in order, and
/// a stream reproduces them segment by segment.
#[wasm_bindgen]
pub fn reduction_segment_len(outer: usize, channels: usize, inner: usize) -> usize {
    bn::moments::segment_len(dims(outer, channels, inner))
}

/// Elements up to which the row kernels treat their data as cache-resident and take
/// channels-last rows four at a time (`passes::CACHED_ELEMS`): the streaming path's
/// windows are at most this long, and its chunks of resident tensors read in place longer.
#[wasm_bindgen]
pub fn cached_elems() -> usize {
    bn::passes::CACHED_ELEMS
}

/// Rows per moments block of channels-last data: a piece given to `moments_accumulate`
/// holds whole blocks.
#[wasm_bindgen]
pub fn moment_block_rows(channels: usize) -> usize {
    bn::moments::rows_per_block(channels)
}

/// `y = (x - mean) * invstd * weight + bias` with an f64 mean; `relu` / `z` as in `train_forward`.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn normalize_f64_mean(
    x: usize,
    y: usize,
    outer: usize,
    channels: usize,
    inner: usize,
    weight: usize,
    bias: usize,
    mean_f64: usize,
    invstd: usize,
    relu: bool,
    z: usize,
    mask: usize,
) -> Result<(), JsError> {
    let d = dims(outer, channels, inner);
    let n = d.len();
    unsafe {
        bn::normalize_f64_mean(
            view(x, n),
            view_mut(y, n),
            d,
            affine(weight, bias, channels),
            view_f64(mean_f64, channels),
            view(invstd, channels),
            fused(relu, z, mask, d),
        )
        .map_err(js)
    }
}

/// Per-channel `sum(dy)` and `sum(dy * (x - mean))`, written as f64 `[sum_dy.., sum_dy_xmu..]`;
/// `dy` masked by a fused ReLU's bit mask or output `y > 0` when `mask` or `y` is non-zero.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn grad_sums(dy: usize, x: usize, outer: usize, channels: usize, inner: usize, mean: usize, out: usize, y: usize, mask: usize) {
    let d = dims(outer, channels, inner);
    unsafe {
        let s = bn::backward::grad_sums(view(dy, d.len()), view(x, d.len()), d, view(mean, channels), gate(y, mask, d));
        let o = view_f64_mut(out, 2 * channels);
        o[..channels].copy_from_slice(&s.sum_dy);
        o[channels..].copy_from_slice(&s.sum_dy_xmu);
    }
}

/// Feeds a piece of `dy` and `x`, one of a reduction segment's pieces in order (`y` gates
/// `dy` when non-zero, as in `grad_sums`), into `state`, `grad_sums_state_len()` f64s per
/// channel of the piece, all zero to start the segment (see
/// `backward::grad_sums_accumulate`): the streamed plain-array backward.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn grad_sums_accumulate(dy: usize, x: usize, outer: usize, channels: usize, inner: usize, mean: usize, state: usize, y: usize) {
    let d = dims(outer, channels, inner);
    unsafe {
        let st = view_f64_mut(state, bn::backward::GRAD_STATE * channels);
        bn::backward::grad_sums_accumulate(view(dy, d.len()), view(x, d.len()), opt(y, d.len()), d, view(mean, channels), st);
    }
}

/// f64 slots per channel of a `grad_sums_accumulate` state.
#[wasm_bindgen]
pub fn grad_sums_state_len() -> usize {
    bn::backward::GRAD_STATE
}

/// The sums of a `grad_sums_accumulate` state over one segment of tensors of these dims,
/// written as `grad_sums` writes them: f64 `[sum_dy.., sum_dy_xmu..]`. The segments' sums
/// added in order from zero are `grad_sums` of the whole.
#[wasm_bindgen]
pub fn grad_sums_finish(state: usize, outer: usize, channels: usize, inner: usize, mean: usize, out: usize) {
    let d = dims(outer, channels, inner);
    unsafe {
        let s = bn::backward::grad_sums_finish(view_f64(state, bn::backward::GRAD_STATE * channels), d, view(mean, channels));
        let o = view_f64_mut(out, 2 * channels);
        o[..channels].copy_from_slice(&s.sum_dy);
        o[channels..].copy_from_slice(&s.sum_dy_xmu);
    }
}

/// The elementwise half of the training backward, from global sums over `count` values;
/// through a fused ReLU when `mask` or `y` is non-zero, writing `dz` when non-zero.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn backward_apply(
    dy: usize,
    x: usize,
    dx: usize,
    outer: usize,
    channels: usize,
    inner: usize,
    weight: usize,
    mean: usize,
    invstd: usize,
    sums: usize,
    count: f64,
    y: usize,
    dz: usize,
    mask: usize,
) -> Result<(), JsError> {
    let d = dims(outer, channels, inner);
    let n = d.len();
    unsafe {
        let s = view_f64(sums, 2 * channels);
        let sums = bn::GradSums { sum_dy: s[..channels].to_vec(), sum_dy_xmu: s[channels..].to_vec() };
        let (w, m, is) = (opt(weight, channels), view(mean, channels), view(invstd, channels));
        bn::backward_apply_fused(view(dy, n), view(x, n), view_mut(dx, n), d, w, m, is, &sums, count, relu_grad(y, mask, dz, d)).map_err(js)
    }
}

/// Updates running statistics in place from batch statistics over `count` values per
/// channel (f64 `[mean.., m2..]`, e.g. merged across shards).
#[wasm_bindgen]
pub fn update_running(running_mean: usize, running_var: usize, channels: usize, stats: usize, count: f64, momentum: f32, convention: u8) {
    unsafe {
        let s = view_f64(stats, 2 * channels);
        let m: Vec<bn::Moments> = (0..channels).map(|c| bn::Moments { count, mean: s[c], m2: s[channels + c] }).collect();
        bn::running::update(view_mut(running_mean, channels), view_mut(running_var, channels), &m, momentum, convention_of(convention));
    }
}

// ---- The per-sample normalisation layers (batchnorm_core::norms) ------------------------

fn stat_of(rms: bool) -> bn::norms::Stat {
    if rms {
        bn::norms::Stat::MeanSquare
    } else {
        bn::norms::Stat::Centered
    }
}

/// LayerNorm (`rms = false`) or RMSNorm (`rms = true`) forward over `rows` rows of `len`:
/// writes `y` and per-row `mean` (0 for RMSNorm) and `invstd`. `weight` / `bias`: 0 = none.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn rows_forward(x: usize, y: usize, rows: usize, len: usize, weight: usize, bias: usize, eps: f32, rms: bool, mean: usize, invstd: usize) -> Result<(), JsError> {
    let r = bn::norms::Rows::new(rows, len).map_err(js)?;
    let n = rows * len;
    unsafe {
        bn::norms::rows_forward(view(x, n), view_mut(y, n), r, opt(weight, len), opt(bias, len), eps, stat_of(rms), view_mut(mean, rows), view_mut(invstd, rows))
            .map_err(js)
    }
}

/// Backward of `rows_forward`: writes `dx`, and `dweight` / `dbias` when non-zero.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn rows_backward(dy: usize, x: usize, dx: usize, rows: usize, len: usize, weight: usize, mean: usize, invstd: usize, rms: bool, dweight: usize, dbias: usize) -> Result<(), JsError> {
    let r = bn::norms::Rows::new(rows, len).map_err(js)?;
    let n = rows * len;
    unsafe {
        bn::norms::rows_backward(
            view(dy, n),
            view(x, n),
            view_mut(dx, n),
            r,
            opt(weight, len),
            view(mean, rows),
            view(invstd, rows),
            stat_of(rms),
            opt_mut(dweight, len),
            opt_mut(dbias, len),
        )
        .map_err(js)
    }
}

fn groups_of(n: usize, channels: usize, spatial: usize, groups: usize, channels_last: bool) -> Result<bn::norms::Groups, JsError> {
    let layout = if channels_last { bn::Layout::ChannelsLast } else { bn::Layout::ChannelsFirst };
    bn::norms::Groups::new(n, channels, spatial, groups, layout).map_err(js)
}

/// GroupNorm / InstanceNorm forward on `(N, C, S)` or `(N, S, C)`: writes `y` and the
/// per-(n, g) `mean` / `invstd`; updates InstanceNorm's per-channel running statistics
/// when both pointers are non-zero.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn groups_forward(
    x: usize,
    y: usize,
    n: usize,
    channels: usize,
    spatial: usize,
    groups: usize,
    channels_last: bool,
    weight: usize,
    bias: usize,
    eps: f32,
    mean: usize,
    invstd: usize,
    running_mean: usize,
    running_var: usize,
    momentum: f32,
) -> Result<(), JsError> {
    let g = groups_of(n, channels, spatial, groups, channels_last)?;
    let len = g.len();
    unsafe {
        let running = match (opt_mut(running_mean, channels), opt_mut(running_var, channels)) {
            (Some(mean), Some(var)) => Some(bn::norms::InstanceRunning { mean, var, momentum }),
            _ => None,
        };
        bn::norms::groups_forward(
            view(x, len),
            view_mut(y, len),
            g,
            opt(weight, channels),
            opt(bias, channels),
            eps,
            view_mut(mean, g.stats()),
            view_mut(invstd, g.stats()),
            running,
        )
        .map_err(js)
    }
}

/// Backward of `groups_forward`: writes `dx`, and `dweight` / `dbias` when non-zero.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn groups_backward(
    dy: usize,
    x: usize,
    dx: usize,
    n: usize,
    channels: usize,
    spatial: usize,
    groups: usize,
    channels_last: bool,
    weight: usize,
    mean: usize,
    invstd: usize,
    dweight: usize,
    dbias: usize,
) -> Result<(), JsError> {
    let g = groups_of(n, channels, spatial, groups, channels_last)?;
    let len = g.len();
    unsafe {
        bn::norms::groups_backward(
            view(dy, len),
            view(x, len),
            view_mut(dx, len),
            g,
            opt(weight, channels),
            view(mean, g.stats()),
            view(invstd, g.stats()),
            opt_mut(dweight, channels),
            opt_mut(dbias, channels),
        )
        .map_err(js)
    }
}
