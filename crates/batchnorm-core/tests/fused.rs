//! Fused ReLU / residual-add+ReLU against the unfused composition, bit for bit: forward
//! `relu(BN(x) + z)` against BN, then `+ z`, then ReLU as separate loops; backward through
//! the ReLU (mask from its output) against a separate mask pass followed by the plain
//! backward; dz against the masked dy. Both layouts, all test shapes, training and eval,
//! sequential and (with `--features parallel`) on the pool.

mod common;

use batchnorm_core::{
    backward, backward_eval, backward_eval_fused, backward_fused, backward_fused_dz_over_dy, eval_forward, eval_forward_fused,
    train_forward, train_forward_fused, Affine, Fused, ReluGrad,
};
use batchnorm_core::{
    backward::Gate,
    passes::mask::{mask_words, unit_len},
};
use common::*;

fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits(), "{what}: element {i}: fused {g} ({:#x}) != unfused {w} ({:#x})", g.to_bits(), w.to_bits());
    }
}

struct Data {
    x: Vec<f32>,
    z: Vec<f32>,
    dy: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
}

fn data(rng: &mut Rng, sh: &Shape) -> Data {
    let c = sh.channels();
    Data {
        x: channel_data(rng, sh),
        z: rng.normal_vec(sh.len(), 0.0, 1.0),
        dy: rng.normal_vec(sh.len(), 0.0, 1.0),
        w: rng.uniform_vec(c, 0.5, 1.5),
        // Biases around 0 so that about half of the outputs are clipped.
        b: rng.uniform_vec(c, -0.5, 0.5),
        rm: rng.uniform_vec(c, -1.0, 1.0),
        rv: rng.uniform_vec(c, 0.5, 2.0),
    }
}

