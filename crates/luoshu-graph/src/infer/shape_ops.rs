use super::elementwise::broadcast;
use super::rule::{one, require_dim, InferResult};
use super::InferError;
use crate::{dim::numel, Op, TensorType};

pub(super) fn infer(op: &Op, x: &TensorType) -> InferResult {
    match op {
        Op::Reshape { shape } => {
            if numel(shape) != numel(&x.shape) {
                return Err(InferError::Shape(format!(
                    "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                    x.shape,
                    numel(&x.shape),
                    shape,
                    numel(shape)
                )));
            }
            one(shape.clone(), x.dtype)
        }
        Op::Permute { perm } => {
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.rank()).collect::<Vec<_>>() {
                return Err(InferError::Shape(format!(
                    "{perm:?} is not a permutation of 0..{}",
                    x.rank()
                )));
            }
            one(perm.iter().map(|&p| x.shape[p].clone()).collect(), x.dtype)
        }
        Op::Slice {
            dim,
            start,
            end,
            step,
        } => {
            require_dim(*dim, x.rank())?;
            let size = x.shape[*dim].as_fixed().ok_or_else(|| {
                InferError::Shape(format!("cannot slice symbolic dimension {}", x.shape[*dim]))
            })?;
            if *step == 0 || start > end || *end > size {
                return Err(InferError::Shape(format!(
                    "range {start}..{end} step {step} on a dimension of size {size}"
                )));
            }
            let mut shape = x.shape.clone();
            shape[*dim] = crate::Dim::fixed((end - start).div_ceil(*step));
            one(shape, x.dtype)
        }
        Op::Broadcast { shape } => {
            if shape.len() < x.rank() || broadcast(&x.shape, shape)? != *shape {
                return Err(InferError::Shape(format!(
                    "cannot broadcast {:?} to {shape:?}",
                    x.shape
                )));
            }
            one(shape.clone(), x.dtype)
        }
        Op::Contiguous => one(x.shape.clone(), x.dtype),
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "a shape op",
        }),
    }
}
