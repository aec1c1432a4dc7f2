//! LayerNorm, RMSNorm, GroupNorm and InstanceNorm (src/layers/norms.rs) against an independent f64
//! reference written from the definitions (explicit (n, c, s) / (row, col) indices,
//! two-pass statistics in f64), and their backward passes against f64 directional finite
//! differences of that reference forward: `d/dh sum(dy * f(x + h v)) = dot(dx, v)`.
//! Both layouts for GroupNorm, affine on and off, odd sizes (SIMD tails), 1e4 offsets,
//! and sizes above the parallel threshold on a 4-thread pool.

#![allow(clippy::too_many_arguments, clippy::type_complexity)]

mod common;

use batchnorm_core::norms::{groups_backward, groups_forward, rows_backward, rows_forward, Groups, InstanceRunning, Rows, Stat};
use batchnorm_core::{BnError, Layout};
use common::*;

const EPS: f32 = 1e-5;

// ------------------------------ f64 references ------------------------------

/// Rows: y, mean, invstd in f64. `centered = false`: RMSNorm (no mean, mean square).
fn ref_rows(x: &[f64], rows: usize, len: usize, g: Option<&[f64]>, b: Option<&[f64]>, eps: f64, centered: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut mean, mut invstd) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
    for r in 0..rows {
        let row = &x[r * len..(r + 1) * len];
        let mu = if centered { row.iter().sum::<f64>() / len as f64 } else { 0.0 };
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / len as f64;
        let is = 1.0 / (var + eps).sqrt();
        mean[r] = mu;
        invstd[r] = is;
        for d in 0..len {
            y[r * len + d] = (row[d] - mu) * is * g.map_or(1.0, |g| g[d]) + b.map_or(0.0, |b| b[d]);
        }
    }
    (y, mean, invstd)
}

/// Element offset of (n, c, s) in a (N, C, S) or (N, S, C) tensor.
fn off(layout: Layout, c_: usize, s_: usize, n: usize, c: usize, s: usize) -> usize {
    match layout {
        Layout::ChannelsFirst => (n * c_ + c) * s_ + s,
        Layout::ChannelsLast => (n * s_ + s) * c_ + c,
    }
}

/// GroupNorm: y, per-(n, g) mean and invstd, per-(n, c) mean and unbiased var.
#[allow(clippy::type_complexity)]
fn ref_groups(x: &[f64], gd: Groups, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<(f64, f64)>) {
    let (cn, sn, gs) = (gd.channels, gd.spatial, gd.channels / gd.groups);
    let mut y = vec![0.0; x.len()];
    let (mut mean, mut invstd) = (vec![], vec![]);
    for n in 0..gd.n {
        for g in 0..gd.groups {
            let idx: Vec<(usize, usize)> = (g * gs..(g + 1) * gs).flat_map(|c| (0..sn).map(move |s| (c, s))).collect();
            let vals: Vec<f64> = idx.iter().map(|&(c, s)| x[off(gd.layout, cn, sn, n, c, s)]).collect();
            let mu = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / vals.len() as f64;
            let is = 1.0 / (var + eps).sqrt();
            for &(c, s) in &idx {
                let o = off(gd.layout, cn, sn, n, c, s);
                y[o] = (x[o] - mu) * is * w.map_or(1.0, |w| w[c]) + b.map_or(0.0, |b| b[c]);
            }
            mean.push(mu);
            invstd.push(is);
        }
    }
    let mut per_nc = vec![];
    for n in 0..gd.n {
        for c in 0..cn {
            let vals: Vec<f64> = (0..sn).map(|s| x[off(gd.layout, cn, sn, n, c, s)]).collect();
            let mu = vals.iter().sum::<f64>() / sn as f64;
            let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / (sn as f64 - 1.0);
            per_nc.push((mu, var));
        }
    }
    (y, mean, invstd, per_nc)
}

