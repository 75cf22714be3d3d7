//! What a shape rule returns, and the checks the family rules share.

use super::InferError;
use crate::{Dim, TensorType};
use luoshu_tensor::DType;

/// The output types, or what is wrong with the inputs (`Graph::add` adds the op name and
/// the input types).
pub(crate) type InferResult = std::result::Result<Vec<TensorType>, InferError>;

/// A single output of the given type.
pub(super) fn one(shape: Vec<Dim>, dtype: DType) -> InferResult {
    Ok(vec![TensorType::new(shape, dtype)])
}

pub(super) fn require_float(t: &TensorType) -> Result<(), InferError> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(InferError::NotFloat { dtype: t.dtype })
    }
}

pub(super) fn require_dim(dim: usize, rank: usize) -> Result<(), InferError> {
    if dim < rank {
        Ok(())
    } else {
        Err(InferError::DimOutOfRange { dim, rank })
    }
}
