//! Shared test support: a deterministic PRNG, an explicit view of a tensor's shape, and an
//! independent float64 reference implementation of Batch Normalization written straight
//! from the definitions (Ioffe & Szegedy 2015; PyTorch / ONNX running-stat conventions).
//!
//! Nothing here calls or mirrors the crate's kernels: the reference walks every value of a
//! channel through explicit `(n, c, spatial...)` multi-indices and row-major strides of the
//! full shape, takes two-pass mean / variance in f64, and computes the backward pass from
//! the textbook formula
//!     dx = (gamma * invstd / m) * (m * dy - sum(dy) - xhat * sum(dy * xhat)).
//! The only things used from the crate are its public types (`Layout`, `Convention`,
//! `Dims`) to call it.

#![allow(dead_code)]
// `!(a <= b)` on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use batchnorm_core::{Convention, Dims, Layout};

// ---------------------------------------------------------------------------------------
// PRNG: SplitMix64 + Box-Muller. Deterministic, no dependencies.
// ---------------------------------------------------------------------------------------

pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed ^ 0x853c_49e6_748f_ea9b, spare: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box-Muller, both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    pub fn normal_vec(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n).map(|_| (mean + std * self.normal()) as f32).collect()
    }

    pub fn uniform_vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi) as f32).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------

/// A full tensor shape with its layout, indexed by explicit multi-indices.
#[derive(Debug, Clone)]
pub struct Shape {
    pub dims: Vec<usize>,
    pub layout: Layout,
}

impl Shape {
    pub fn new(dims: &[usize], layout: Layout) -> Self {
        assert!(dims.len() >= 2);
        Shape { dims: dims.to_vec(), layout }
    }

    pub fn cf(dims: &[usize]) -> Self {
        Shape::new(dims, Layout::ChannelsFirst)
    }

    pub fn cl(dims: &[usize]) -> Self {
        Shape::new(dims, Layout::ChannelsLast)
    }

    /// The crate's view of this shape.
    pub fn bn_dims(&self) -> Dims {
        Dims::new(&self.dims, self.layout).expect("valid shape")
    }

    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn batch(&self) -> usize {
        self.dims[0]
    }

    pub fn channels(&self) -> usize {
        match self.layout {
            Layout::ChannelsFirst => self.dims[1],
            Layout::ChannelsLast => self.dims[self.dims.len() - 1],
        }
    }

    /// The spatial extents, in order.
    pub fn spatial(&self) -> &[usize] {
        match self.layout {
            Layout::ChannelsFirst => &self.dims[2..],
            Layout::ChannelsLast => &self.dims[1..self.dims.len() - 1],
        }
    }

    /// Values per channel (N * prod(spatial)).
    pub fn count(&self) -> usize {
        self.batch() * self.spatial().iter().product::<usize>()
    }

    /// Row-major strides of the full shape.
    fn strides(&self) -> Vec<usize> {
        let mut st = vec![1usize; self.dims.len()];
        for i in (0..self.dims.len() - 1).rev() {
            st[i] = st[i + 1] * self.dims[i + 1];
        }
        st
    }

    /// Flat offset of element (n, c, spatial multi-index).
    pub fn offset(&self, n: usize, c: usize, sp: &[usize]) -> usize {
        let st = self.strides();
        let r = self.dims.len();
        assert_eq!(sp.len(), r - 2);
        assert!(n < self.dims[0] && c < self.channels());
        let mut full = Vec::with_capacity(r);
        match self.layout {
            Layout::ChannelsFirst => {
                full.push(n);
                full.push(c);
                full.extend_from_slice(sp);
            }
            Layout::ChannelsLast => {
                full.push(n);
                full.extend_from_slice(sp);
                full.push(c);
            }
        }
        full.iter()
            .zip(&st)
            .zip(&self.dims)
            .map(|((&i, &s), &d)| {
                assert!(i < d);
                i * s
            })
            .sum()
    }

