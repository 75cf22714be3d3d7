use super::elementwise::broadcast;
use super::rule::{one, require_float, InferResult};
use super::InferError;
use crate::TensorType;

/// `[..., m, k] · [..., k, n] -> [broadcast(...), m, n]`.
pub(super) fn infer(a: &TensorType, b: &TensorType) -> InferResult {
    require_float(a)?;
    if a.dtype != b.dtype {
        return Err(InferError::DtypeMismatch {
            left: a.dtype,
            right: b.dtype,
        });
    }
    if a.rank() < 2 || b.rank() < 2 {
        return Err(InferError::Shape("operands need rank >= 2".into()));
    }
    let (ra, rb) = (a.rank(), b.rank());
    if a.shape[ra - 1] != b.shape[rb - 2] {
        return Err(InferError::Shape(format!(
            "contracted dims differ: {} vs {}",
            a.shape[ra - 1],
            b.shape[rb - 2]
        )));
    }
    let mut shape = broadcast(&a.shape[..ra - 2], &b.shape[..rb - 2])?;
    shape.push(a.shape[ra - 2].clone());
    shape.push(b.shape[rb - 1].clone());
    one(shape, a.dtype)
}