/// `dot(dx, v)` by central differences of `sum(dy * f(x + h v))` in f64, for `k` random `v`,
/// compared with the kernel's `dx`; and `dw`, `db` the same way through the parameters.
fn check_directional(ctx: &str, f: &dyn Fn(&[f64], &[f64], &[f64]) -> Vec<f64>, x: &[f32], w: &[f32], b: &[f32], dy: &[f32], grads: (&[f32], &[f32], &[f32]), rng: &mut Rng) {
    let (x64, w64, b64, dy64) = (to_f64(x), to_f64(w), to_f64(b), to_f64(dy));
    let loss = |x: &[f64], w: &[f64], b: &[f64]| f(x, w, b).iter().zip(&dy64).map(|(a, d)| a * d).sum::<f64>();
    let dir = |base: &[f64], v: &[f64], h: f64| base.iter().zip(v).map(|(a, b)| a + h * b).collect::<Vec<f64>>();
    for which in 0..3 {
        let (len, got) = match which {
            0 => (x.len(), grads.0),
            1 => (w.len(), grads.1),
            _ => (b.len(), grads.2),
        };
        if got.is_empty() {
            continue;
        }
        for _ in 0..3 {
            let v: Vec<f64> = (0..len).map(|_| rng.normal()).collect();
            let h = 1e-4;
            let num = match which {
                0 => (loss(&dir(&x64, &v, h), &w64, &b64) - loss(&dir(&x64, &v, -h), &w64, &b64)) / (2.0 * h),
                1 => (loss(&x64, &dir(&w64, &v, h), &b64) - loss(&x64, &dir(&w64, &v, -h), &b64)) / (2.0 * h),
                _ => (loss(&x64, &w64, &dir(&b64, &v, h)) - loss(&x64, &w64, &dir(&b64, &v, -h))) / (2.0 * h),
            };
            let ana: f64 = got.iter().zip(&v).map(|(g, v)| *g as f64 * v).sum();
            // Scale of the terms: |dot| can cancel, so the tolerance is on the 2-norms.
            let scale = got.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt() * (len as f64).sqrt().max(1.0);
            let tol = 2e-4 * scale.max(1.0);
            assert!((num - ana).abs() <= tol, "{ctx}: grad {which}: numeric {num:e}, analytic {ana:e}, tol {tol:e}");
        }
    }
}

// ------------------------------ rows ------------------------------

