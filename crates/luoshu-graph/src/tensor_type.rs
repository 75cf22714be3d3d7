//! The static type of a value: shape and dtype.

use crate::Dim;
use luoshu_tensor::DType;
use std::fmt;

/// Shape and dtype of a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Dimensions, outermost first; may contain symbols.
    pub shape: Vec<Dim>,
    /// Element type.
    pub dtype: DType,
}

impl TensorType {
    /// A type of the given shape and dtype.
    pub fn new(shape: Vec<Dim>, dtype: DType) -> Self {
        TensorType { shape, dtype }
    }
    /// Number of dimensions (0 for a scalar).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.shape)
    }
}
