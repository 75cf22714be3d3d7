use crate::{BorrowMode, DType};
use std::ops::Range;

/// Everything that can go wrong when building or viewing tensors.
///
/// Every variant names the operation and the offending shapes, dtypes or indices so the
/// message alone tells the user what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{op}: dtype mismatch: expected {expected}, got {got}")]
    DTypeMismatch {
        op: &'static str,
        expected: DType,
        got: DType,
    },
    #[error("{op}: dtype {dtype} is not supported ({detail})")]
    UnsupportedDType {
        op: &'static str,
        dtype: DType,
        detail: String,
    },
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    NotBroadcastable {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: dimension {dim} is out of range for a tensor of rank {rank}")]
    DimOutOfRange {
        op: &'static str,
        dim: usize,
        rank: usize,
    },
    #[error("{op}: index {index} is out of range for dimension {dim} of size {size}")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        dim: usize,
        size: usize,
    },
    #[error("{op}: the number of elements of {dims:?} overflows usize")]
    SizeOverflow { op: &'static str, dims: Vec<usize> },
    #[error("{op}: {count} elements were given for shape {shape:?} ({expected} expected)")]
    ElementCount {
        op: &'static str,
        shape: Vec<usize>,
        count: usize,
        expected: usize,
    },
    #[error("reshape: a tensor of shape {from:?} with strides {strides:?} cannot be viewed as {to:?} without a copy")]
    ReshapeNeedsCopy {
        from: Vec<usize>,
        strides: Vec<usize>,
        to: Vec<usize>,
    },
    #[error("{op}: the view reaches element {needed} but the storage holds {available}")]
    ViewOutOfStorage {
        op: &'static str,
        needed: usize,
        available: usize,
    },
    #[error(
        "{op}: cannot {} bytes {bytes:?} of a storage while {held_by} {}s bytes {held_bytes:?}",
        mode.verb(),
        held_mode.verb()
    )]
    BorrowConflict {
        op: &'static str,
        mode: BorrowMode,
        bytes: Range<usize>,
        held_by: &'static str,
        held_mode: BorrowMode,
        held_bytes: Range<usize>,
    },
    #[error("{op}: {detail}")]
    Invalid { op: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;