fn rows_case(rows: usize, len: usize, offset: f64, affine: bool, stat: Stat, seed: u64) {
    let ctx = format!("rows {rows}x{len} offset {offset} affine {affine} {stat:?}");
    let mut rng = Rng::new(seed);
    let x = rng.normal_vec(rows * len, offset, 1.0).iter().enumerate().map(|(i, v)| v * (1.0 + (i / len % 3) as f32)).collect::<Vec<_>>();
    let w = if affine { rng.uniform_vec(len, -1.5, 1.5) } else { vec![] };
    let b = if affine && stat == Stat::Centered { rng.uniform_vec(len, -1.0, 1.0) } else { vec![] };
    fn opt(v: &[f32]) -> Option<&[f32]> {
        (!v.is_empty()).then_some(v)
    }
    let r = Rows::new(rows, len).unwrap();
    let (mut y, mut mean, mut invstd) = (vec![0f32; x.len()], vec![0f32; rows], vec![0f32; rows]);
    rows_forward(&x, &mut y, r, opt(&w), opt(&b), EPS, stat, &mut mean, &mut invstd).unwrap();
    let centered = stat == Stat::Centered;
    let w64 = to_f64(&w);
    let (yr, mr, isr) = ref_rows(&to_f64(&x), rows, len, (!w.is_empty()).then_some(&w64[..]), None, EPS as f64, centered);
    // The reference above without bias; add the bias here (keeps ref_rows' signature small).
    let yr: Vec<f64> = yr.iter().enumerate().map(|(i, v)| v + if b.is_empty() { 0.0 } else { b[i % len] as f64 }).collect();
    let wmax = w.iter().fold(1f64, |m, v| m.max(v.abs() as f64));
    assert_close(&format!("{ctx}: y"), &y, &yr, 1e-4, 1e-5 * wmax);
    assert_close(&format!("{ctx}: mean"), &mean, &mr, 1e-6, 1e-6);
    assert_close(&format!("{ctx}: invstd"), &invstd, &isr, 1e-5, 0.0);
    // Backward.
    let dy = rng.normal_vec(x.len(), 0.0, 1.0);
    let mut dx = vec![0f32; x.len()];
    let (mut dw, mut db) = (vec![0f32; w.len()], vec![0f32; b.len()]);
    rows_backward(&dy, &x, &mut dx, r, opt(&w), &mean, &invstd, stat, (!dw.is_empty()).then_some(&mut dw[..]), (!db.is_empty()).then_some(&mut db[..])).unwrap();
    assert!(dx.iter().all(|v| v.is_finite()), "{ctx}: dx finite");
    let f = |x: &[f64], w: &[f64], b: &[f64]| {
        let (y, _, _) = ref_rows(x, rows, len, (!w.is_empty()).then_some(w), (!b.is_empty()).then_some(b), EPS as f64, centered);
        y
    };
    // Finite differences on a 1e4 offset lose digits to the offset itself; the offset case
    // is checked against the textbook formula below instead.
    if offset == 0.0 {
        check_directional(&ctx, &f, &x, &w, &b, &dy, (&dx, &dw, &db), &mut rng);
    }
    // Textbook formula in f64 on the saved statistics (what backward is specified on, as
    // in PyTorch, which saves an f32 mean too: with a 1e4 offset its rounding is visible).
    let (mr, isr) = (to_f64(&mean), to_f64(&invstd));
    let mut want = vec![0f64; x.len()];
    let (mut wdw, mut wdb) = (vec![0f64; len], vec![0f64; len]);
    for r_ in 0..rows {
        let s = r_ * len;
        let xhat: Vec<f64> = (0..len).map(|d| (x[s + d] as f64 - mr[r_]) * isr[r_]).collect();
        let g: Vec<f64> = (0..len).map(|d| dy[s + d] as f64 * if w.is_empty() { 1.0 } else { w[d] as f64 }).collect();
        let mg = if centered { g.iter().sum::<f64>() / len as f64 } else { 0.0 };
        let mgx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / len as f64;
        for d in 0..len {
            want[s + d] = isr[r_] * (g[d] - mg - xhat[d] * mgx);
            wdw[d] += dy[s + d] as f64 * xhat[d];
            wdb[d] += dy[s + d] as f64;
        }
    }
    let gmax = isr.iter().fold(0f64, |m, v| m.max(*v)) * wmax;
    assert_close(&format!("{ctx}: dx"), &dx, &want, 1e-3, 1e-4 * gmax);
    let colscale = (rows as f64).sqrt() * 3.0;
    if !dw.is_empty() {
        assert_close(&format!("{ctx}: dweight"), &dw, &wdw, 1e-4, 1e-4 * colscale);
    }
    if !db.is_empty() {
        assert_close(&format!("{ctx}: dbias"), &db, &wdb, 1e-4, 1e-4 * colscale);
    }
}

#[test]
fn layer_norm_and_rms_norm_match_f64_reference() {
    let mut seed = 1;
    for &(rows, len) in &[(1, 1), (3, 5), (7, 64), (5, 67), (9, 256), (4, 768), (2, 4099), (300, 13)] {
        for affine in [true, false] {
            for stat in [Stat::Centered, Stat::MeanSquare] {
                rows_case(rows, len, 0.0, affine, stat, seed);
                seed += 1;
            }
            rows_case(rows, len, 1e4, affine, Stat::Centered, seed);
            seed += 1;
        }
    }
}