    /// Offsets of every value of channel `c`: explicit loops over n and over every spatial
    /// multi-index (decoded from a running counter, last spatial axis fastest).
    pub fn channel_offsets(&self, c: usize) -> Vec<usize> {
        let sp_dims = self.spatial().to_vec();
        let sp_total: usize = sp_dims.iter().product();
        let mut out = Vec::with_capacity(self.count());
        let mut sp = vec![0usize; sp_dims.len()];
        for n in 0..self.batch() {
            for flat in 0..sp_total {
                let mut rem = flat;
                for k in (0..sp_dims.len()).rev() {
                    sp[k] = rem % sp_dims[k];
                    rem /= sp_dims[k];
                }
                out.push(self.offset(n, c, &sp));
            }
        }
        out
    }

    /// All channels' offsets.
    pub fn all_offsets(&self) -> Vec<Vec<usize>> {
        (0..self.channels()).map(|c| self.channel_offsets(c)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// f64 reference
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RefStats {
    pub mean: Vec<f64>,
    /// Biased (population) variance.
    pub var: Vec<f64>,
    pub count: usize,
}

/// Two-pass mean and biased variance per channel, in f64.
pub fn ref_stats(x: &[f32], sh: &Shape) -> RefStats {
    assert_eq!(x.len(), sh.len());
    let mut mean = Vec::new();
    let mut var = Vec::new();
    for offs in sh.all_offsets() {
        let m = offs.len() as f64;
        let mu = offs.iter().map(|&o| x[o] as f64).sum::<f64>() / m;
        let v = offs.iter().map(|&o| (x[o] as f64 - mu).powi(2)).sum::<f64>() / m;
        mean.push(mu);
        var.push(v);
    }
    RefStats { mean, var, count: sh.count() }
}

pub fn ref_invstd(var: &[f64], eps: f64) -> Vec<f64> {
    var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect()
}

fn param(p: Option<&[f32]>, c: usize, default: f64) -> f64 {
    p.map_or(default, |v| v[c] as f64)
}

/// y = (x - mean) * invstd * gamma + beta, all in f64.
pub fn ref_normalize(
    x: &[f32],
    sh: &Shape,
    mean: &[f64],
    invstd: &[f64],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> Vec<f64> {
    let mut y = vec![f64::NAN; sh.len()];
    for (c, offs) in sh.all_offsets().iter().enumerate() {
        let (g, b) = (param(gamma, c, 1.0), param(beta, c, 0.0));
        for &o in offs {
            y[o] = (x[o] as f64 - mean[c]) * invstd[c] * g + b;
        }
    }
    assert!(y.iter().all(|v| !v.is_nan()), "reference did not cover every element");
    y
}

pub struct RefTrain {
    pub y: Vec<f64>,
    pub stats: RefStats,
    pub invstd: Vec<f64>,
}

pub fn ref_train_forward(x: &[f32], sh: &Shape, gamma: Option<&[f32]>, beta: Option<&[f32]>, eps: f64) -> RefTrain {
    let stats = ref_stats(x, sh);
    let invstd = ref_invstd(&stats.var, eps);
    let y = ref_normalize(x, sh, &stats.mean, &invstd, gamma, beta);
    RefTrain { y, stats, invstd }
}

pub fn ref_eval_forward(
    x: &[f32],
    sh: &Shape,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
) -> Vec<f64> {
    let mean: Vec<f64> = running_mean.iter().map(|&v| v as f64).collect();
    let var: Vec<f64> = running_var.iter().map(|&v| v as f64).collect();
    ref_normalize(x, sh, &mean, &ref_invstd(&var, eps), gamma, beta)
}

/// Running statistics after one update.
/// PyTorch: new = (1 - m) * old + m * batch, unbiased batch variance.
/// ONNX:    new = m * old + (1 - m) * batch, biased batch variance.
pub fn ref_running(
    old_mean: &[f32],
    old_var: &[f32],
    stats: &RefStats,
    momentum: f64,
    conv: Convention,
) -> (Vec<f64>, Vec<f64>) {
    let n = stats.count as f64;
    let mut rm = Vec::new();
    let mut rv = Vec::new();
    for c in 0..old_mean.len() {
        let (om, ov) = (old_mean[c] as f64, old_var[c] as f64);
        match conv {
            Convention::PyTorch => {
                let unbiased = stats.var[c] * n / (n - 1.0);
                rm.push((1.0 - momentum) * om + momentum * stats.mean[c]);
                rv.push((1.0 - momentum) * ov + momentum * unbiased);
            }
            Convention::Onnx => {
                rm.push(momentum * om + (1.0 - momentum) * stats.mean[c]);
                rv.push(momentum * ov + (1.0 - momentum) * stats.var[c]);
            }
        }
    }
    (rm, rv)
}

pub struct RefGrads {
    pub dx: Vec<f64>,
    pub dweight: Vec<f64>,
    pub dbias: Vec<f64>,
    /// Per channel, the 2-norm of the terms summed into dweight / dbias: the natural scale of
    /// the rounding error of any f32 summation of them.
    pub dweight_scale: Vec<f64>,
    pub dbias_scale: Vec<f64>,
    /// Per channel, max |gamma * invstd * dy|: the scale of the terms of dx.
    pub dx_scale: Vec<f64>,
}

/// Training-mode backward from the textbook formulas, with the given statistics:
///   xhat = (x - mean) * invstd
///   dbeta = sum(dy), dgamma = sum(dy * xhat)
///   dx = (gamma * invstd / m) * (m * dy - sum(dy) - xhat * sum(dy * xhat))
pub fn ref_backward_train(
    dy: &[f32],
    x: &[f32],
    sh: &Shape,
    gamma: Option<&[f32]>,
    mean: &[f64],
    invstd: &[f64],
) -> RefGrads {
    let mut dx = vec![f64::NAN; sh.len()];
    let ch = sh.channels();
    let mut g = RefGrads {
        dx: Vec::new(),
        dweight: vec![0.0; ch],
        dbias: vec![0.0; ch],
        dweight_scale: vec![0.0; ch],
        dbias_scale: vec![0.0; ch],
        dx_scale: vec![0.0; ch],
    };
    for (c, offs) in sh.all_offsets().iter().enumerate() {
        let m = offs.len() as f64;
        let gam = param(gamma, c, 1.0);
        let xhat = |o: usize| (x[o] as f64 - mean[c]) * invstd[c];
        let sum_dy: f64 = offs.iter().map(|&o| dy[o] as f64).sum();
        let sum_dy_xhat: f64 = offs.iter().map(|&o| dy[o] as f64 * xhat(o)).sum();
        for &o in offs {
            dx[o] = gam * invstd[c] / m * (m * dy[o] as f64 - sum_dy - xhat(o) * sum_dy_xhat);
        }
        g.dweight[c] = sum_dy_xhat;
        g.dbias[c] = sum_dy;
        g.dweight_scale[c] = offs.iter().map(|&o| (dy[o] as f64 * xhat(o)).powi(2)).sum::<f64>().sqrt();
        g.dbias_scale[c] = offs.iter().map(|&o| (dy[o] as f64).powi(2)).sum::<f64>().sqrt();
        g.dx_scale[c] = offs.iter().map(|&o| (gam * invstd[c] * dy[o] as f64).abs()).fold(0.0, f64::max);
    }
    assert!(dx.iter().all(|v| !v.is_nan()));
    g.dx = dx;
    g
}

/// Eval-mode backward (statistics are constants):
///   dx = dy * gamma * invstd, dgamma = sum(dy * (x - mean)) * invstd, dbeta = sum(dy).
pub fn ref_backward_eval(
    dy: &[f32],
    x: &[f32],
    sh: &Shape,
    gamma: Option<&[f32]>,
    mean: &[f64],
    invstd: &[f64],
) -> RefGrads {
    let mut dx = vec![f64::NAN; sh.len()];
    let ch = sh.channels();
    let mut g = RefGrads {
        dx: Vec::new(),
        dweight: vec![0.0; ch],
        dbias: vec![0.0; ch],
        dweight_scale: vec![0.0; ch],
        dbias_scale: vec![0.0; ch],
        dx_scale: vec![0.0; ch],
    };
    for (c, offs) in sh.all_offsets().iter().enumerate() {
        let gam = param(gamma, c, 1.0);
        let mut s_dy = 0.0;
        let mut s_dxm = 0.0;
        for &o in offs {
            let d = dy[o] as f64;
            dx[o] = d * gam * invstd[c];
            s_dy += d;
            s_dxm += d * (x[o] as f64 - mean[c]);
            g.dweight_scale[c] += (d * (x[o] as f64 - mean[c]) * invstd[c]).powi(2);
            g.dbias_scale[c] += d * d;
            g.dx_scale[c] = f64::max(g.dx_scale[c], (d * gam * invstd[c]).abs());
        }
        g.dweight[c] = s_dxm * invstd[c];
        g.dbias[c] = s_dy;
        g.dweight_scale[c] = g.dweight_scale[c].sqrt();
        g.dbias_scale[c] = g.dbias_scale[c].sqrt();
    }
    assert!(dx.iter().all(|v| !v.is_nan()));
    g.dx = dx;
    g
}

// ---------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------

/// Asserts |got - want| <= rtol * |want| + atol_i element by element; on failure reports the
/// first offending index and the worst ratio of error to tolerance.
pub fn assert_close_by(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    let mut first_bad = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs() + atol(i);
        let err = (g as f64 - w).abs();
        let ratio = if err == 0.0 { 0.0 } else { err / tol };
        if !(err <= tol) {
            first_bad.get_or_insert((i, g, w, err, tol));
        }
        if ratio > worst.0 || ratio.is_nan() {
            worst = (ratio, i);
        }
    }
    if let Some((i, g, w, err, tol)) = first_bad {
        panic!(
            "{what}: element {i}: got {g:e}, want {w:e} (err {err:e} > tol {tol:e}); worst err/tol {:.3} at {}",
            worst.0, worst.1
        );
    }
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_close_by(what, got, want, rtol, |_| atol);
}

/// Largest |got - want| / (rtol * |want| + atol) over the slices (for reporting margins);
/// infinite where either side is NaN or infinite (`f64::max` alone would drop a NaN).
pub fn worst_ratio(got: &[f32], want: &[f64], rtol: f64, atol: f64) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let r = (g as f64 - w).abs() / (rtol * w.abs() + atol);
            if r.is_finite() { r } else { f64::INFINITY }
        })
        .fold(0.0, f64::max)
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// x with per-channel offset and spread: x[c] = mu_c + sd_c * N(0, 1), mu_c in [-2, 2],
/// sd_c in [0.5, 2].
pub fn channel_data(rng: &mut Rng, sh: &Shape) -> Vec<f32> {
    let ch = sh.channels();
    let mus: Vec<f64> = (0..ch).map(|_| rng.range(-2.0, 2.0)).collect();
    let sds: Vec<f64> = (0..ch).map(|_| rng.range(0.5, 2.0)).collect();
    let mut x = vec![0f32; sh.len()];
    for (c, offs) in sh.all_offsets().iter().enumerate() {
        for &o in offs {
            x[o] = (mus[c] + sds[c] * rng.normal()) as f32;
        }
    }
    x
}

/// Runs `f` on a dedicated 4-thread rayon pool so that, with the `parallel` feature, the
/// parallel kernels run (and split work several ways) even on a machine with few cores.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // The default threshold (2^20 elements) would keep these test shapes single-threaded.
    batchnorm_core::parallel::set_min_parallel_elems(TEST_MIN_PARALLEL_ELEMS);
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap()).install(f)
}

