//! Forward passes against the independent f64 reference (tests/common): training forward
//! (y, saved mean / invstd, running statistics in both conventions), eval forward and
//! `normalize`, affine on / off, both layouts, ranks 2-5, small odd sizes and sizes above
//! the parallel threshold.

// Offsets are written out as `n * stride + ...` on purpose, `1 * 12` included.
#![allow(clippy::identity_op, clippy::explicit_counter_loop)]

mod common;

use batchnorm_core::{eval_forward, normalize, parallel, train_forward, Affine, Convention, Running};
use common::*;

/// f32 outputs of unit scale.
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

#[derive(Clone, Copy, Debug)]
enum AffineKind {
    Both,
    None,
    WeightOnly,
    BiasOnly,
}

const AFFINE_KINDS: [AffineKind; 4] =
    [AffineKind::Both, AffineKind::None, AffineKind::WeightOnly, AffineKind::BiasOnly];

fn params(rng: &mut Rng, ch: usize) -> (Vec<f32>, Vec<f32>) {
    // gamma with both signs, away from 0; beta of unit scale
    let gamma = (0..ch)
        .map(|_| {
            let g = rng.range(0.5, 1.5);
            (if rng.uniform() < 0.25 { -g } else { g }) as f32
        })
        .collect();
    let beta = rng.normal_vec(ch, 0.0, 1.0);
    (gamma, beta)
}

fn pick<'a>(kind: AffineKind, w: &'a [f32], b: &'a [f32]) -> (Option<&'a [f32]>, Option<&'a [f32]>) {
    match kind {
        AffineKind::Both => (Some(w), Some(b)),
        AffineKind::None => (None, None),
        AffineKind::WeightOnly => (Some(w), None),
        AffineKind::BiasOnly => (None, Some(b)),
    }
}

/// One training forward checked against the reference. `running`: None, or the convention
/// and momentum to update with.
fn check_train(sh: &Shape, seed: u64, kind: AffineKind, running: Option<(Convention, f32)>, eps: f32) {
    let ctx = format!("train {:?} {:?} affine={kind:?} running={running:?} eps={eps}", sh.layout, sh.dims);
    let mut rng = Rng::new(seed);
    let ch = sh.channels();
    let x = channel_data(&mut rng, sh);
    let (w, b) = params(&mut rng, ch);
    let (wo, bo) = pick(kind, &w, &b);
    let old_mean = rng.normal_vec(ch, 0.0, 1.0);
    let old_var = rng.uniform_vec(ch, 0.5, 2.0);

    let mut y = vec![f32::NAN; sh.len()];
    let mut save_mean = vec![f32::NAN; ch];
    let mut save_invstd = vec![f32::NAN; ch];
    let mut rm = old_mean.clone();
    let mut rv = old_var.clone();
    let run = running.map(|(convention, momentum)| Running { mean: &mut rm, var: &mut rv, momentum, convention });
    train_forward(
        &x,
        &mut y,
        sh.bn_dims(),
        Affine { weight: wo, bias: bo },
        run,
        eps,
        &mut save_mean,
        &mut save_invstd,
    )
    .unwrap_or_else(|e| panic!("{ctx}: {e}"));

    let r = ref_train_forward(&x, sh, wo, bo, eps as f64);
    assert_close(&format!("{ctx}: y"), &y, &r.y, RTOL, ATOL);
    // The mean is compared on the scale of the channel's spread: that is what normalisation
    // sees.
    let sd: Vec<f64> = r.stats.var.iter().map(|v| v.sqrt()).collect();
    assert_close_by(&format!("{ctx}: save_mean"), &save_mean, &r.stats.mean, RTOL, |c| 1e-6 * sd[c] + 1e-7);
    assert_close(&format!("{ctx}: save_invstd"), &save_invstd, &r.invstd, RTOL, 0.0);
    match running {
        None => {
            assert_eq!(rm, old_mean, "{ctx}: running mean touched without running stats");
            assert_eq!(rv, old_var, "{ctx}: running var touched without running stats");
        }
        Some((conv, m)) => {
            let (want_m, want_v) = ref_running(&old_mean, &old_var, &r.stats, m as f64, conv);
            assert_close(&format!("{ctx}: running_mean"), &rm, &want_m, RTOL, ATOL);
            assert_close(&format!("{ctx}: running_var"), &rv, &want_v, RTOL, ATOL);
        }
    }
}

fn check_eval(sh: &Shape, seed: u64, kind: AffineKind, eps: f32) {
    let ctx = format!("eval {:?} {:?} affine={kind:?} eps={eps}", sh.layout, sh.dims);
    let mut rng = Rng::new(seed);
    let ch = sh.channels();
    let x = channel_data(&mut rng, sh);
    let (w, b) = params(&mut rng, ch);
    let (wo, bo) = pick(kind, &w, &b);
    let rm = rng.normal_vec(ch, 0.0, 1.5);
    let rv = rng.uniform_vec(ch, 0.2, 3.0);
    let mut y = vec![f32::NAN; sh.len()];
    eval_forward(&x, &mut y, sh.bn_dims(), Affine { weight: wo, bias: bo }, &rm, &rv, eps)
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let want = ref_eval_forward(&x, sh, wo, bo, &rm, &rv, eps as f64);
    assert_close(&format!("{ctx}: y"), &y, &want, RTOL, ATOL);
}

