//! Backward passes against the independent f64 reference (tests/common) and against
//! finite differences: training-mode backward (dx, dweight, dbias), eval-mode backward,
//! affine off, both layouts, ranks 2-5, small odd sizes and sizes above the parallel
//! threshold; the sharded (data-parallel) path `grad_sums` + `GradSums::add` +
//! `backward_apply`.

#![allow(clippy::explicit_counter_loop)]

mod common;

use batchnorm_core::{backward, backward_apply, backward_eval, parallel, train_forward, Affine, Dims, GradSums};
use common::*;

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

/// Tolerances for the three gradients. dx: relative + absolute on the scale of its largest
/// term (|gamma * invstd * dy|, the terms of dx cancel). dweight / dbias are sums of `m`
/// terms: absolute part on the 2-norm of the summed terms, the natural size of the rounding
/// error of any f32 summation (blocked or not).
fn check_grads(ctx: &str, dx: &[f32], dw: &[f32], db: &[f32], want: &RefGrads, sh: &Shape) {
    let offs = sh.all_offsets();
    let mut chan_of = vec![0usize; sh.len()];
    for (c, o) in offs.iter().enumerate() {
        for &i in o {
            chan_of[i] = c;
        }
    }
    assert_close_by(&format!("{ctx}: dx"), dx, &want.dx, RTOL, |i| ATOL * want.dx_scale[chan_of[i]].max(1.0));
    assert_close_by(&format!("{ctx}: dweight"), dw, &want.dweight, RTOL, |c| ATOL * want.dweight_scale[c].max(1.0));
    assert_close_by(&format!("{ctx}: dbias"), db, &want.dbias, RTOL, |c| ATOL * want.dbias_scale[c].max(1.0));
}