/// The per-row statistics are corrected two-pass moments per 2048-value cache block,
/// merged in f64; blocks after a row's first take the row's mean so far as their shift
/// and skip their own first pass (`moments::merge_run`), unless that shift turns out
/// more than a standard deviation from the block's mean, when the block is redone with its
/// own. Rows with a mean far above the spread, with spikes, and rows whose blocks step or
/// drift away from the earlier blocks' mean (by 0.3, 10 and 1e3 standard deviations a
/// block, so some blocks keep the borrowed shift and some are redone) must all get the
/// two-pass accuracy: mean and invstd against f64 on the same f32 inputs. (The fallback is
/// what makes a bad shift harmless: with every later block's shift forced to 0 this test
/// still passes, and with the fallback switched off as well the -3e5 rows fail it.)
#[test]
fn row_statistics_stay_exact_when_blocks_move_away_from_the_mean() {
    const BLOCK: usize = 2048;
    let mut rng = Rng::new(77);
    let mut worst = 0f64;
    let shapes = [(768, 0.0, 1.0), (2048, 1e4, 1.0), (768, 1e4, 0.1), (768, 1e6, 1.0), (5000, -3e5, 0.5), (64, 1e4, 0.1), (9000, 1e4, 1.0), (6272, 0.0, 2.0)];
    for &(len, offset, std) in &shapes {
        for (spikes, step) in [(false, 0.0), (true, 0.0), (false, 0.3), (false, 10.0), (false, -1e3), (false, 1e20)] {
            let rows = 3;
            let mut x = rng.normal_vec(rows * len, offset, std);
            for (i, v) in x.iter_mut().enumerate() {
                // Block k of each row moves by k * step standard deviations.
                *v += ((i % len / BLOCK) as f64 * step * std) as f32;
            }
            if spikes {
                for r in 0..rows {
                    for b0 in (0..len).step_by(BLOCK) {
                        let bl = BLOCK.min(len - b0);
                        for k in 0..4 {
                            let c = r * len + b0 + (2 * k + 1) * bl / 8 - 2;
                            x[c..c + 4].iter_mut().for_each(|v| *v += (200.0 * std) as f32);
                        }
                    }
                }
            }
            let ctx = format!("rows of {len}, {offset} + N(0, {std}), spikes {spikes}, {step} std a block");
            let r = Rows::new(rows, len).unwrap();
            let (mut y, mut mean, mut invstd) = (vec![0f32; x.len()], vec![0f32; rows], vec![0f32; rows]);
            rows_forward(&x, &mut y, r, None, None, 0.0, Stat::Centered, &mut mean, &mut invstd).unwrap();
            let (_, mr, isr) = ref_rows(&to_f64(&x), rows, len, None, None, 0.0, true);
            // The spread of the whole row: the steps add to the noise's.
            let sd = 1.0 / isr.iter().cloned().fold(f64::INFINITY, f64::min);
            // The mean is saved as f32 (half an ulp of rounding), and its f32 lane sums are
            // of deviations: their error scales with the spread.
            assert_close(&format!("{ctx}: mean"), &mean, &mr, 1e-7, 1e-6 * sd);
            assert_close(&format!("{ctx}: invstd"), &invstd, &isr, 2e-6, 0.0);
            worst = worst.max(worst_ratio(&invstd, &isr, 2e-6, 0.0));
        }
    }
    eprintln!("worst invstd error / tolerance: {worst:.3}");
}