#[test]
fn reference_indexing_is_a_permutation() {
    // Self-check of the reference: every element belongs to exactly one channel.
    for sh in small_shapes().iter().chain(large_shapes().iter().take(2)) {
        let mut seen = vec![false; sh.len()];
        for offs in sh.all_offsets() {
            assert_eq!(offs.len(), sh.count());
            for o in offs {
                assert!(!seen[o], "{:?}: offset {o} twice", sh);
                seen[o] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "{:?}: not covered", sh);
    }
    // and spot-check the layouts by hand: channels-last (2, 3, 4): element (n=1, s=2, c=3)
    let sh = Shape::cl(&[2, 3, 4]);
    assert_eq!(sh.offset(1, 3, &[2]), 1 * 12 + 2 * 4 + 3);
    let sh = Shape::cf(&[2, 3, 4, 5]);
    assert_eq!(sh.offset(1, 2, &[3, 4]), 1 * 60 + 2 * 20 + 3 * 5 + 4);
}

#[test]
fn train_forward_small_shapes() {
    let mut seed = 1;
    for sh in small_shapes() {
        if sh.count() < 2 {
            continue; // training needs two values per channel (tests/errors.rs)
        }
        for kind in AFFINE_KINDS {
            seed += 1;
            check_train(&sh, seed, kind, None, 1e-5);
        }
        seed += 1;
        check_train(&sh, seed, AffineKind::Both, Some((Convention::PyTorch, 0.1)), 1e-5);
        seed += 1;
        check_train(&sh, seed, AffineKind::Both, Some((Convention::Onnx, 0.9)), 1e-3);
        seed += 1;
        check_train(&sh, seed, AffineKind::None, Some((Convention::PyTorch, 0.37)), 0.0);
        seed += 1;
        check_train(&sh, seed, AffineKind::WeightOnly, Some((Convention::Onnx, 0.25)), 1e-2);
    }
}

#[test]
fn train_forward_momentum_bounds() {
    // momentum 0 and 1 are legal: one of them keeps the old statistics, the other replaces
    // them with the batch's (which one depends on the convention).
    let sh = Shape::cf(&[3, 5, 7]);
    for conv in [Convention::PyTorch, Convention::Onnx] {
        for m in [0.0f32, 1.0] {
            check_train(&sh, 77, AffineKind::Both, Some((conv, m)), 1e-5);
        }
    }
}

#[test]
fn eval_forward_small_shapes() {
    let mut seed = 1000;
    for sh in small_shapes() {
        for kind in AFFINE_KINDS {
            seed += 1;
            check_eval(&sh, seed, kind, 1e-5);
        }
        seed += 1;
        check_eval(&sh, seed, AffineKind::Both, 0.0);
        seed += 1;
        check_eval(&sh, seed, AffineKind::Both, 0.5);
    }
}

#[test]
fn normalize_with_given_stats() {
    let mut seed = 5000;
    for sh in small_shapes() {
        seed += 1;
        let mut rng = Rng::new(seed);
        let ch = sh.channels();
        let x = channel_data(&mut rng, &sh);
        let (w, b) = params(&mut rng, ch);
        let mean = rng.normal_vec(ch, 0.0, 1.0);
        let invstd = rng.uniform_vec(ch, 0.3, 3.0);
        let mut y = vec![f32::NAN; sh.len()];
        normalize(&x, &mut y, sh.bn_dims(), Affine { weight: Some(&w), bias: Some(&b) }, &mean, &invstd).unwrap();
        let want = ref_normalize(&x, &sh, &to_f64(&mean), &to_f64(&invstd), Some(&w), Some(&b));
        assert_close(&format!("normalize {:?} {:?}", sh.layout, sh.dims), &y, &want, RTOL, ATOL);
    }
}

#[test]
fn forward_large_shapes() {
    // Above the tests' parallel threshold: with `--features parallel` these run the rayon paths
    // (on a 4-thread pool, so the work is split even on a 2-core machine).
    let mut seed = 9000;
    for sh in large_shapes() {
        assert!(sh.len() >= TEST_MIN_PARALLEL_ELEMS);
        seed += 1;
        on_pool(|| {
            assert_eq!(parallel::worth_it(sh.len()), cfg!(feature = "parallel"));
            check_train(&sh, seed, AffineKind::Both, Some((Convention::PyTorch, 0.1)), 1e-5);
            check_train(&sh, seed + 100, AffineKind::None, Some((Convention::Onnx, 0.9)), 1e-3);
            check_eval(&sh, seed + 200, AffineKind::Both, 1e-5);
        });
    }
}

// Only with rayon: without the `parallel` feature both runs would take the same
// sequential path and the test would compare it with itself.
#[cfg(feature = "parallel")]
#[test]
fn parallel_and_sequential_agree() {
    // The same large input on the default pool and on the 4-thread pool: statistics may
    // differ by rounding (different merge trees), outputs must agree to f32 accuracy.
    for sh in large_shapes().into_iter().take(4) {
        let mut rng = Rng::new(31);
        let ch = sh.channels();
        let x = channel_data(&mut rng, &sh);
        let run = |_: ()| {
            let mut y = vec![0f32; sh.len()];
            let mut m = vec![0f32; ch];
            let mut s = vec![0f32; ch];
            train_forward(&x, &mut y, sh.bn_dims(), Affine::default(), None, 1e-5, &mut m, &mut s).unwrap();
            (y, m, s)
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| run(()));
        let four = on_pool(|| run(()));
        assert_close("y 1 vs 4 threads", &four.0, &to_f64(&one.0), RTOL, ATOL);
        assert_close("invstd 1 vs 4 threads", &four.2, &to_f64(&one.2), 1e-5, 0.0);
    }
}
