//! `moments::accumulate` over the pieces of a tensor equals `moments` of the whole tensor
//! bit for bit (the plain-array training forward relies on it), when each reduction
//! segment (`moments::segment_len` outer units) is fed in order into fresh moments and the
//! segments are merged in order: planes (whole samples per piece, and runs of planes
//! within a sample) and channels-last rows (whole blocks per piece, a segment's last piece
//! short). The (1000, 300) rows also check that grouped rows and single rows give the
//! same bits: its pieces fit in cache and go four rows at a time, the whole tensor (above
//! `CACHED_ELEMS`) goes a row at a time (`passes::rows_together`). The same for
//! `grad_sums_accumulate`. Every tensor here is below the default parallel threshold;
//! `parallel.rs` checks that the pool's results are the same bits as one thread's.

mod common;

use batchnorm_core::moments::{accumulate, moments, segment_len, Moments};
use batchnorm_core::{Dims, Layout};
use common::Rng;
use std::ops::Range;

/// Each reduction segment of `d`, a range of outer units, fed by `feed` into fresh
/// moments; the segments merged in order.
fn by_segments(d: Dims, mut feed: impl FnMut(Range<usize>, &mut [Moments])) -> Vec<Moments> {
    let per = segment_len(d);
    let mut total = vec![Moments::EMPTY; d.channels];
    for o0 in (0..d.outer).step_by(per) {
        let mut acc = vec![Moments::EMPTY; d.channels];
        feed(o0..(o0 + per).min(d.outer), &mut acc);
        for (t, a) in total.iter_mut().zip(acc) {
            *t = t.merge(a);
        }
    }
    total
}

fn bits(m: &[Moments]) -> Vec<[u64; 3]> {
    m.iter().map(|m| [m.count.to_bits(), m.mean.to_bits(), m.m2.to_bits()]).collect()
}

#[test]
fn planes_piece_by_piece_equal_the_whole() {
    let mut rng = Rng::new(11);
    // One segment (up to 128 Ki elements) and several: (5, 3, 50000) a sample each,
    // (40, 3, 3000) segments of 14 samples, the last one short, (17, 300, 500) of 5 (so
    // that each channel has 2048 values in a segment).
    for &(n, c, inner, planes_per_piece) in &[(3, 5, 33, 2), (4, 7, 3000, 3), (5, 3, 50000, 1), (5, 4, 17, 4), (11, 3, 70, 2), (40, 3, 3000, 2), (3, 40, 50, 7), (17, 300, 500, 64)] {
        let d = Dims { outer: n, channels: c, inner };
        let x = rng.normal_vec(d.len(), 1e3, 0.5);
        let want = moments(&x, d);
        // Runs of planes within each sample, channel offset by the run's first channel.
        let acc = by_segments(d, |samples, acc| {
            for o in samples {
                for c0 in (0..c).step_by(planes_per_piece) {
                    let k = planes_per_piece.min(c - c0);
                    let start = (o * c + c0) * inner;
                    accumulate(&x[start..start + k * inner], Dims { outer: 1, channels: k, inner }, &mut acc[c0..c0 + k]);
                }
            }
        });
        assert_eq!(bits(&acc), bits(&want), "planes {n}x{c}x{inner} in runs of {planes_per_piece}");
        // Whole samples, two at a time.
        let acc = by_segments(d, |samples, acc| {
            for o in samples.clone().step_by(2) {
                let k = 2.min(samples.end - o);
                accumulate(&x[o * c * inner..(o + k) * c * inner], Dims { outer: k, channels: c, inner }, acc);
            }
        });
        assert_eq!(bits(&acc), bits(&want), "planes {n}x{c}x{inner} by samples");
    }
}

#[test]
fn rows_by_whole_blocks_equal_the_whole() {
    let mut rng = Rng::new(12);
    // (30000, 8) and (70000, 3) are two and three segments.
    for &(rows, c, blocks_per_piece) in &[(5003, 13, 3), (1000, 64, 1), (1000, 300, 2), (37, 5, 1), (30000, 8, 5), (70000, 3, 7)] {
        let d = Dims::new(&[rows, c], Layout::ChannelsLast).unwrap();
        let x = rng.normal_vec(d.len(), -2e2, 3.0);
        let want = moments(&x, d);
        let block = batchnorm_core::moments::rows_per_block(c);
        let per = blocks_per_piece * block;
        let acc = by_segments(d, |seg, acc| {
            for r0 in seg.clone().step_by(per) {
                let k = per.min(seg.end - r0);
                accumulate(&x[r0 * c..(r0 + k) * c], Dims { outer: k, channels: c, inner: 1 }, acc);
            }
        });
        assert_eq!(bits(&acc), bits(&want), "rows {rows}x{c} in pieces of {blocks_per_piece} blocks");
    }
}