fn forward_and_backward_match(sh: &Shape, with_z: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let d = data(&mut rng, sh);
    let (dims, n, ch) = (sh.bn_dims(), sh.len(), sh.channels());
    let affine = Affine { weight: Some(&d.w), bias: Some(&d.b) };
    let z = with_z.then_some(d.z.as_slice());
    let ctx = format!("{:?} {:?} z={with_z}", sh.dims, sh.layout);

    // Training forward: unfused BN, + z, ReLU.
    let (mut ybn, mut mean, mut invstd) = (vec![0f32; n], vec![0f32; ch], vec![0f32; ch]);
    train_forward(&d.x, &mut ybn, dims, affine, None, 1e-5, &mut mean, &mut invstd).unwrap();
    let unfused: Vec<f32> = (0..n).map(|i| relu(if with_z { ybn[i] + d.z[i] } else { ybn[i] })).collect();
    let (mut y, mut mean2, mut invstd2) = (vec![f32::NAN; n], vec![0f32; ch], vec![0f32; ch]);
    train_forward_fused(&d.x, &mut y, dims, affine, None, 1e-5, &mut mean2, &mut invstd2, Fused { relu: true, z, mask: None }).unwrap();
    assert_bits(&format!("{ctx}: train y"), &y, &unfused);
    assert_bits(&format!("{ctx}: mean"), &mean2, &mean);
    if n >= 16 {
        assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0), "{ctx}: the ReLU must clip some values and pass others");
    }

    // The same forward writing the 1-bit mask: y unchanged, and bit i of unit u set
    // exactly where y > 0 (the layout of passes/mask.rs, checked here element by element).
    let mut words = vec![0xDEAD_BEEFu32; mask_words(dims)];
    let mut ym = vec![f32::NAN; n];
    let fm = Fused { relu: true, z, mask: Some(&mut words) };
    train_forward_fused(&d.x, &mut ym, dims, affine, None, 1e-5, &mut mean2, &mut invstd2, fm).unwrap();
    assert_bits(&format!("{ctx}: train y with a mask"), &ym, &unfused);
    assert_mask(&format!("{ctx}: train mask"), &words, &y, unit_len(dims));

    // Eval forward.
    let mut ebn = vec![0f32; n];
    eval_forward(&d.x, &mut ebn, dims, affine, &d.rm, &d.rv, 1e-5).unwrap();
    let eunfused: Vec<f32> = (0..n).map(|i| relu(if with_z { ebn[i] + d.z[i] } else { ebn[i] })).collect();
    let mut ey = vec![f32::NAN; n];
    eval_forward_fused(&d.x, &mut ey, dims, affine, &d.rm, &d.rv, 1e-5, Fused { relu: true, z, mask: None }).unwrap();
    assert_bits(&format!("{ctx}: eval y"), &ey, &eunfused);
    let mut ewords = vec![0xDEAD_BEEFu32; mask_words(dims)];
    let mut eym = vec![f32::NAN; n];
    eval_forward_fused(&d.x, &mut eym, dims, affine, &d.rm, &d.rv, 1e-5, Fused { relu: true, z, mask: Some(&mut ewords) }).unwrap();
    assert_bits(&format!("{ctx}: eval y with a mask"), &eym, &eunfused);
    assert_mask(&format!("{ctx}: eval mask"), &ewords, &ey, unit_len(dims));

    // Backward: the ReLU's gradient pass, then plain BN backward.
    let g: Vec<f32> = (0..n).map(|i| if y[i] > 0.0 { d.dy[i] } else { 0.0 }).collect();
    for training in [true, false] {
        let (mut dx, mut dw, mut db) = (vec![0f32; n], vec![0f32; ch], vec![0f32; ch]);
        let f = if training { backward } else { backward_eval };
        f(&g, &d.x, &mut dx, dims, Some(&d.w), &mean, &invstd, Some(&mut dw), Some(&mut db)).unwrap();
        let (mut fdx, mut fdw, mut fdb, mut fdz) = (vec![f32::NAN; n], vec![0f32; ch], vec![0f32; ch], vec![f32::NAN; n]);
        let ff = if training { backward_fused } else { backward_eval_fused };
        let relu_grad = ReluGrad { gate: Gate::Output(&y), dz: with_z.then_some(fdz.as_mut_slice()) };
        ff(&d.dy, &d.x, &mut fdx, dims, Some(&d.w), &mean, &invstd, Some(&mut fdw), Some(&mut fdb), Some(relu_grad)).unwrap();
        let c = format!("{ctx} training={training}");
        assert_bits(&format!("{c}: dx"), &fdx, &dx);
        assert_bits(&format!("{c}: dweight"), &fdw, &dw);
        assert_bits(&format!("{c}: dbias"), &fdb, &db);
        if with_z {
            assert_bits(&format!("{c}: dz"), &fdz, &g);
        }
        // The bit mask in place of y: the same bits everywhere.
        let (mut mdx, mut mdw, mut mdb, mut mdz) = (vec![f32::NAN; n], vec![0f32; ch], vec![0f32; ch], vec![f32::NAN; n]);
        let relu_grad = ReluGrad { gate: Gate::Bits(&words), dz: with_z.then_some(mdz.as_mut_slice()) };
        ff(&d.dy, &d.x, &mut mdx, dims, Some(&d.w), &mean, &invstd, Some(&mut mdw), Some(&mut mdb), Some(relu_grad)).unwrap();
        assert_bits(&format!("{c}: dx from the bit mask"), &mdx, &dx);
        assert_bits(&format!("{c}: dweight from the bit mask"), &mdw, &dw);
        assert_bits(&format!("{c}: dbias from the bit mask"), &mdb, &db);
        if with_z {
            assert_bits(&format!("{c}: dz from the bit mask"), &mdz, &g);
        }
        // dz written over dy: the same dx, dweight, dbias, and dy turned into dz.
        if with_z && training {
            for (gate, how) in [(Gate::Output(&y), "y"), (Gate::Bits(&words), "the bit mask")] {
                let mut dy_dz = d.dy.clone();
                let (mut idx, mut idw, mut idb) = (vec![f32::NAN; n], vec![0f32; ch], vec![0f32; ch]);
                backward_fused_dz_over_dy(&mut dy_dz, &d.x, &mut idx, dims, Some(&d.w), &mean, &invstd, Some(&mut idw), Some(&mut idb), gate).unwrap();
                assert_bits(&format!("{c}: dx, dz over dy, from {how}"), &idx, &dx);
                assert_bits(&format!("{c}: dweight, dz over dy, from {how}"), &idw, &dw);
                assert_bits(&format!("{c}: dbias, dz over dy, from {how}"), &idb, &db);
                assert_bits(&format!("{c}: dz over dy, from {how}"), &dy_dz, &g);
            }
        }
    }
}