struct Case {
    x: Vec<f32>,
    dy: Vec<f32>,
    w: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

/// Inputs for a backward: x, dy, gamma and the saved batch statistics as the crate's own
/// training forward produces them (they are the inputs `backward` is specified on).
fn case(sh: &Shape, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let ch = sh.channels();
    let x = channel_data(&mut rng, sh);
    let dy = rng.normal_vec(sh.len(), 0.0, 1.0);
    let w: Vec<f32> = (0..ch).map(|_| rng.range(-1.5, 1.5) as f32).collect();
    let mut y = vec![0f32; sh.len()];
    let mut mean = vec![0f32; ch];
    let mut invstd = vec![0f32; ch];
    train_forward(
        &x,
        &mut y,
        sh.bn_dims(),
        Affine { weight: Some(&w), bias: None },
        None,
        1e-5,
        &mut mean,
        &mut invstd,
    )
    .unwrap();
    Case { x, dy, w, mean, invstd }
}

fn check_train_backward(sh: &Shape, seed: u64, affine: bool) {
    let ctx = format!("backward {:?} {:?} affine={affine}", sh.layout, sh.dims);
    let c = case(sh, seed);
    let ch = sh.channels();
    let weight = affine.then_some(&c.w[..]);
    let mut dx = vec![f32::NAN; sh.len()];
    let mut dw = vec![f32::NAN; ch];
    let mut db = vec![f32::NAN; ch];
    backward(&c.dy, &c.x, &mut dx, sh.bn_dims(), weight, &c.mean, &c.invstd, Some(&mut dw), Some(&mut db))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let want = ref_backward_train(&c.dy, &c.x, sh, weight, &to_f64(&c.mean), &to_f64(&c.invstd));
    check_grads(&ctx, &dx, &dw, &db, &want, sh);

    // Without the parameter-gradient outputs dx is the same.
    let mut dx2 = vec![f32::NAN; sh.len()];
    backward(&c.dy, &c.x, &mut dx2, sh.bn_dims(), weight, &c.mean, &c.invstd, None, None).unwrap();
    assert_eq!(dx, dx2, "{ctx}: dx depends on whether dweight/dbias are requested");
}

fn check_eval_backward(sh: &Shape, seed: u64, affine: bool) {
    let ctx = format!("backward_eval {:?} {:?} affine={affine}", sh.layout, sh.dims);
    let mut rng = Rng::new(seed);
    let ch = sh.channels();
    let x = channel_data(&mut rng, sh);
    let dy = rng.normal_vec(sh.len(), 0.0, 1.0);
    let w: Vec<f32> = (0..ch).map(|_| rng.range(-1.5, 1.5) as f32).collect();
    let weight = affine.then_some(&w[..]);
    // running statistics standing in for the constants of eval mode
    let mean = rng.normal_vec(ch, 0.0, 1.0);
    let invstd = rng.uniform_vec(ch, 0.3, 3.0);
    let mut dx = vec![f32::NAN; sh.len()];
    let mut dw = vec![f32::NAN; ch];
    let mut db = vec![f32::NAN; ch];
    backward_eval(&dy, &x, &mut dx, sh.bn_dims(), weight, &mean, &invstd, Some(&mut dw), Some(&mut db))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let want = ref_backward_eval(&dy, &x, sh, weight, &to_f64(&mean), &to_f64(&invstd));
    check_grads(&ctx, &dx, &dw, &db, &want, sh);

    let mut dx2 = vec![f32::NAN; sh.len()];
    backward_eval(&dy, &x, &mut dx2, sh.bn_dims(), weight, &mean, &invstd, None, None).unwrap();
    assert_eq!(dx, dx2, "{ctx}: dx depends on whether dweight/dbias are requested");
}

#[test]
fn train_backward_small_shapes() {
    let mut seed = 100;
    for sh in small_shapes() {
        if sh.count() < 2 {
            continue;
        }
        for affine in [true, false] {
            seed += 1;
            check_train_backward(&sh, seed, affine);
        }
    }
}

#[test]
fn eval_backward_small_shapes() {
    let mut seed = 200;
    for sh in small_shapes() {
        for affine in [true, false] {
            seed += 1;
            check_eval_backward(&sh, seed, affine);
        }
    }
}

#[test]
fn backward_large_shapes() {
    let mut seed = 300;
    for sh in large_shapes() {
        seed += 1;
        on_pool(|| {
            assert_eq!(parallel::worth_it(sh.len()), cfg!(feature = "parallel"));
            check_train_backward(&sh, seed, true);
            check_eval_backward(&sh, seed + 50, true);
        });
    }
}

/// Data-parallel backward: per-shard `grad_sums` added together and fed to
/// `backward_apply` with the total count equal the single-call `backward`.
#[test]
fn sharded_grad_sums_match_whole_batch() {
    for (sh, cuts) in [
        (Shape::cf(&[7, 3, 5, 3]), vec![0usize, 1, 4, 7]),
        (Shape::cl(&[9, 4, 5]), vec![0, 2, 3, 9]),
        (Shape::cf(&[5, 17]), vec![0, 3, 5]),
        (Shape::cl(&[11, 2, 3, 1]), vec![0, 5, 6, 11]),
    ] {
        let c = case(&sh, 4242);
        let ch = sh.channels();
        let per_batch = sh.len() / sh.batch();
        let mut total = GradSums::zeros(ch);
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let mut dims_v = sh.dims.clone();
            dims_v[0] = b - a;
            let d = Dims::new(&dims_v, sh.layout).unwrap();
            let r = a * per_batch..b * per_batch;
            total = total.add(batchnorm_core::backward::grad_sums(&c.dy[r.clone()], &c.x[r], d, &c.mean, None));
        }
        let mut dx = vec![f32::NAN; sh.len()];
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let mut dims_v = sh.dims.clone();
            dims_v[0] = b - a;
            let d = Dims::new(&dims_v, sh.layout).unwrap();
            let r = a * per_batch..b * per_batch;
            backward_apply(
                &c.dy[r.clone()],
                &c.x[r.clone()],
                &mut dx[r],
                d,
                Some(&c.w),
                &c.mean,
                &c.invstd,
                &total,
                sh.count() as f64,
            )
            .unwrap();
        }
        let want = ref_backward_train(&c.dy, &c.x, &sh, Some(&c.w), &to_f64(&c.mean), &to_f64(&c.invstd));
        let is = to_f64(&c.invstd);
        let dw: Vec<f32> = total.sum_dy_xmu.iter().zip(&is).map(|(s, i)| (s * i) as f32).collect();
        let db: Vec<f32> = total.sum_dy.iter().map(|&s| s as f32).collect();
        check_grads(&format!("sharded {:?} {:?} cuts {cuts:?}", sh.layout, sh.dims), &dx, &dw, &db, &want, &sh);
    }
}

// ---------------------------------------------------------------------------------------
// Finite differences
// ---------------------------------------------------------------------------------------

/// L(x, gamma, beta) = sum_i w_i * y_i with y the f64 reference training forward.
fn loss_f64(x: &[f64], sh: &Shape, gamma: &[f64], beta: &[f64], w: &[f32], eps: f64) -> f64 {
    let mut l = 0.0;
    for (c, offs) in sh.all_offsets().iter().enumerate() {
        let m = offs.len() as f64;
        let mu = offs.iter().map(|&o| x[o]).sum::<f64>() / m;
        let var = offs.iter().map(|&o| (x[o] - mu).powi(2)).sum::<f64>() / m;
        let is = 1.0 / (var + eps).sqrt();
        for &o in offs {
            l += w[o] as f64 * ((x[o] - mu) * is * gamma[c] + beta[c]);
        }
    }
    l
}

