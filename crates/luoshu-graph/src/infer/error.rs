//! What is wrong with an op's inputs, by kind; `Graph::add` wraps it with the op name and
//! the input types ([`crate::Error::Infer`]).

use luoshu_tensor::DType;

/// Why shape and dtype inference rejected an op's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The op was given the wrong number of inputs.
    #[error("expects {expected} inputs, got {got}")]
    Arity {
        /// Inputs the op takes.
        expected: usize,
        /// Inputs it was given.
        got: usize,
    },
    /// Two inputs that must share a dtype do not.
    #[error("dtype mismatch: {left} vs {right}")]
    DtypeMismatch {
        /// The first input's dtype.
        left: DType,
        /// The other input's dtype.
        right: DType,
    },
    /// The op has no kernel for this dtype.
    #[error("{op} does not support {dtype}")]
    UnsupportedDtype {
        /// The op's name.
        op: String,
        /// The rejected dtype.
        dtype: DType,
    },
    /// An input that must be floating point is not.
    #[error("needs a float tensor, got {dtype}")]
    NotFloat {
        /// The input's dtype.
        dtype: DType,
    },
    /// Another dtype requirement of the op (indices, conditions, targets, ...).
    #[error("{0}")]
    Dtype(String),
    /// A dimension index beyond the tensor's rank.
    #[error("dimension {dim} is out of range for rank {rank}")]
    DimOutOfRange {
        /// The dimension the op names.
        dim: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// The inputs' shapes or ranks do not fit the op (what it expected and what it got).
    #[error("{0}")]
    Shape(String),
    /// A collective over a group of no ranks.
    #[error("a collective needs a group of at least one rank")]
    EmptyGroup,
    /// An op was sent to the rule of another op family (a bug in the dispatch).
    #[error("{op} is not {family}")]
    WrongFamily {
        /// The op's name.
        op: String,
        /// The family whose rule was asked.
        family: &'static str,
    },
}