/// Short rows are taken four at a time (`rows::forward`), with the same operations on
/// each row as one at a time: every row's `y`, mean and invstd are the bits of that row
/// normalised alone (a one-row call never groups), for row counts that leave 0-3 rows
/// over, both statistics, a large offset, rows of planes (GroupNorm and InstanceNorm
/// channels-first: a parameter per plane, by group), and GroupNorm of one value per
/// channel, whose rows (a sample's groups) take their parameters by group: grouped across
/// samples in the batch, one sample at a time (three groups) alone.
#[test]
fn short_rows_in_groups_give_the_bits_of_rows_alone() {
    let mut rng = Rng::new(31);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    // (len, inner, period): LayerNorm's rows (a parameter per value), then GroupNorm's
    // channels-first rows (a parameter per plane of `inner` values, by group).
    let shapes = [1, 3, 5, 64, 67, 256].map(|len| (len, 1, 1)).into_iter().chain([(20, 5, 3), (49, 49, 12), (256, 64, 2)]);
    for (len, inner, period) in shapes {
        let per_row = len / inner;
        for rows in [4, 9, 11] {
            for (stat, offset) in [(Stat::Centered, 0.0), (Stat::Centered, 1e4), (Stat::MeanSquare, 0.0)] {
                let ctx = format!("{rows} rows of {len} (planes of {inner}, {period} groups), {stat:?}, offset {offset}");
                let x = rng.normal_vec(rows * len, offset, 2.0);
                let (w, b) = (rng.uniform_vec(period * per_row, -1.5, 1.5), rng.uniform_vec(period * per_row, -1.0, 1.0));
                let (mut y, mut mean, mut invstd) = (vec![0f32; x.len()], vec![0f32; rows], vec![0f32; rows]);
                let all = Rows::planes(rows, len, inner, period).unwrap();
                rows_forward(&x, &mut y, all, Some(&w), Some(&b), EPS, stat, &mut mean, &mut invstd).unwrap();
                for r in 0..rows {
                    let row = r * len..(r + 1) * len;
                    let p = (r % period) * per_row..(r % period + 1) * per_row;
                    let (mut y1, mut m1, mut is1) = (vec![0f32; len], [0f32], [0f32]);
                    let one = Rows::planes(1, len, inner, 1).unwrap();
                    rows_forward(&x[row.clone()], &mut y1, one, Some(&w[p.clone()]), Some(&b[p]), EPS, stat, &mut m1, &mut is1).unwrap();
                    assert_eq!(bits(&y[row]), bits(&y1), "{ctx}: y of row {r}");
                    assert_eq!((mean[r].to_bits(), invstd[r].to_bits()), (m1[0].to_bits(), is1[0].to_bits()), "{ctx}: statistics of row {r}");
                }
            }
        }
    }
    let (n, c, groups) = (7, 12, 3);
    let gd = Groups::new(n, c, 1, groups, Layout::ChannelsFirst).unwrap();
    let x = rng.normal_vec(gd.len(), 3.0, 2.0);
    let (w, b) = (rng.uniform_vec(c, -1.5, 1.5), rng.uniform_vec(c, -1.0, 1.0));
    let (mut y, mut mean, mut invstd) = (vec![0f32; x.len()], vec![0f32; gd.stats()], vec![0f32; gd.stats()]);
    groups_forward(&x, &mut y, gd, Some(&w), Some(&b), EPS, &mut mean, &mut invstd, None).unwrap();
    for k in 0..n {
        let one = Groups::new(1, c, 1, groups, Layout::ChannelsFirst).unwrap();
        let (mut y1, mut m1, mut is1) = (vec![0f32; c], vec![0f32; groups], vec![0f32; groups]);
        groups_forward(&x[k * c..(k + 1) * c], &mut y1, one, Some(&w), Some(&b), EPS, &mut m1, &mut is1, None).unwrap();
        assert_eq!(bits(&y[k * c..(k + 1) * c]), bits(&y1), "GroupNorm of one value per channel: y of sample {k}");
        assert_eq!(bits(&mean[k * groups..(k + 1) * groups]), bits(&m1), "GroupNorm: mean of sample {k}");
        assert_eq!(bits(&invstd[k * groups..(k + 1) * groups]), bits(&is1), "GroupNorm: invstd of sample {k}");
    }
}

#[test]
fn rows_on_the_thread_pool() {
    on_pool(|| {
        for &(rows, len) in &[(4096, 64), (700, 768), (33, 5000)] {
            rows_case(rows, len, 0.0, true, Stat::Centered, 100 + len as u64);
            rows_case(rows, len, 0.0, true, Stat::MeanSquare, 200 + len as u64);
            rows_case(rows, len, 1e4, true, Stat::Centered, 300 + len as u64);
        }
    });
}

// ------------------------------ groups ------------------------------