/// Every unit (of `unit` elements) starts a word; element i of unit u is bit i % 32 of
/// word u * ceil(unit / 32) + i / 32, set iff y > 0; padding bits are 0.
fn assert_mask(what: &str, words: &[u32], y: &[f32], unit: usize) {
    let wpu = unit.div_ceil(32);
    assert_eq!(words.len(), y.len() / unit * wpu, "{what}: words");
    for (u, yu) in y.chunks(unit).enumerate() {
        for i in 0..wpu * 32 {
            let got = (words[u * wpu + i / 32] >> (i % 32)) & 1 == 1;
            let want = i < unit && yu[i] > 0.0;
            assert_eq!(got, want, "{what}: unit {u} element {i}");
        }
    }
}

#[test]
fn fused_equals_unfused_composition() {
    let mut seed = 1;
    for sh in small_shapes() {
        if sh.count() < 2 {
            continue;
        }
        for with_z in [false, true] {
            seed += 1;
            forward_and_backward_match(&sh, with_z, seed);
        }
    }
}

#[test]
fn fused_equals_unfused_composition_on_the_pool() {
    on_pool(|| {
        for (k, dims) in [&[8usize, 6, 33, 17][..], &[4, 40, 7], &[300, 9]].iter().enumerate() {
            for sh in [Shape::cf(dims), Shape::cl(dims)] {
                forward_and_backward_match(&sh, k % 2 == 0, 100 + k as u64);
                forward_and_backward_match(&sh, k % 2 == 1, 200 + k as u64);
            }
        }
    });
}

/// Channels-last tensors above `CACHED_ELEMS` (main-memory data: rows two at a time up to
/// 96 channels, one at a time above), with channel counts that end in a part of a step of
/// four quads, a part of a mask word, and single channels (20, 36, 100, 130), and whole
/// words (64): the mask's packing in `affine::rows` at each.
#[test]
fn fused_channels_last_beyond_the_cache_size() {
    use batchnorm_core::passes::CACHED_ELEMS;
    for (k, c) in [20usize, 36, 64, 100, 130].into_iter().enumerate() {
        let rows = CACHED_ELEMS / c + 3;
        forward_and_backward_match(&Shape::cl(&[rows, c]), k % 2 == 0, 300 + k as u64);
    }
}

