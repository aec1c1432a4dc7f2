//! Rejected calls: each returns the right `BnError` variant AND leaves every output and
//! the running statistics exactly as they were (all validation happens before any write).

#![allow(clippy::type_complexity)]

mod common;

use batchnorm_core::{
    backward, backward_eval, check_eps, check_momentum, eval_forward, normalize, train_forward, Affine, BnError,
    Convention, Dims, Layout, Running,
};
use common::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Shape,
    Length,
    Option,
    TooFewValues,
}

fn kind(e: &BnError) -> Kind {
    match e {
        BnError::Shape(_) => Kind::Shape,
        BnError::Length(_) => Kind::Length,
        BnError::Option(_) => Kind::Option,
        BnError::TooFewValues(_) => Kind::TooFewValues,
    }
}

/// Sentinels every output buffer starts with; a rejected call must leave them bit for bit.
const Y0: f32 = 42.5;
const RM0: f32 = -3.25;
const RV0: f32 = 7.75;
const S0: f32 = 13.0;

#[test]
fn dims_rejects_bad_shapes() {
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        for shape in [&[][..], &[5], &[0]] {
            let e = Dims::new(shape, layout).unwrap_err();
            assert_eq!(kind(&e), Kind::Shape, "{shape:?} {layout:?}: {e}");
            assert!(!e.to_string().is_empty());
        }
        for shape in [&[0, 3][..], &[2, 0], &[2, 3, 0], &[2, 3, 4, 0, 5], &[0, 0]] {
            let e = Dims::new(shape, layout).unwrap_err();
            assert_eq!(kind(&e), Kind::Shape, "{shape:?} {layout:?}: {e}");
        }
        let e = Dims::new(&[usize::MAX, 2, 2], layout).unwrap_err();
        assert_eq!(kind(&e), Kind::Shape, "overflow: {e}");
    }
    // and accepts the smallest legal ones
    assert_eq!(Dims::new(&[1, 1], Layout::ChannelsFirst).unwrap().len(), 1);
    assert_eq!(Dims::new(&[1, 1, 1, 1, 1, 1], Layout::ChannelsLast).unwrap().len(), 1);
}

#[test]
fn option_checks() {
    for eps in [f32::NAN, -1e-5, -1.0, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(kind(&check_eps(eps).unwrap_err()), Kind::Option, "eps {eps}");
    }
    for eps in [0.0, -0.0, 1e-5, 1.0, 1e30] {
        check_eps(eps).unwrap();
    }
    for m in [f32::NAN, -0.1, 1.1, -1e-9, 1.0000001, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(kind(&check_momentum(m).unwrap_err()), Kind::Option, "momentum {m}");
    }
    for m in [0.0, 0.1, 0.9, 1.0] {
        check_momentum(m).unwrap();
    }
}

/// A valid training-forward setup that a test corrupts in one place.
#[derive(Clone)]
struct Train {
    shape: Vec<usize>,
    layout: Layout,
    x: Vec<f32>,
    y: Vec<f32>,
    w: Option<Vec<f32>>,
    b: Option<Vec<f32>>,
    rm: Vec<f32>,
    rv: Vec<f32>,
    sm: Vec<f32>,
    si: Vec<f32>,
    momentum: f32,
    eps: f32,
    running: bool,
}

impl Train {
    fn new(shape: &[usize], layout: Layout) -> Self {
        let sh = Shape::new(shape, layout);
        let ch = sh.channels();
        let mut rng = Rng::new(1);
        Train {
            shape: shape.to_vec(),
            layout,
            x: rng.normal_vec(sh.len(), 0.0, 1.0),
            y: vec![Y0; sh.len()],
            w: Some(vec![1.5; ch]),
            b: Some(vec![0.5; ch]),
            rm: vec![RM0; ch],
            rv: vec![RV0; ch],
            sm: vec![S0; ch],
            si: vec![S0; ch],
            momentum: 0.1,
            eps: 1e-5,
            running: true,
        }
    }

    /// Runs train_forward (or eval_forward when `eval`) and returns the result, checking
    /// that an error left everything untouched.
    fn run(mut self, eval: bool) -> Result<(), BnError> {
        let dims = Dims::new(&self.shape, self.layout)?;
        let before = self.clone();
        let aff = Affine { weight: self.w.as_deref(), bias: self.b.as_deref() };
        let r = if eval {
            eval_forward(&self.x, &mut self.y, dims, aff, &self.rm, &self.rv, self.eps)
        } else {
            let run = self.running.then(|| Running {
                mean: &mut self.rm,
                var: &mut self.rv,
                momentum: self.momentum,
                convention: Convention::PyTorch,
            });
            train_forward(&self.x, &mut self.y, dims, aff, run, self.eps, &mut self.sm, &mut self.si)
        };
        if r.is_err() {
            let same =
                |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same(&self.y, &before.y), "y written by a rejected call");
            assert!(same(&self.rm, &before.rm), "running mean written by a rejected call");
            assert!(same(&self.rv, &before.rv), "running var written by a rejected call");
            assert!(same(&self.sm, &before.sm), "save_mean written by a rejected call");
            assert!(same(&self.si, &before.si), "save_invstd written by a rejected call");
            assert!(same(&self.x, &before.x), "x written");
        }
        r
    }
}