/// Central differences of the f64 reference loss (step 1e-5, truncation ~1e-10, rounding
/// ~1e-11) against the crate's analytic training backward, with dy = w.
fn finite_difference_case(sh: &Shape, seed: u64) {
    let ctx = format!("finite differences {:?} {:?}", sh.layout, sh.dims);
    let eps = 1e-5f32;
    let c = case(sh, seed);
    let ch = sh.channels();
    let mut rng = Rng::new(seed ^ 0xfd);
    let bias = rng.normal_vec(ch, 0.0, 1.0);
    let w = &c.dy; // the loss weights are the upstream gradient

    let mut dx = vec![f32::NAN; sh.len()];
    let mut dw = vec![f32::NAN; ch];
    let mut db = vec![f32::NAN; ch];
    backward(w, &c.x, &mut dx, sh.bn_dims(), Some(&c.w), &c.mean, &c.invstd, Some(&mut dw), Some(&mut db)).unwrap();

    let x64 = to_f64(&c.x);
    let g64 = to_f64(&c.w);
    let b64 = to_f64(&bias);
    let h = 1e-5;
    let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);

    let mut want_dx = vec![0.0; sh.len()];
    for i in 0..sh.len() {
        want_dx[i] = fd(&|d| {
            let mut xp = x64.clone();
            xp[i] += d;
            loss_f64(&xp, sh, &g64, &b64, w, eps as f64)
        });
    }
    let want_dw: Vec<f64> = (0..ch)
        .map(|k| {
            fd(&|d| {
                let mut gp = g64.clone();
                gp[k] += d;
                loss_f64(&x64, sh, &gp, &b64, w, eps as f64)
            })
        })
        .collect();
    let want_db: Vec<f64> = (0..ch)
        .map(|k| {
            fd(&|d| {
                let mut bp = b64.clone();
                bp[k] += d;
                loss_f64(&x64, sh, &g64, &bp, w, eps as f64)
            })
        })
        .collect();

    // The f32 analytic gradients against the f64 numerical ones, at the usual f32 output
    // tolerance (the finite differences are accurate to ~1e-10).
    assert_close(&format!("{ctx}: dx"), &dx, &want_dx, RTOL, ATOL);
    assert_close(&format!("{ctx}: dweight"), &dw, &want_dw, RTOL, ATOL);
    assert_close(&format!("{ctx}: dbias"), &db, &want_db, RTOL, ATOL);

    // The reference backward itself, in f64 with f64 statistics, to tight tolerance: the
    // reference is checked against first principles too.
    let st = ref_stats(&c.x, sh);
    let r = ref_backward_train(w, &c.x, sh, Some(&c.w), &st.mean, &ref_invstd(&st.var, eps as f64));
    for (i, (a, b)) in r.dx.iter().zip(&want_dx).enumerate() {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{ctx}: reference dx[{i}] {a} vs fd {b}");
    }
    for (a, b) in r.dweight.iter().zip(&want_dw).chain(r.dbias.iter().zip(&want_db)) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{ctx}: reference param grad {a} vs fd {b}");
    }
}

#[test]
fn backward_matches_finite_differences() {
    let shapes = [
        Shape::cf(&[3, 2]),
        Shape::cf(&[2, 3, 5]),
        Shape::cf(&[2, 2, 3, 3]),
        Shape::cf(&[2, 3, 1, 2, 3]),
        Shape::cl(&[3, 2]),
        Shape::cl(&[2, 5, 3]),
        Shape::cl(&[2, 3, 3, 2]),
        Shape::cl(&[2, 2, 1, 3, 5]),
    ];
    for (k, sh) in shapes.iter().enumerate() {
        finite_difference_case(sh, 700 + k as u64);
    }
}

/// Finite differences taken through the crate's own f32 forward (a step large enough for
/// f32: h = 1e-2 on unit-scale data; truncation ~h^2 and rounding ~1e-7 * |L| / h, both
/// ~1e-4), loss summed in f64.
#[test]
fn backward_matches_finite_differences_through_f32_kernel() {
    for sh in [Shape::cf(&[3, 2, 5]), Shape::cl(&[3, 5, 2])] {
        let c = case(&sh, 808);
        let ch = sh.channels();
        let dims = sh.bn_dims();
        let loss = |x: &[f32]| -> f64 {
            let mut y = vec![0f32; sh.len()];
            let (mut m, mut s) = (vec![0f32; ch], vec![0f32; ch]);
            train_forward(x, &mut y, dims, Affine { weight: Some(&c.w), bias: None }, None, 1e-5, &mut m, &mut s)
                .unwrap();
            y.iter().zip(&c.dy).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let mut dx = vec![0f32; sh.len()];
        backward(&c.dy, &c.x, &mut dx, dims, Some(&c.w), &c.mean, &c.invstd, None, None).unwrap();
        let h = 1e-2f32;
        for i in 0..sh.len() {
            let mut xp = c.x.clone();
            let mut xm = c.x.clone();
            xp[i] += h;
            xm[i] -= h;
            let step = (xp[i] as f64 - xm[i] as f64) / 2.0; // the step actually taken in f32
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * step);
            let err = (dx[i] as f64 - fd).abs();
            assert!(
                err <= 5e-4 * (1.0 + fd.abs()),
                "{:?} {:?}: dx[{i}] = {} vs f32 finite difference {fd}",
                sh.layout,
                sh.dims,
                dx[i]
            );
        }
    }
}
