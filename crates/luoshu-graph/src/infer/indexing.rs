use super::rule::{one, require_dim, InferResult};
use super::InferError;
use crate::{Dim, Op, TensorType};
use luoshu_tensor::DType;

fn require_index(t: &TensorType) -> Result<(), InferError> {
    if matches!(t.dtype, DType::I64 | DType::I32) {
        Ok(())
    } else {
        Err(InferError::Dtype(format!(
            "indices must be i64 or i32, got {}",
            t.dtype
        )))
    }
}

pub(super) fn infer(op: &Op, inputs: &[&TensorType]) -> InferResult {
    match op {
        Op::IndexSelect { dim } => {
            let (x, idx) = (inputs[0], inputs[1]);
            require_dim(*dim, x.rank())?;
            require_index(idx)?;
            if idx.rank() != 1 {
                return Err(InferError::Shape(format!(
                    "indices must be rank 1, got {:?}",
                    idx.shape
                )));
            }
            let mut shape = x.shape.clone();
            shape[*dim] = idx.shape[0].clone();
            one(shape, x.dtype)
        }
        Op::IndexAdd { dim } => {
            let (dst, idx, src) = (inputs[0], inputs[1], inputs[2]);
            require_dim(*dim, dst.rank())?;
            require_index(idx)?;
            let mut expected = dst.shape.clone();
            if idx.rank() != 1 {
                return Err(InferError::Shape(format!(
                    "indices must be rank 1, got {:?}",
                    idx.shape
                )));
            }
            expected[*dim] = idx.shape[0].clone();
            if src.shape != expected || src.dtype != dst.dtype {
                return Err(InferError::Shape(format!(
                    "src must be {}{expected:?}, got {src}",
                    dst.dtype
                )));
            }
            one(dst.shape.clone(), dst.dtype)
        }
        Op::Gather { dim } => {
            let (x, idx) = (inputs[0], inputs[1]);
            require_dim(*dim, x.rank())?;
            require_index(idx)?;
            if idx.rank() != x.rank() {
                return Err(InferError::Shape(format!(
                    "index rank {} differs from input rank {}",
                    idx.rank(),
                    x.rank()
                )));
            }
            one(idx.shape.clone(), x.dtype)
        }
        Op::ScatterAdd { dim } => {
            let (dst, idx, src) = (inputs[0], inputs[1], inputs[2]);
            require_dim(*dim, dst.rank())?;
            require_index(idx)?;
            if idx.rank() != dst.rank() || src.shape != idx.shape || src.dtype != dst.dtype {
                return Err(InferError::Shape(format!(
                    "index {idx} and src {src} must match, with dst's rank and dtype"
                )));
            }
            one(dst.shape.clone(), dst.dtype)
        }
        Op::Concat { dim } => {
            let first = inputs
                .first()
                .ok_or_else(|| InferError::Shape("concat needs at least one input".into()))?;
            require_dim(*dim, first.rank())?;
            let mut total = Vec::new();
            for t in inputs {
                let same_rest = t.rank() == first.rank()
                    && t.dtype == first.dtype
                    && t.shape
                        .iter()
                        .zip(&first.shape)
                        .enumerate()
                        .all(|(i, (a, b))| i == *dim || a == b);
                if !same_rest {
                    return Err(InferError::Shape(format!(
                        "cannot concat {t} with {first} along {dim}"
                    )));
                }
                total.push(t.shape[*dim].as_fixed().ok_or_else(|| {
                    InferError::Shape(format!(
                        "cannot concat along symbolic dimension {}",
                        t.shape[*dim]
                    ))
                })?);
            }
            let mut shape = first.shape.clone();
            shape[*dim] = Dim::fixed(total.iter().sum());
            one(shape, first.dtype)
        }
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "an indexing op",
        }),
    }
}