fn expect(what: &str, r: Result<(), BnError>, want: Kind) {
    match r {
        Ok(()) => panic!("{what}: accepted, expected {want:?}"),
        Err(e) => {
            assert_eq!(kind(&e), want, "{what}: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn train_forward_rejections_leave_state_untouched() {
    for (shape, layout) in [
        (&[3, 4, 5][..], Layout::ChannelsFirst),
        (&[3, 5, 4][..], Layout::ChannelsLast),
        (&[6, 5][..], Layout::ChannelsFirst),
    ] {
        let base = Train::new(shape, layout);
        let ctx = |s: &str| format!("{shape:?} {layout:?}: {s}");
        // the unmodified setup is valid in both modes
        base.clone().run(false).unwrap();
        base.clone().run(true).unwrap();

        let mut t = base.clone();
        t.x.pop();
        expect(&ctx("x short"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.x.push(0.0);
        expect(&ctx("x long"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.y.pop();
        expect(&ctx("y short"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.w.as_mut().unwrap().pop();
        expect(&ctx("weight short"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.b.as_mut().unwrap().push(1.0);
        expect(&ctx("bias long"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.rm.pop();
        expect(&ctx("running mean short"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.rv.push(1.0);
        expect(&ctx("running var long"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.sm.pop();
        expect(&ctx("save_mean short"), t.run(false), Kind::Length);
        let mut t = base.clone();
        t.si.push(0.0);
        expect(&ctx("save_invstd long"), t.run(false), Kind::Length);
        for eps in [f32::NAN, -1e-3, f32::INFINITY, f32::NEG_INFINITY] {
            let mut t = base.clone();
            t.eps = eps;
            expect(&ctx(&format!("eps {eps}")), t.run(false), Kind::Option);
        }
        for m in [-0.1, 1.1, f32::NAN, f32::INFINITY] {
            let mut t = base.clone();
            t.momentum = m;
            expect(&ctx(&format!("momentum {m}")), t.run(false), Kind::Option);
        }
        // momentum is not looked at without running statistics
        let mut t = base.clone();
        t.momentum = f32::NAN;
        t.running = false;
        t.run(false).unwrap();
    }
}

#[test]
fn training_needs_two_values_per_channel() {
    for (shape, layout) in [
        (&[1, 3][..], Layout::ChannelsFirst),
        (&[1, 3][..], Layout::ChannelsLast),
        (&[1, 4, 1, 1], Layout::ChannelsFirst),
        (&[1, 1, 1, 4], Layout::ChannelsLast),
        (&[1, 1, 1], Layout::ChannelsFirst),
    ] {
        let t = Train::new(shape, layout);
        expect(&format!("{shape:?} {layout:?}"), t.clone().run(false), Kind::TooFewValues);
        // without running statistics too
        let mut t2 = t.clone();
        t2.running = false;
        expect(&format!("{shape:?} {layout:?} no running"), t2.run(false), Kind::TooFewValues);
        // inference has no such restriction
        t.run(true).unwrap();
    }
    // two values per channel is enough
    Train::new(&[2, 3], Layout::ChannelsFirst).run(false).unwrap();
    Train::new(&[1, 2, 3], Layout::ChannelsLast).run(false).unwrap();
    Train::new(&[1, 3, 2], Layout::ChannelsFirst).run(false).unwrap();
}

#[test]
fn eval_forward_rejections_leave_state_untouched() {
    for (shape, layout) in [(&[3, 4, 5][..], Layout::ChannelsFirst), (&[3, 5, 4][..], Layout::ChannelsLast)] {
        let base = Train::new(shape, layout);
        let ctx = |s: &str| format!("eval {shape:?} {layout:?}: {s}");
        let mut t = base.clone();
        t.x.pop();
        expect(&ctx("x short"), t.run(true), Kind::Length);
        let mut t = base.clone();
        t.y.push(0.0);
        expect(&ctx("y long"), t.run(true), Kind::Length);
        let mut t = base.clone();
        t.w.as_mut().unwrap().push(0.0);
        expect(&ctx("weight long"), t.run(true), Kind::Length);
        let mut t = base.clone();
        t.b.as_mut().unwrap().pop();
        expect(&ctx("bias short"), t.run(true), Kind::Length);
        let mut t = base.clone();
        t.rm.pop();
        expect(&ctx("running mean short"), t.run(true), Kind::Length);
        let mut t = base.clone();
        t.rv.push(0.0);
        expect(&ctx("running var long"), t.run(true), Kind::Length);
        for eps in [f32::NAN, -1.0, f32::INFINITY] {
            let mut t = base.clone();
            t.eps = eps;
            expect(&ctx(&format!("eps {eps}")), t.run(true), Kind::Option);
        }
    }
}

#[test]
fn normalize_rejections_leave_output_untouched() {
    let dims = Dims::new(&[2, 3, 5], Layout::ChannelsFirst).unwrap();
    let x = vec![1.0f32; 30];
    let ok3 = vec![1.0f32; 3];
    let bad = vec![1.0f32; 4];
    let cases: Vec<(&str, &[f32], usize, &[f32], &[f32], Option<&[f32]>)> = vec![
        ("x short", &x[..29], 30, &ok3, &ok3, None),
        ("y long", &x, 31, &ok3, &ok3, None),
        ("mean", &x, 30, &bad, &ok3, None),
        ("invstd", &x, 30, &ok3, &bad, None),
        ("weight", &x, 30, &ok3, &ok3, Some(&bad)),
    ];
    for (what, xs, ylen, mean, invstd, w) in cases {
        let mut y = vec![Y0; ylen];
        let r = normalize(xs, &mut y, dims, Affine { weight: w, bias: None }, mean, invstd);
        expect(what, r, Kind::Length);
        assert!(y.iter().all(|&v| v == Y0), "{what}: y written");
    }
}

#[test]
fn backward_rejections_leave_outputs_untouched() {
    let dims = Dims::new(&[3, 2, 5], Layout::ChannelsLast).unwrap(); // C = 5, 6 per channel
    let n = dims.len();
    let mut rng = Rng::new(9);
    let x = rng.normal_vec(n, 0.0, 1.0);
    let dy = rng.normal_vec(n, 0.0, 1.0);
    let c5 = vec![1.0f32; 5];
    let c4 = vec![1.0f32; 4];
    let c6 = vec![1.0f32; 6];

    #[derive(Clone, Copy)]
    struct Args<'a> {
        dy: &'a [f32],
        x: &'a [f32],
        dx_len: usize,
        w: Option<&'a [f32]>,
        mean: &'a [f32],
        invstd: &'a [f32],
        dw_len: Option<usize>,
        db_len: Option<usize>,
    }
    let ok = Args { dy: &dy, x: &x, dx_len: n, w: Some(&c5), mean: &c5, invstd: &c5, dw_len: Some(5), db_len: Some(5) };
    let cases: Vec<(&str, Args)> = vec![
        ("dy short", Args { dy: &dy[..n - 1], ..ok }),
        ("x short", Args { x: &x[..n - 1], ..ok }),
        ("dx long", Args { dx_len: n + 1, ..ok }),
        ("dx short", Args { dx_len: n - 5, ..ok }),
        ("weight short", Args { w: Some(&c4), ..ok }),
        ("mean long", Args { mean: &c6, ..ok }),
        ("invstd short", Args { invstd: &c4, ..ok }),
        ("dweight short", Args { dw_len: Some(4), ..ok }),
        ("dbias long", Args { db_len: Some(6), ..ok }),
        ("dbias long, no dweight", Args { dw_len: None, db_len: Some(6), ..ok }),
    ];
    for eval in [false, true] {
        // the valid call works
        for (what, a) in std::iter::once(("valid", ok)).chain(cases.iter().copied()) {
            let mut dx = vec![Y0; a.dx_len];
            let mut dw = a.dw_len.map(|l| vec![S0; l]);
            let mut db = a.db_len.map(|l| vec![S0; l]);
            let f = if eval { backward_eval } else { backward };
            let r = f(a.dy, a.x, &mut dx, dims, a.w, a.mean, a.invstd, dw.as_deref_mut(), db.as_deref_mut());
            if what == "valid" {
                r.unwrap();
                continue;
            }
            expect(&format!("backward eval={eval}: {what}"), r, Kind::Length);
            assert!(dx.iter().all(|&v| v == Y0), "{what}: dx written");
            assert!(dw.iter().flatten().all(|&v| v == S0), "{what}: dweight written");
            assert!(db.iter().flatten().all(|&v| v == S0), "{what}: dbias written");
        }
    }
}

#[test]
fn a_rejected_call_after_a_good_one_changes_nothing() {
    // State produced by a successful update stays exactly as it was after a rejected call.
    let mut t = Train::new(&[4, 3, 7], Layout::ChannelsFirst);
    {
        let dims = Dims::new(&t.shape, t.layout).unwrap();
        let run = Running { mean: &mut t.rm, var: &mut t.rv, momentum: 0.1, convention: Convention::Onnx };
        train_forward(&t.x, &mut t.y, dims, Affine::default(), Some(run), 1e-5, &mut t.sm, &mut t.si).unwrap();
    }
    assert!(t.rm.iter().all(|&v| v != RM0));
    let mut bad = t.clone();
    bad.momentum = 2.0;
    expect("momentum 2 after a good call", bad.run(false), Kind::Option);
}
