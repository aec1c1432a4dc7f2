//! `moments::accumulate` over the pieces of a tensor, fed in order, equals `moments` of
//! the whole tensor bit for bit (the plain-array training forward relies on it): planes
//! (whole samples per piece, and runs of planes within a sample) and channels-last rows
//! (whole blocks per piece, the last piece short). The (300, 300) rows also check that
//! pairs of rows and single rows give the same bits: its pieces fit in L2 and go in pairs,
//! the whole tensor goes a row at a time (`passes::rows_together`). Every tensor here is below the default
//! parallel threshold, so with `--features parallel` the whole-tensor kernels still run on
//! one thread, the case the accumulating versions reproduce.

mod common;

use batchnorm_core::moments::{accumulate, moments, Moments};
use batchnorm_core::{Dims, Layout};
use common::Rng;

fn bits(m: &[Moments]) -> Vec<[u64; 3]> {
    m.iter().map(|m| [m.count.to_bits(), m.mean.to_bits(), m.m2.to_bits()]).collect()
}

#[test]
fn planes_piece_by_piece_equal_the_whole() {
    let mut rng = Rng::new(11);
    for &(n, c, inner, planes_per_piece) in &[(3, 5, 33, 2), (4, 7, 3000, 3), (2, 3, 5000, 1), (5, 4, 17, 4)] {
        let d = Dims { outer: n, channels: c, inner };
        let x = rng.normal_vec(d.len(), 1e3, 0.5);
        let want = moments(&x, d);
        let mut acc = vec![Moments::EMPTY; c];
        // Runs of planes within each sample, channel offset by the run's first channel.
        for o in 0..n {
            for c0 in (0..c).step_by(planes_per_piece) {
                let k = planes_per_piece.min(c - c0);
                let start = (o * c + c0) * inner;
                accumulate(&x[start..start + k * inner], Dims { outer: 1, channels: k, inner }, &mut acc[c0..c0 + k]);
            }
        }
        assert_eq!(bits(&acc), bits(&want), "planes {n}x{c}x{inner} in runs of {planes_per_piece}");
        // Whole samples, two at a time.
        let mut acc = vec![Moments::EMPTY; c];
        for o in (0..n).step_by(2) {
            let k = 2.min(n - o);
            accumulate(&x[o * c * inner..(o + k) * c * inner], Dims { outer: k, channels: c, inner }, &mut acc);
        }
        assert_eq!(bits(&acc), bits(&want), "planes {n}x{c}x{inner} by samples");
    }
}

#[test]
fn rows_by_whole_blocks_equal_the_whole() {
    let mut rng = Rng::new(12);
    for &(rows, c, blocks_per_piece) in &[(5003, 13, 3), (1000, 64, 1), (300, 300, 2), (37, 5, 1)] {
        let d = Dims::new(&[rows, c], Layout::ChannelsLast).unwrap();
        let x = rng.normal_vec(d.len(), -2e2, 3.0);
        let want = moments(&x, d);
        let block = batchnorm_core::moments::rows_per_block(c);
        let per = blocks_per_piece * block;
        let mut acc = vec![Moments::EMPTY; c];
        for r0 in (0..rows).step_by(per) {
            let k = per.min(rows - r0);
            accumulate(&x[r0 * c..(r0 + k) * c], Dims { outer: k, channels: c, inner: 1 }, &mut acc);
        }
        assert_eq!(bits(&acc), bits(&want), "rows {rows}x{c} in pieces of {blocks_per_piece} blocks");
    }
}

mod grad {
    use super::common::Rng;
    use batchnorm_core::backward::{grad_sums, grad_sums_accumulate, grad_sums_finish, Gate, GRAD_STATE};
    use batchnorm_core::moments::rows_per_block;
    use batchnorm_core::{Dims, GradSums, Layout};

    fn bits(g: &GradSums) -> Vec<u64> {
        g.sum_dy.iter().chain(&g.sum_dy_xmu).map(|v| v.to_bits()).collect()
    }

    fn data(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (rng.normal_vec(n, 0.0, 1.0), rng.normal_vec(n, 3.0, 2.0), rng.normal_vec(n, 0.0, 1.0))
    }

    #[test]
    fn planes_piece_by_piece_equal_the_whole() {
        let mut rng = Rng::new(21);
        // Planes shorter than, straddling and longer than the 2048-element flush.
        for &(n, c, inner, run) in &[(3, 5, 33, 2), (4, 7, 3000, 3), (2, 3, 5000, 1), (9, 4, 700, 4)] {
            let d = Dims { outer: n, channels: c, inner };
            let (dy, x, gate) = data(&mut rng, d.len());
            let mean: Vec<f32> = rng.normal_vec(c, 3.0, 0.1);
            for g in [None, Some(&gate[..])] {
                let want = grad_sums(&dy, &x, d, &mean, g.map(Gate::Output));
                let mut state = vec![0f64; GRAD_STATE * c];
                for o in 0..n {
                    for c0 in (0..c).step_by(run) {
                        let k = run.min(c - c0);
                        let r = (o * c + c0) * inner..(o * c + c0 + k) * inner;
                        let piece = Dims { outer: 1, channels: k, inner };
                        let gp = g.map(|g| &g[r.clone()]);
                        grad_sums_accumulate(&dy[r.clone()], &x[r], gp, piece, &mean[c0..c0 + k], &mut state[GRAD_STATE * c0..GRAD_STATE * (c0 + k)]);
                    }
                }
                assert_eq!(bits(&grad_sums_finish(&state, d, &mean)), bits(&want), "planes {n}x{c}x{inner}, runs of {run}, gate {}", g.is_some());
            }
        }
    }

    #[test]
    fn rows_by_whole_blocks_equal_the_whole() {
        let mut rng = Rng::new(22);
        for &(rows, c, blocks) in &[(5003, 13, 3), (1000, 64, 1), (300, 300, 2)] {
            let d = Dims::new(&[rows, c], Layout::ChannelsLast).unwrap();
            let (dy, x, gate) = data(&mut rng, d.len());
            let mean: Vec<f32> = rng.normal_vec(c, 3.0, 0.1);
            let per = blocks * rows_per_block(c);
            for g in [None, Some(&gate[..])] {
                let want = grad_sums(&dy, &x, d, &mean, g.map(Gate::Output));
                let mut state = vec![0f64; GRAD_STATE * c];
                for r0 in (0..rows).step_by(per) {
                    let k = per.min(rows - r0);
                    let r = r0 * c..(r0 + k) * c;
                    let gp = g.map(|g| &g[r.clone()]);
                    grad_sums_accumulate(&dy[r.clone()], &x[r], gp, Dims { outer: k, channels: c, inner: 1 }, &mean, &mut state);
                }
                assert_eq!(bits(&grad_sums_finish(&state, d, &mean)), bits(&want), "rows {rows}x{c}, gate {}", g.is_some());
            }
        }
    }
}