/// The ReLU's backward uses its output: a value normalised to exactly 0 passes no
/// gradient (PyTorch's `threshold_backward(grad, output, 0)`), and NaN inputs stay NaN.
#[test]
fn relu_kink_and_nan() {
    let sh = Shape::cf(&[4, 1, 1]);
    let dims = sh.bn_dims();
    // mean 0, so x = 0 normalises to exactly 0.
    let x = [-1f32, 0.0, 0.0, 1.0];
    let (mut y, mut mean, mut invstd) = ([0f32; 4], [0f32; 1], [0f32; 1]);
    train_forward_fused(&x, &mut y, dims, Affine::default(), None, 1e-5, &mut mean, &mut invstd, Fused { relu: true, z: None, mask: None })
        .unwrap();
    assert_eq!(y[0], 0.0);
    assert_eq!(y[1].to_bits(), 0f32.to_bits());
    assert!(y[3] > 0.0);
    let dy = [1f32, 1.0, 1.0, 1.0];
    let mut dz = [f32::NAN; 4];
    let mut dx = [0f32; 4];
    let rg = ReluGrad { gate: Gate::Output(&y), dz: Some(&mut dz) };
    backward_fused(&dy, &x, &mut dx, dims, None, &mean, &invstd, None, None, Some(rg)).unwrap();
    assert_eq!(dz, [0.0, 0.0, 0.0, 1.0]);
    // The bit mask of the same forward agrees at the kink.
    let mut words = [0u32; 4];
    train_forward_fused(
        &x,
        &mut y,
        dims,
        Affine::default(),
        None,
        1e-5,
        &mut mean,
        &mut invstd,
        Fused { relu: true, z: None, mask: Some(&mut words) },
    )
    .unwrap();
    assert_eq!(words, [0, 0, 0, 1], "one word per plane of one element");
    let mut dz = [f32::NAN; 4];
    let rg = ReluGrad { gate: Gate::Bits(&words), dz: Some(&mut dz) };
    backward_fused(&dy, &x, &mut dx, dims, None, &mean, &invstd, None, None, Some(rg)).unwrap();
    assert_eq!(dz, [0.0, 0.0, 0.0, 1.0]);

    let xn = [1f32, 2.0, f32::NAN, 3.0];
    let (mut yn, mut rm, mut rv) = ([0f32; 4], [0f32; 1], [1f32; 1]);
    rm[0] = 0.0;
    let _ = &mut rv;
    eval_forward_fused(&xn, &mut yn, dims, Affine::default(), &rm, &rv, 0.0, Fused { relu: true, z: None, mask: None }).unwrap();
    assert!(yn[2].is_nan(), "relu(NaN) must be NaN, as in PyTorch, got {}", yn[2]);
}

#[test]
fn fused_length_errors_change_nothing() {
    let sh = Shape::cf(&[2, 3, 4]);
    let dims = sh.bn_dims();
    let x = vec![1f32; 24];
    let z = vec![0f32; 23];
    let mut y = vec![7f32; 24];
    let (mut m, mut s) = (vec![7f32; 3], vec![7f32; 3]);
    let e =
        train_forward_fused(&x, &mut y, dims, Affine::default(), None, 1e-5, &mut m, &mut s, Fused { relu: true, z: Some(&z), mask: None });
    assert!(e.is_err());
    assert!(y.iter().chain(&m).chain(&s).all(|&v| v == 7.0));
    let mut dx = vec![7f32; 24];
    let short = vec![1f32; 5];
    let rg = ReluGrad { gate: Gate::Output(&short), dz: None };
    assert!(backward_fused(&x, &x, &mut dx, dims, None, &m, &s, None, None, Some(rg)).is_err());
    assert!(dx.iter().all(|&v| v == 7.0));
    // Masks: the wrong number of words, or a mask without the ReLU it belongs to.
    assert_eq!(mask_words(dims), 6, "(2,3,4) channels-first: 6 planes of 4, a word each");
    let mut short_mask = vec![7u32; 5];
    let e = train_forward_fused(
        &x,
        &mut y,
        dims,
        Affine::default(),
        None,
        1e-5,
        &mut m,
        &mut s,
        Fused { relu: true, z: None, mask: Some(&mut short_mask) },
    );
    assert!(e.is_err());
    let mut mask = vec![7u32; 6];
    let e = train_forward_fused(
        &x,
        &mut y,
        dims,
        Affine::default(),
        None,
        1e-5,
        &mut m,
        &mut s,
        Fused { relu: false, z: None, mask: Some(&mut mask) },
    );
    assert!(e.is_err());
    assert!(y.iter().chain(&m).chain(&s).all(|&v| v == 7.0) && short_mask.iter().chain(&mask).all(|&w| w == 7));
    let rg = ReluGrad { gate: Gate::Bits(&short_mask), dz: None };
    assert!(backward_fused(&x, &x, &mut dx, dims, None, &m, &s, None, None, Some(rg)).is_err());
    assert!(dx.iter().all(|&v| v == 7.0));
}
