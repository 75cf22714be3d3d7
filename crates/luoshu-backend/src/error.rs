//! The error type of the operator layer.

use luoshu_tensor::DType;

/// Errors of the operator layer. Each names the op and what was wrong with its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A tensor-level error (shapes, dtypes, indices, views, storage borrows).
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    /// The op has no kernel for this element type.
    #[error("{op}: dtype {dtype} is not supported by this op (supported: {supported})")]
    UnsupportedDType {
        /// The op that failed.
        op: &'static str,
        /// The dtype it was given.
        dtype: DType,
        /// The dtypes it accepts.
        supported: &'static str,
    },
    /// An argument's strides do not meet the op's requirement (most often: contiguous).
    #[error(
        "{op}: argument `{arg}` must be {requirement}, got shape {dims:?} strides {strides:?}"
    )]
    BadLayout {
        /// The op that failed.
        op: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// What its layout must be.
        requirement: &'static str,
        /// Its dimensions.
        dims: Vec<usize>,
        /// Its strides, in elements.
        strides: Vec<usize>,
    },
    /// An output shares memory with an input where the op does not allow it.
    #[error("{op}: output `{arg}` overlaps an input; outputs must be fresh buffers")]
    Aliasing {
        /// The op that failed.
        op: &'static str,
        /// The output's name.
        arg: &'static str,
    },
    /// Any other invalid argument, with the offending values in `detail`.
    #[error("{op}: {detail}")]
    Invalid {
        /// The op that failed.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The result of every fallible operator call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            detail: detail.into(),
        }
    }
}
