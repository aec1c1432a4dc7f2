use core::fmt;

/// Why a call was rejected. Every check runs before any output or state is written, so a
/// rejected call leaves running statistics and outputs untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BnError {
    /// The shape itself is unusable (rank < 2, a zero or non-integer dimension...).
    Shape(String),
    /// A buffer's length does not match what the shape implies.
    Length(String),
    /// A hyper-parameter is out of range (eps, momentum).
    Option(String),
    /// Training needs more than one value per channel (as PyTorch requires).
    TooFewValues(String),
}

impl fmt::Display for BnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BnError::Shape(m) | BnError::Length(m) | BnError::Option(m) | BnError::TooFewValues(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for BnError {}

pub type Result<T> = core::result::Result<T, BnError>;
