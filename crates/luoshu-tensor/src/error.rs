//! The error type of tensor construction, views and storage access.

use crate::{BorrowMode, DType};
use std::ops::Range;

/// Everything that can go wrong when building or viewing tensors.
///
/// Every variant names the operation and the offending shapes, dtypes or indices so the
/// message alone tells the user what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An operand has another shape than the op requires.
    #[error("{op}: shape mismatch: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The op that failed.
        op: &'static str,
        /// The dimensions it needed.
        expected: Vec<usize>,
        /// The dimensions it was given.
        got: Vec<usize>,
    },
    /// An operand has another element type than the op requires.
    #[error("{op}: dtype mismatch: expected {expected}, got {got}")]
    DTypeMismatch {
        /// The op that failed.
        op: &'static str,
        /// The dtype it needed.
        expected: DType,
        /// The dtype it was given.
        got: DType,
    },
    /// The op has no implementation for this element type.
    #[error("{op}: dtype {dtype} is not supported ({detail})")]
    UnsupportedDType {
        /// The op that failed.
        op: &'static str,
        /// The dtype it was given.
        dtype: DType,
        /// Which dtypes it supports, or why this one is refused.
        detail: String,
    },
    /// Two shapes do not broadcast under NumPy rules.
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    NotBroadcastable {
        /// The op that failed.
        op: &'static str,
        /// The first operand's dimensions (or the tensor's own, for `broadcast_to`).
        lhs: Vec<usize>,
        /// The second operand's dimensions (or the target, for `broadcast_to`).
        rhs: Vec<usize>,
    },
    /// A dimension index at or past the tensor's rank.
    #[error("{op}: dimension {dim} is out of range for a tensor of rank {rank}")]
    DimOutOfRange {
        /// The op that failed.
        op: &'static str,
        /// The dimension asked for.
        dim: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index (gather, embedding, class target) outside its dimension; negative indices are
    /// reported as given.
    #[error("{op}: index {index} is out of range for dimension {dim} of size {size}")]
    IndexOutOfRange {
        /// The op that failed.
        op: &'static str,
        /// The index as given.
        index: i64,
        /// The dimension it indexes.
        dim: usize,
        /// That dimension's extent.
        size: usize,
    },
    /// The element count of a shape, or its size in bytes, does not fit in `usize`.
    #[error("{op}: the number of elements of {dims:?} overflows usize")]
    SizeOverflow {
        /// The op that failed.
        op: &'static str,
        /// The dimensions whose size overflows.
        dims: Vec<usize>,
    },
    /// A buffer has another number of elements than its shape needs.
    #[error("{op}: {count} elements were given for shape {shape:?} ({expected} expected)")]
    ElementCount {
        /// The op that failed.
        op: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The number of elements given.
        count: usize,
        /// The number the shape needs.
        expected: usize,
    },
    /// The layout's strides cannot express the new shape over the same storage; copy first.
    #[error("reshape: a tensor of shape {from:?} with strides {strides:?} cannot be viewed as {to:?} without a copy")]
    ReshapeNeedsCopy {
        /// The original dimensions.
        from: Vec<usize>,
        /// The original strides, in elements.
        strides: Vec<usize>,
        /// The requested dimensions.
        to: Vec<usize>,
    },
    /// A view would reach past the end of its storage.
    #[error("{op}: the view reaches element {needed} but the storage holds {available}")]
    ViewOutOfStorage {
        /// The op that failed.
        op: &'static str,
        /// One past the largest element index the view needs.
        needed: usize,
        /// How many elements of the dtype the storage holds.
        available: usize,
    },
    /// Two overlapping claims of one storage's bytes where at least one writes (see
    /// [`crate::Storage`]): a kernel would read what another writes, or two would write at once.
    #[error(
        "{op}: cannot {} bytes {bytes:?} of a storage while {held_by} {}s bytes {held_bytes:?}",
        mode.verb(),
        held_mode.verb()
    )]
    BorrowConflict {
        /// The op whose claim was refused.
        op: &'static str,
        /// Whether it wanted to read or write.
        mode: BorrowMode,
        /// The bytes it asked for.
        bytes: Range<usize>,
        /// The op holding the conflicting claim.
        held_by: &'static str,
        /// Whether that op reads or writes.
        held_mode: BorrowMode,
        /// The bytes that op holds.
        held_bytes: Range<usize>,
    },
    /// Any other invalid argument (strides of the wrong rank, bad permutations or slice bounds).
    #[error("{op}: {detail}")]
    Invalid {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the offending values.
        detail: String,
    },
}

/// The result of every fallible tensor operation.
pub type Result<T> = std::result::Result<T, Error>;
