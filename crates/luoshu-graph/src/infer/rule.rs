//! What a shape rule returns, and the checks the family rules share.

use crate::{Dim, TensorType};
use luoshu_tensor::DType;

/// The output types, or what is wrong with the inputs (a plain message: `Graph::add` adds
/// the op name and the input types).
pub(crate) type InferResult = std::result::Result<Vec<TensorType>, String>;

/// A single output of the given type.
pub(super) fn one(shape: Vec<Dim>, dtype: DType) -> InferResult {
    Ok(vec![TensorType::new(shape, dtype)])
}

pub(super) fn require_float(t: &TensorType) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("needs a float tensor, got {}", t.dtype))
    }
}

pub(super) fn require_dim(dim: usize, rank: usize) -> Result<(), String> {
    if dim < rank {
        Ok(())
    } else {
        Err(format!("dimension {dim} is out of range for rank {rank}"))
    }
}