/// Test shapes: ranks 2-5, both layouts, channel counts 1, 3, 5, 17 (and others), spatial
/// sizes that are not multiples of 4 / 8 (SIMD tails), and channels-first `inner == 1`.
pub fn small_shapes() -> Vec<Shape> {
    let cf: &[&[usize]] = &[
        // rank 2: channels-first with inner == 1 (interleaved channels)
        &[2, 1],
        &[7, 3],
        &[5, 17],
        &[33, 5],
        &[9, 8],
        // rank 3
        &[2, 3, 7],
        &[4, 1, 5],
        &[3, 17, 1],
        &[2, 5, 13],
        &[3, 4, 9],
        &[1, 3, 2],
        &[2, 2, 2053], // plane just over one 2048 block, odd tail
        // rank 4
        &[2, 3, 5, 7],
        &[1, 5, 3, 3],
        &[3, 17, 2, 3],
        &[4, 3, 1, 1],
        &[2, 1, 1, 1],
        &[2, 6, 11, 1],
        // rank 5
        &[2, 3, 3, 5, 7],
        &[1, 5, 2, 3, 3],
        &[2, 17, 1, 2, 3],
        &[3, 1, 2, 1, 5],
    ];
    let cl: &[&[usize]] = &[
        // rank 2
        &[2, 1],
        &[7, 3],
        &[5, 17],
        &[33, 5],
        &[9, 8],
        // rank 3
        &[2, 7, 3],
        &[4, 5, 1],
        &[3, 1, 17],
        &[2, 13, 5],
        &[1, 2, 3],
        &[5, 9, 33],
        &[3, 1031, 2], // several 16-row blocks (ch 2: 2048 rows a block) with a partial one
        &[1, 4100, 1], // ch 1: > one 4096-row block
        &[5, 96],      // the widest rows the row kernels still take in pairs (`rows_together`)
        &[2, 3, 97],   // ... and the narrowest they take one at a time
        &[3, 5, 130],  // one at a time, 130 % 4 = 2, five mask words a row
        // rank 4
        &[2, 5, 7, 3],
        &[1, 3, 3, 5],
        &[3, 2, 3, 17],
        &[4, 1, 1, 3],
        &[2, 1, 1, 1],
        &[2, 3, 3, 6],
        // rank 5
        &[2, 3, 5, 7, 3],
        &[1, 2, 3, 3, 5],
        &[2, 1, 2, 3, 17],
        &[3, 2, 1, 5, 1],
    ];
    cf.iter().map(|d| Shape::cf(d)).chain(cl.iter().map(|d| Shape::cl(d))).collect()
}

