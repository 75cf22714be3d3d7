use luoshu_tensor::DType;

/// Errors of the operator layer. Each names the op and what was wrong with its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    #[error("{op}: dtype {dtype} is not supported by this op (supported: {supported})")]
    UnsupportedDType {
        op: &'static str,
        dtype: DType,
        supported: &'static str,
    },
    #[error(
        "{op}: argument `{arg}` must be {requirement}, got shape {dims:?} strides {strides:?}"
    )]
    BadLayout {
        op: &'static str,
        arg: &'static str,
        requirement: &'static str,
        dims: Vec<usize>,
        strides: Vec<usize>,
    },
    #[error("{op}: output `{arg}` overlaps an input; outputs must be fresh buffers")]
    Aliasing { op: &'static str, arg: &'static str },
    #[error("{op}: {detail}")]
    Invalid { op: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            detail: detail.into(),
        }
    }
}