fn groups_case(n: usize, c: usize, s: usize, groups: usize, layout: Layout, affine: bool, offset: f64, seed: u64) {
    let ctx = format!("groups N{n} C{c} S{s} G{groups} {layout:?} affine {affine} offset {offset}");
    let mut rng = Rng::new(seed);
    let gd = Groups::new(n, c, s, groups, layout).unwrap();
    let x = rng.normal_vec(gd.len(), offset, 2.0);
    let w = if affine { rng.uniform_vec(c, -1.5, 1.5) } else { vec![] };
    let b = if affine { rng.uniform_vec(c, -1.0, 1.0) } else { vec![] };
    fn opt(v: &[f32]) -> Option<&[f32]> {
        (!v.is_empty()).then_some(v)
    }
    let (mut y, mut mean, mut invstd) = (vec![0f32; x.len()], vec![0f32; gd.stats()], vec![0f32; gd.stats()]);
    let track = groups == c && s > 1;
    let (mut rm, mut rv) = (rng.uniform_vec(c, -1.0, 1.0), rng.uniform_vec(c, 0.5, 2.0));
    let (rm0, rv0) = (rm.clone(), rv.clone());
    let running = track.then(|| InstanceRunning { mean: &mut rm, var: &mut rv, momentum: 0.1 });
    groups_forward(&x, &mut y, gd, opt(&w), opt(&b), EPS, &mut mean, &mut invstd, running).unwrap();
    let (w64, b64) = (to_f64(&w), to_f64(&b));
    let (yr, mr, isr, per_nc) = ref_groups(&to_f64(&x), gd, (!w.is_empty()).then_some(&w64), (!b.is_empty()).then_some(&b64), EPS as f64);
    let wmax = w.iter().fold(1f64, |m, v| m.max(v.abs() as f64));
    assert_close(&format!("{ctx}: y"), &y, &yr, 1e-4, 1e-5 * wmax);
    assert_close(&format!("{ctx}: mean"), &mean, &mr, 1e-6, 1e-6);
    assert_close(&format!("{ctx}: invstd"), &invstd, &isr, 1e-5, 0.0);
    if track {
        let want_m: Vec<f64> = (0..c).map(|ch| 0.9 * rm0[ch] as f64 + 0.1 * (0..n).map(|k| per_nc[k * c + ch].0).sum::<f64>() / n as f64).collect();
        let want_v: Vec<f64> = (0..c).map(|ch| 0.9 * rv0[ch] as f64 + 0.1 * (0..n).map(|k| per_nc[k * c + ch].1).sum::<f64>() / n as f64).collect();
        assert_close(&format!("{ctx}: running mean"), &rm, &want_m, 1e-5, 1e-6);
        assert_close(&format!("{ctx}: running var"), &rv, &want_v, 1e-5, 1e-6);
    }
    let dy = rng.normal_vec(x.len(), 0.0, 1.0);
    let mut dx = vec![0f32; x.len()];
    let (mut dw, mut db) = (vec![0f32; w.len()], vec![0f32; b.len()]);
    groups_backward(&dy, &x, &mut dx, gd, opt(&w), &mean, &invstd, (!dw.is_empty()).then_some(&mut dw[..]), (!db.is_empty()).then_some(&mut db[..])).unwrap();
    if offset == 0.0 {
        let f = |x: &[f64], w: &[f64], b: &[f64]| ref_groups(x, gd, (!w.is_empty()).then_some(w), (!b.is_empty()).then_some(b), EPS as f64).0;
        check_directional(&ctx, &f, &x, &w, &b, &dy, (&dx, &dw, &db), &mut rng);
    }
    // Textbook formula in f64 on the saved statistics (see rows_case).
    let (mr, isr) = (to_f64(&mean), to_f64(&invstd));
    let gs = c / groups;
    let mut want = vec![0f64; x.len()];
    let (mut wdw, mut wdb) = (vec![0f64; c], vec![0f64; c]);
    for k in 0..n {
        for g in 0..groups {
            let st = k * groups + g;
            let idx: Vec<(usize, usize)> = (g * gs..(g + 1) * gs).flat_map(|ch| (0..s).map(move |sp| (ch, sp))).collect();
            let m = idx.len() as f64;
            let (mut mg, mut mgx) = (0.0, 0.0);
            for &(ch, sp) in &idx {
                let o = off(layout, c, s, k, ch, sp);
                let gv = dy[o] as f64 * if w.is_empty() { 1.0 } else { w[ch] as f64 };
                let xhat = (x[o] as f64 - mr[st]) * isr[st];
                mg += gv / m;
                mgx += gv * xhat / m;
                wdw[ch] += dy[o] as f64 * xhat;
                wdb[ch] += dy[o] as f64;
            }
            for &(ch, sp) in &idx {
                let o = off(layout, c, s, k, ch, sp);
                let gv = dy[o] as f64 * if w.is_empty() { 1.0 } else { w[ch] as f64 };
                let xhat = (x[o] as f64 - mr[st]) * isr[st];
                want[o] = isr[st] * (gv - mg - xhat * mgx);
            }
        }
    }
    let gmax = isr.iter().fold(0f64, |m, v| m.max(*v)) * wmax;
    assert_close(&format!("{ctx}: dx"), &dx, &want, 1e-3, 1e-4 * gmax);
    let colscale = ((n * s) as f64).sqrt() * 3.0;
    if affine {
        assert_close(&format!("{ctx}: dweight"), &dw, &wdw, 1e-4, 1e-4 * colscale);
        assert_close(&format!("{ctx}: dbias"), &db, &wdb, 1e-4, 1e-4 * colscale);
    }
}