mod grad {
    use super::common::Rng;
    use batchnorm_core::backward::{grad_sums, grad_sums_accumulate, grad_sums_finish, Gate, GRAD_STATE};
    use batchnorm_core::moments::{rows_per_block, segment_len};
    use batchnorm_core::{Dims, GradSums, Layout};
    use std::ops::Range;

    /// Each reduction segment of `d` fed by `feed` into a fresh state and finished; the
    /// segments' sums added in order from zero.
    fn by_segments(d: Dims, mean: &[f32], mut feed: impl FnMut(Range<usize>, &mut [f64])) -> GradSums {
        let per = segment_len(d);
        let mut total = GradSums::zeros(d.channels);
        for o0 in (0..d.outer).step_by(per) {
            let mut state = vec![0f64; GRAD_STATE * d.channels];
            feed(o0..(o0 + per).min(d.outer), &mut state);
            total = total.add(grad_sums_finish(&state, d, mean));
        }
        total
    }

    fn bits(g: &GradSums) -> Vec<u64> {
        g.sum_dy.iter().chain(&g.sum_dy_xmu).map(|v| v.to_bits()).collect()
    }

    fn data(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (rng.normal_vec(n, 0.0, 1.0), rng.normal_vec(n, 3.0, 2.0), rng.normal_vec(n, 0.0, 1.0))
    }

    #[test]
    fn planes_piece_by_piece_equal_the_whole() {
        let mut rng = Rng::new(21);
        // Planes shorter than, straddling and longer than the 2048-element flush; one
        // segment and several ((5, 3, 50000): a sample each; (40, 3, 3000): 14 samples;
        // (17, 300, 500): 5).
        for &(n, c, inner, run) in &[(3, 5, 33, 2), (4, 7, 3000, 3), (5, 3, 50000, 1), (9, 4, 700, 4), (40, 3, 3000, 2), (3, 40, 50, 7), (17, 300, 500, 64)] {
            let d = Dims { outer: n, channels: c, inner };
            let (dy, x, gate) = data(&mut rng, d.len());
            let mean: Vec<f32> = rng.normal_vec(c, 3.0, 0.1);
            for g in [None, Some(&gate[..])] {
                let want = grad_sums(&dy, &x, d, &mean, g.map(Gate::Output));
                let got = by_segments(d, &mean, |samples, state| {
                    for o in samples {
                        for c0 in (0..c).step_by(run) {
                            let k = run.min(c - c0);
                            let r = (o * c + c0) * inner..(o * c + c0 + k) * inner;
                            let piece = Dims { outer: 1, channels: k, inner };
                            let gp = g.map(|g| &g[r.clone()]);
                            grad_sums_accumulate(&dy[r.clone()], &x[r], gp, piece, &mean[c0..c0 + k], &mut state[GRAD_STATE * c0..GRAD_STATE * (c0 + k)]);
                        }
                    }
                });
                assert_eq!(bits(&got), bits(&want), "planes {n}x{c}x{inner}, runs of {run}, gate {}", g.is_some());
            }
        }
    }

    #[test]
    fn rows_by_whole_blocks_equal_the_whole() {
        let mut rng = Rng::new(22);
        for &(rows, c, blocks) in &[(5003, 13, 3), (1000, 64, 1), (1000, 300, 2), (30000, 8, 5)] {
            let d = Dims::new(&[rows, c], Layout::ChannelsLast).unwrap();
            let (dy, x, gate) = data(&mut rng, d.len());
            let mean: Vec<f32> = rng.normal_vec(c, 3.0, 0.1);
            let per = blocks * rows_per_block(c);
            for g in [None, Some(&gate[..])] {
                let want = grad_sums(&dy, &x, d, &mean, g.map(Gate::Output));
                let got = by_segments(d, &mean, |seg, state| {
                    for r0 in seg.clone().step_by(per) {
                        let k = per.min(seg.end - r0);
                        let r = r0 * c..(r0 + k) * c;
                        let gp = g.map(|g| &g[r.clone()]);
                        grad_sums_accumulate(&dy[r.clone()], &x[r], gp, Dims { outer: k, channels: c, inner: 1 }, &mean, state);
                    }
                });
                assert_eq!(bits(&got), bits(&want), "rows {rows}x{c}, gate {}", g.is_some());
            }
        }
    }
}