/// Parallel threshold the tests set, so that `large_shapes` reach the rayon paths.
pub const TEST_MIN_PARALLEL_ELEMS: usize = 1 << 16;

/// Shapes above the tests' parallel threshold, both layouts, odd sizes.
pub fn large_shapes() -> Vec<Shape> {
    vec![
        Shape::cf(&[8, 3, 67, 53]),    // 85,224: planes of 3551 (> one 2048 block)
        Shape::cf(&[300, 17, 13]),     // 66,300: many tiny planes per task
        Shape::cf(&[70001, 3]),        // 210,003: channels-first with inner == 1
        Shape::cf(&[2, 2, 40001]),     // 160,004: long planes, odd tail
        Shape::cf(&[3, 5, 7, 11, 61]), // 70,455: rank 5
        Shape::cl(&[4, 41, 43, 13]),   // 91,676
        Shape::cl(&[2, 9, 9, 9, 61]),  // 88,938: rank 5
        Shape::cl(&[100003, 1]),       // 100,003: one channel
        Shape::cl(&[5, 2731, 5]),      // 68,275
        Shape::cl(&[7, 9, 11, 131]),   // 90,783
        // Above `CACHED_ELEMS` (main-memory data, `rows_together`): rows in pairs (<= 96
        // channels), and one at a time (> 96 channels).
        Shape::cl(&[4, 61, 67, 17]),   // 277,916
        Shape::cl(&[5, 19, 23, 131]),  // 286,235
    ]
}
