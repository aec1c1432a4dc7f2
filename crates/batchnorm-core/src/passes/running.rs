//! Running (moving-average) statistics.
//!
//! - PyTorch (default): `new = (1 - m) * old + m * batch`, m = 0.1, and the running
//!   variance takes the *unbiased* batch variance `var * n / (n - 1)`. `momentum: null`
//!   (a cumulative average) is PyTorch's `m = 1 / num_batches_tracked`, which callers pass
//!   in as a number.
//! - ONNX (= Keras): `new = m * old + (1 - m) * batch`, m = 0.9 in ONNX (0.99 in Keras),
//!   with the *biased* batch variance.

use crate::moments::Moments;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    PyTorch,
    Onnx,
}

/// Updates `running_mean` / `running_var` in place from per-channel batch moments.
/// Arithmetic in f64, rounded once to f32.
pub fn update(running_mean: &mut [f32], running_var: &mut [f32], batch: &[Moments], momentum: f32, convention: Convention) {
    let m = momentum as f64;
    let (keep, take) = match convention {
        Convention::PyTorch => (1.0 - m, m),
        Convention::Onnx => (m, 1.0 - m),
    };
    for ((rm, rv), b) in running_mean.iter_mut().zip(running_var.iter_mut()).zip(batch) {
        let var = match convention {
            Convention::PyTorch => b.unbiased_var(),
            Convention::Onnx => b.biased_var(),
        };
        *rm = (keep * *rm as f64 + take * b.mean) as f32;
        *rv = (keep * *rv as f64 + take * var) as f32;
    }
}
