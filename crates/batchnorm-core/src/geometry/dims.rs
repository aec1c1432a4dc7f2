//! Shapes and layouts reduced to the one view every kernel works on.
//!
//! Any batch-norm input is `outer x channels x inner` with the channel index in the
//! middle: channels-first `(N, C, *spatial)` is `outer = N, inner = prod(spatial)`;
//! channels-last `(N, *spatial, C)` is `outer = N * prod(spatial), inner = 1`.
//! Element `(o, c, i)` lives at `(o * channels + c) * inner + i`.

use crate::error::{BnError, Result};

/// Where the channel axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `(N, C, ...spatial)`: PyTorch's and ONNX's default.
    ChannelsFirst,
    /// `(N, ...spatial, C)`: TensorFlow's default.
    ChannelsLast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl Dims {
    pub fn new(shape: &[usize], layout: Layout) -> Result<Self> {
        if shape.len() < 2 {
            return Err(BnError::Shape(format!(
                "batch norm needs an input of rank >= 2 (N, C, ...), got shape [{}] of rank {}",
                join(shape),
                shape.len()
            )));
        }
        if let Some(d) = shape.iter().position(|&d| d == 0) {
            return Err(BnError::Shape(format!("dimension {d} of shape [{}] is zero", join(shape))));
        }
        let total: usize = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| BnError::Shape(format!("shape [{}] overflows", join(shape))))?;
        let (channels, inner) = match layout {
            Layout::ChannelsFirst => (shape[1], shape[2..].iter().product()),
            Layout::ChannelsLast => (shape[shape.len() - 1], 1),
        };
        Ok(Dims { outer: total / (channels * inner), channels, inner })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values each channel's statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.outer * self.inner
    }

    /// True when each channel's values form contiguous runs ("planes") longer than one
    /// element; false when channels are interleaved element by element ("rows").
    pub fn is_planar(&self) -> bool {
        self.inner > 1
    }

    pub(crate) fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len != self.len() {
            return Err(BnError::Length(format!(
                "{what} has {len} elements but the shape implies {} ({} x {} channels x {})",
                self.len(),
                self.outer,
                self.channels,
                self.inner
            )));
        }
        Ok(())
    }

    pub(crate) fn check_channels(&self, what: &str, len: usize) -> Result<()> {
        if len != self.channels {
            return Err(BnError::Length(format!(
                "{what} has {len} elements but the input has {} channels",
                self.channels
            )));
        }
        Ok(())
    }
}

fn join(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