#[test]
fn group_norm_and_instance_norm_match_f64_reference() {
    let mut seed = 1000;
    for &(n, c, s, g) in &[(1, 1, 1, 1), (2, 4, 5, 2), (3, 6, 7, 3), (2, 6, 9, 6), (1, 12, 1, 4), (2, 8, 33, 1), (4, 32, 17, 8), (2, 5, 64, 5), (3, 4, 4099, 2)] {
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            for affine in [true, false] {
                groups_case(n, c, s, g, layout, affine, 0.0, seed);
                groups_case(n, c, s, g, layout, affine, 1e4, seed + 1);
                seed += 2;
            }
        }
    }
}

#[test]
fn groups_on_the_thread_pool() {
    on_pool(|| {
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            groups_case(4, 32, 700, 8, layout, true, 0.0, 7);
            groups_case(3, 16, 1500, 16, layout, true, 1e4, 8);
        }
    });
}

#[test]
fn bad_inputs_are_rejected_before_any_write() {
    assert!(matches!(Groups::new(2, 6, 4, 4, Layout::ChannelsFirst), Err(BnError::Shape(_))));
    assert!(matches!(Groups::new(2, 6, 4, 0, Layout::ChannelsFirst), Err(BnError::Shape(_))));
    assert!(matches!(Rows::new(0, 4), Err(BnError::Shape(_))));
    let r = Rows::new(2, 4).unwrap();
    let x = vec![1f32; 8];
    let mut y = vec![7f32; 8];
    let (mut m, mut is) = (vec![7f32; 2], vec![7f32; 2]);
    let w = vec![1f32; 3];
    assert!(matches!(rows_forward(&x, &mut y, r, Some(&w), None, EPS, Stat::Centered, &mut m, &mut is), Err(BnError::Length(_))));
    assert!(matches!(rows_forward(&x, &mut y, r, None, None, -1.0, Stat::Centered, &mut m, &mut is), Err(BnError::Option(_))));
    assert!(y.iter().chain(&m).chain(&is).all(|&v| v == 7.0));
    // InstanceNorm with running statistics needs more than one spatial element.
    let g = Groups::new(2, 3, 1, 3, Layout::ChannelsFirst).unwrap();
    let x = vec![1f32; 6];
    let mut y = vec![7f32; 6];
    let (mut m, mut is) = (vec![7f32; 6], vec![7f32; 6]);
    let (mut rm, mut rv) = (vec![7f32; 3], vec![7f32; 3]);
    let running = Some(InstanceRunning { mean: &mut rm, var: &mut rv, momentum: 0.1 });
    assert!(matches!(groups_forward(&x, &mut y, g, None, None, EPS, &mut m, &mut is, running), Err(BnError::TooFewValues(_))));
    assert!(y.iter().chain(&m).chain(&is).chain(&rm).chain(&rv).all(|&v| v == 7.0));
}
