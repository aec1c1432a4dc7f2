//! Numerical accuracy where f32 is fragile: a large mean against a small spread
//! (x = 1e4 + N(0, 0.1), x = 1e6 + N(0, 1)), in both layouts, small and above the parallel
//! threshold; and `Moments::merge` (Chan et al.) on uneven splits.

#![allow(clippy::needless_range_loop)]

mod common;

use batchnorm_core::moments::{self, merge_all, Moments};
use batchnorm_core::{train_forward, Affine, Convention, Dims, Layout, Running};
use common::*;

struct Big {
    name: &'static str,
    offset: f64,
    std: f64,
}

const BIG: [Big; 4] = [
    Big { name: "1e4 + N(0, 0.1)", offset: 1e4, std: 0.1 },
    Big { name: "1e6 + N(0, 1)", offset: 1e6, std: 1.0 },
    Big { name: "(1e6 + 3) + N(0, 1)", offset: 1e6 + 3.0, std: 1.0 },
    Big { name: "-3e5 + N(0, 0.5)", offset: -3e5, std: 0.5 },
];

/// Runs `check` on every (distribution, shape) pair and reports all failing pairs at once
/// (not just the first), with each failure's message.
fn for_all_big(check: impl Fn(&Big, usize, &Shape, &str)) {
    let mut failures = Vec::new();
    for b in &BIG {
        for (k, sh) in big_shapes().iter().enumerate() {
            let ctx = format!("{} {:?} {:?}", b.name, sh.layout, sh.dims);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(b, k, sh, &ctx)));
            if let Err(e) = r {
                let msg =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(msg.unwrap_or_else(|| ctx.clone()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        BIG.len() * big_shapes().len(),
        failures.join("\n")
    );
}

fn big_shapes() -> Vec<Shape> {
    vec![
        Shape::cf(&[4, 3, 37, 41]),  // planar, several blocks per plane
        Shape::cl(&[4, 37, 41, 3]),  // rows
        Shape::cf(&[6001, 5]),       // channels-first, inner == 1
        Shape::cl(&[3, 97, 101, 5]), // 146,955 > parallel threshold
        Shape::cf(&[3, 5, 97, 101]), // 146,955
        Shape::cl(&[70001, 1]),      // one channel, 4096-row blocks
    ]
}

/// Per-channel data around `offset` with per-channel spreads 0.5x..2x `std`.
fn big_data(rng: &mut Rng, sh: &Shape, b: &Big) -> Vec<f32> {
    let mut x = vec![0f32; sh.len()];
    for offs in sh.all_offsets() {
        let sd = b.std * rng.range(0.5, 2.0);
        for o in offs {
            x[o] = (b.offset + sd * rng.normal()) as f32;
        }
    }
    x
}

/// Naive single-pass f32 variance, E[x^2] - E[x]^2, the formula this test must catch.
fn naive_f32_var(x: &[f32], offs: &[usize]) -> f64 {
    let (mut s, mut s2) = (0f32, 0f32);
    for &o in offs {
        s += x[o];
        s2 += x[o] * x[o];
    }
    let n = offs.len() as f32;
    let m = s / n;
    (s2 / n - m * m) as f64
}

/// Batch variance, invstd, running variance and mean of large-mean data against the f64
/// reference (variance to 1e-4 relative), with proof that the check has teeth: the naive
/// f32 `E[x^2] - E[x]^2` misses it by more than 10%. Regression: the channels-last /
/// `inner == 1` path used to take each block's shift as a plain running f32 sum of up to
/// 4096 rows, which for 1e6 + N(0, 1) with one channel put the shift ~30 sd off and the
/// variance 1.3% off.
#[test]
fn large_mean_variance_and_invstd() {
    let eps = 1e-5f32;
    for_all_big(|b, k, sh, ctx| {
        let mut rng = Rng::new(10 + k as u64);
        let x = big_data(&mut rng, sh, b);
        let ch = sh.channels();
        let r = ref_train_forward(&x, sh, None, None, eps as f64);

        // The batch moments directly.
        let m = on_pool(|| moments::moments(&x, sh.bn_dims()));
        for c in 0..ch {
            let var = m[c].biased_var();
            let rel = (var - r.stats.var[c]).abs() / r.stats.var[c];
            assert!(rel <= 1e-4, "{ctx}: channel {c}: variance {var} vs {} (rel err {rel:e})", r.stats.var[c]);
            let sd = r.stats.var[c].sqrt();
            assert!(
                (m[c].mean - r.stats.mean[c]).abs() <= 1e-6 * sd,
                "{ctx}: channel {c}: mean {} vs {}",
                m[c].mean,
                r.stats.mean[c]
            );
            assert_eq!(m[c].count, sh.count() as f64);
        }

        // Through the training forward: invstd, and the running variance (PyTorch).
        let mut y = vec![0f32; sh.len()];
        let (mut sm, mut si) = (vec![0f32; ch], vec![0f32; ch]);
        let (mut rm, mut rv) = (vec![0f32; ch], vec![1f32; ch]);
        let run = Running { mean: &mut rm, var: &mut rv, momentum: 0.1, convention: Convention::PyTorch };
        on_pool(|| train_forward(&x, &mut y, sh.bn_dims(), Affine::default(), Some(run), eps, &mut sm, &mut si))
            .unwrap();
        assert_close(&format!("{ctx}: invstd"), &si, &r.invstd, 1e-4, 0.0);
        let (want_rm, want_rv) = ref_running(&vec![0f32; ch], &vec![1f32; ch], &r.stats, 0.1, Convention::PyTorch);
        assert_close(&format!("{ctx}: running var"), &rv, &want_rv, 1e-4, 0.0);
        assert_close(&format!("{ctx}: running mean"), &rm, &want_rm, 1e-6, 0.0);
        assert_close(&format!("{ctx}: save_mean"), &sm, &r.stats.mean, 1e-7, 0.0);

        // The same check is meaningful: the naive f32 formula fails it by far.
        let worst = sh
            .all_offsets()
            .iter()
            .enumerate()
            .map(|(c, offs)| (naive_f32_var(&x, offs) - r.stats.var[c]).abs() / r.stats.var[c])
            .fold(0.0, f64::max);
        assert!(worst > 1e-1, "{ctx}: naive f32 variance unexpectedly accurate (rel err {worst:e})");
    });
}

/// y for data with a large mean, against the exact f64 forward: 1e-4 relative to the size
/// of the terms of y plus 1e-5 absolute. (The f32 `save_mean` alone cannot express the
/// mean to better than ulp(1e4)/2 = 5e-4, a 0.5% shift of every output at spread 0.1; the
/// forward must not inherit that rounding.) Also each output channel must be normalised:
/// mean beta, variance gamma^2 * var / (var + eps).
#[test]
fn large_mean_forward_output() {
    let eps = 1e-5f32;
    for_all_big(|b, k, sh, ctx| {
        let mut rng = Rng::new(20 + k as u64);
        let x = big_data(&mut rng, sh, b);
        let ch = sh.channels();
        let w: Vec<f32> = rng.uniform_vec(ch, 0.5, 1.5);
        let bias = rng.normal_vec(ch, 0.0, 1.0);
        let mut y = vec![0f32; sh.len()];
        let (mut sm, mut si) = (vec![0f32; ch], vec![0f32; ch]);
        let aff = Affine { weight: Some(&w), bias: Some(&bias) };
        on_pool(|| train_forward(&x, &mut y, sh.bn_dims(), aff, None, eps, &mut sm, &mut si)).unwrap();

        let r = ref_train_forward(&x, sh, Some(&w), Some(&bias), eps as f64);
        // 1e-4 relative to the size of the two terms of y = gamma * xhat + beta (they can
        // cancel, leaving |y| << the error of either), plus 1e-5 absolute.
        let mut tol = vec![0f64; sh.len()];
        for (c, o) in sh.all_offsets().iter().enumerate() {
            for &i in o {
                tol[i] = 1e-4 * ((r.y[i] - bias[c] as f64).abs() + (bias[c] as f64).abs()) + 1e-5;
            }
        }
        assert_close_by(&format!("{ctx}: y"), &y, &r.y, 0.0, |i| tol[i]);
        for (c, o) in sh.all_offsets().iter().enumerate() {
            let n = o.len() as f64;
            let ym = o.iter().map(|&i| y[i] as f64).sum::<f64>() / n;
            let yv = o.iter().map(|&i| (y[i] as f64 - ym).powi(2)).sum::<f64>() / n;
            let g = w[c] as f64;
            assert!((ym - bias[c] as f64).abs() <= 1e-5, "{ctx}: channel {c}: mean of y {ym} vs beta {}", bias[c]);
            let want_v = g * g * r.stats.var[c] / (r.stats.var[c] + eps as f64);
            assert!((yv - want_v).abs() <= 1e-4 * want_v, "{ctx}: channel {c}: var of y {yv} vs {want_v}");
        }
    });
}

/// Eval forward with running statistics near a large mean: `x - running_mean` is exact.
#[test]
fn large_mean_eval_output() {
    for_all_big(|b, k, sh, ctx| {
        let mut rng = Rng::new(40 + k as u64);
        let x = big_data(&mut rng, sh, b);
        let ch = sh.channels();
        let rm: Vec<f32> = (0..ch).map(|_| (b.offset + b.std * rng.normal()) as f32).collect();
        let rv: Vec<f32> = (0..ch).map(|_| (b.std * b.std * rng.range(0.5, 2.0)) as f32).collect();
        let w: Vec<f32> = rng.uniform_vec(ch, 0.5, 1.5);
        let bias = rng.normal_vec(ch, 0.0, 1.0);
        let mut y = vec![0f32; sh.len()];
        let aff = Affine { weight: Some(&w), bias: Some(&bias) };
        on_pool(|| batchnorm_core::eval_forward(&x, &mut y, sh.bn_dims(), aff, &rm, &rv, 1e-5)).unwrap();
        let want = ref_eval_forward(&x, sh, Some(&w), Some(&bias), &rm, &rv, 1e-5);
        assert_close(&format!("{ctx}: eval y"), &y, &want, 1e-4, 1e-5);
    });
}

// ---------------------------------------------------------------------------------------
// Moments::merge
// ---------------------------------------------------------------------------------------

/// Exact (f64 two-pass) moments of a list of values.
fn exact(v: &[f64]) -> Moments {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    Moments { count: n, mean, m2: v.iter().map(|x| (x - mean).powi(2)).sum() }
}

fn assert_moments(ctx: &str, got: Moments, want: Moments, rtol: f64) {
    assert_eq!(got.count, want.count, "{ctx}: count");
    let sd = (want.m2 / want.count).sqrt();
    assert!((got.mean - want.mean).abs() <= rtol * (want.mean.abs() + sd), "{ctx}: mean {} vs {}", got.mean, want.mean);
    assert!((got.m2 - want.m2).abs() <= rtol * want.m2, "{ctx}: m2 {} vs {}", got.m2, want.m2);
}

#[test]
fn merge_of_uneven_parts_equals_whole_f64() {
    let mut rng = Rng::new(5);
    for (offset, std) in [(0.0, 1.0), (1e4, 0.1), (-7.5, 3.0), (1e6, 1.0)] {
        let v: Vec<f64> = (0..2000).map(|_| offset + std * rng.normal()).collect();
        let whole = exact(&v);
        for cuts in [
            vec![0usize, 1, 2000],
            vec![0, 1999, 2000],
            vec![0, 2, 3, 1000, 1997, 2000],
            vec![0, 7, 513, 514, 2000],
            vec![0, 1000, 2000],
        ] {
            let parts: Vec<Moments> = cuts.windows(2).map(|w| exact(&v[w[0]..w[1]])).collect();
            // left fold
            let left = parts.iter().fold(Moments::EMPTY, |a, &p| a.merge(p));
            // f64 rounding of means of size |offset| limits agreement to ~1e-16 * |offset| / sd
            // relative (1e-10 at 1e6 / 1): 1e-9.
            assert_moments(&format!("left fold {offset} {cuts:?}"), left, whole, 1e-9);
            // right fold, and a tree
            let right = parts.iter().rev().fold(Moments::EMPTY, |a, &p| p.merge(a));
            assert_moments(&format!("right fold {offset} {cuts:?}"), right, whole, 1e-9);
            let mid = parts.len() / 2;
            let tree = parts[..mid]
                .iter()
                .fold(Moments::EMPTY, |a, &p| a.merge(p))
                .merge(parts[mid..].iter().fold(Moments::EMPTY, |a, &p| a.merge(p)));
            assert_moments(&format!("tree {offset} {cuts:?}"), tree, whole, 1e-9);
        }
        // the empty set is the identity on either side
        assert_eq!(whole.merge(Moments::EMPTY), whole);
        assert_eq!(Moments::EMPTY.merge(whole), whole);
    }
}

#[test]
fn merge_of_crate_moments_over_batch_shards() {
    // Moments of uneven batch shards (each from the crate's kernel), merged, equal the
    // moments of the whole batch and the reference, in both layouts.
    let mut rng = Rng::new(6);
    for sh in [Shape::cf(&[13, 3, 5, 7]), Shape::cl(&[13, 5, 7, 3]), Shape::cf(&[41, 17]), Shape::cl(&[600, 9, 5])] {
        for (offset, std) in [(0.0, 1.0), (1e4, 0.1)] {
            let x: Vec<f32> = rng.normal_vec(sh.len(), offset, std);
            let whole = moments::moments(&x, sh.bn_dims());
            let r = ref_stats(&x, &sh);
            let per_batch = sh.len() / sh.batch();
            let n = sh.batch();
            for cuts in [vec![0, 1, n], vec![0, n - 1, n], vec![0, 2, 3, n / 2, n]] {
                let mut merged: Option<Vec<Moments>> = None;
                for w in cuts.windows(2) {
                    let mut d = sh.dims.clone();
                    d[0] = w[1] - w[0];
                    let part =
                        moments::moments(&x[w[0] * per_batch..w[1] * per_batch], Dims::new(&d, sh.layout).unwrap());
                    merged = Some(match merged {
                        None => part,
                        Some(acc) => merge_all(acc, part),
                    });
                }
                let merged = merged.unwrap();
                for c in 0..sh.channels() {
                    let ctx = format!("{:?} {:?} offset {offset} cuts {cuts:?} channel {c}", sh.layout, sh.dims);
                    let want = Moments { count: r.count as f64, mean: r.mean[c], m2: r.var[c] * r.count as f64 };
                    assert_moments(&format!("{ctx}: merged vs reference"), merged[c], want, 1e-5);
                    assert_moments(&format!("{ctx}: merged vs whole"), merged[c], whole[c], 1e-5);
                }
            }
        }
    }
}

#[test]
fn channels_last_rank2_equals_channels_first_rank2() {
    // (N, C) is the same tensor in both layouts: identical statistics and outputs.
    let mut rng = Rng::new(8);
    let x = rng.normal_vec(37 * 5, 1e4, 0.1);
    let a = moments::moments(&x, Dims::new(&[37, 5], Layout::ChannelsFirst).unwrap());
    let b = moments::moments(&x, Dims::new(&[37, 5], Layout::ChannelsLast).unwrap());
    assert_eq!(a, b);
}

#[test]
fn channels_last_blocks_with_a_drifting_mean() {
    // Channels-last rows take the previous blocks' mean as the shift of each later block
    // and fall back to the block's own two-pass shift when it is too far off: stationary
    // data (no fallback), a mean that jumps every block (always the fallback: the shift
    // is 100 standard deviations off), a slow trend, and jumps so far that the f32 squares
    // about the borrowed shift overflow (the fallback must still be taken), all against
    // f64 per channel. Each channel has a mean of its own. 8 channels (cache-sized): four
    // rows at a time, blocks of 256 rows (the jumps' period); 130 channels (32 quads and
    // two more): rows beyond the cache size one at a time, whose centered pass goes strip
    // by strip of channels (moments::centered_strips), in blocks of 64 rows (a jump every
    // fourth block).
    for ch in [8, 130] {
        drifting_mean_case(ch);
    }
}

fn drifting_mean_case(ch: usize) {
    let rows = 256 * 10 + 37;
    let sh = Shape::cl(&[rows, ch]);
    // (name, the mean of row r)
    type Case = (&'static str, fn(usize) -> f64);
    let cases: [Case; 4] = [
        ("stationary", |_| 1e4),
        ("jumps", |r| 1e4 + ((r / 256) % 2) as f64),
        ("trend", |r| 1e4 + r as f64 * 1e-3),
        ("overflowing jumps", |r| ((r / 256) % 2) as f64 * 1e20),
    ];
    for (name, mean_of_row) in cases {
        let mut rng = Rng::new(12);
        let x: Vec<f32> = (0..rows * ch).map(|i| (mean_of_row(i / ch) + 0.5 * (i % ch) as f64 + 0.01 * rng.normal()) as f32).collect();
        let got = moments::moments(&x, sh.bn_dims());
        for c in 0..ch {
            let v: Vec<f64> = (0..rows).map(|r| x[r * ch + c] as f64).collect();
            assert_moments(&format!("{name}, {ch} channels: channel {c}"), got[c], exact(&v), 1e-5);
        }
    }
}

#[test]
fn planes_with_a_drifting_mean() {
    // Channels-first planes take the mean so far as the shift of each block after a
    // channel's first and fall back to the block's own two-pass shift when it is too far
    // off (moments::merge_run): the kinds of data of the test above, the mean now a
    // function of the sample, on planes of 4, 49 (7x7), 300 and 2,500 values (a block of
    // 2,048 and one of 452), against f64 per channel. With the fallback removed, the
    // overflowing jumps give an infinite M2 (the others stay within 1e-5: a borrowed
    // shift's f32 rounding grows with its distance squared, as the spread between planes
    // it then adds does). Also the stream's way (`accumulate` in pieces), which must give
    // the one-call result bit for bit (values near 1e4 are coarse enough that every sum
    // is exact, so a mean of 3.7 is there to make the order of operations show in the
    // bits).
    type Case = (&'static str, fn(usize) -> f64);
    let cases: [Case; 5] = [
        ("stationary", |_| 1e4),
        ("stationary, mean 3.7", |_| 3.7),
        ("jumps", |n| 1e4 + ((n / 4) % 2) as f64),
        ("trend", |n| 1e4 + n as f64 * 1e-3),
        ("overflowing jumps", |n| ((n / 4) % 2) as f64 * 1e20),
    ];
    let (batch, ch) = (41, 3);
    for plane in [4, 49, 300, 2500] {
        let sh = Shape::cf(&[batch, ch, plane]);
        for (name, mean_of_sample) in cases {
            let mut rng = Rng::new(13);
            let x: Vec<f32> = (0..batch * ch * plane)
                .map(|i| (mean_of_sample(i / (ch * plane)) + 0.5 * ((i / plane) % ch) as f64 + 0.01 * rng.normal()) as f32)
                .collect();
            let dims = sh.bn_dims();
            let got = moments::moments(&x, dims);
            for c in 0..ch {
                let v: Vec<f64> = sh.channel_offsets(c).iter().map(|&o| x[o] as f64).collect();
                assert_moments(&format!("{name}, planes of {plane}: channel {c}"), got[c], exact(&v), 1e-5);
            }
            // The stream's way: each reduction segment in pieces of up to 5 samples into
            // fresh moments, the segments merged in order.
            let (per, unit) = (moments::segment_len(dims), ch * plane);
            let mut total = vec![Moments::EMPTY; ch];
            for seg in (0..batch).step_by(per) {
                let mut acc = vec![Moments::EMPTY; ch];
                for piece in x[seg * unit..(seg + per).min(batch) * unit].chunks(5 * unit) {
                    moments::accumulate(piece, Dims { outer: piece.len() / unit, ..dims }, &mut acc);
                }
                total = merge_all(total, acc);
            }
            assert_eq!(total, got, "{name}, planes of {plane}: accumulate in pieces");
        }
    }
}
