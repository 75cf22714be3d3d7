use super::rule::{one, InferResult};
use super::InferError;
use crate::{Dim, Op, TensorType};
use luoshu_tensor::DType;

/// NumPy broadcasting over symbolic dims: equal dims match, a fixed 1 stretches.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, InferError> {
    let rank = a.len().max(b.len());
    let one = Dim::fixed(1);
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                &a[i + a.len() - rank]
            } else {
                &one
            };
            let db = if i + b.len() >= rank {
                &b[i + b.len() - rank]
            } else {
                &one
            };
            if da == db || db.is_one() {
                Ok(da.clone())
            } else if da.is_one() {
                Ok(db.clone())
            } else {
                Err(InferError::Shape(format!(
                    "shapes {a:?} and {b:?} cannot be broadcast together"
                )))
            }
        })
        .collect()
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Result<(), InferError> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(InferError::DtypeMismatch {
            left: a.dtype,
            right: b.dtype,
        })
    }
}

pub(super) fn infer(op: &Op, inputs: &[&TensorType]) -> InferResult {
    match op {
        Op::Unary(u) => {
            let x = inputs[0];
            if !(x.dtype.is_float()
                || u.allows_integers() && matches!(x.dtype, DType::I64 | DType::I32))
            {
                return Err(InferError::UnsupportedDtype {
                    op: u.name().to_string(),
                    dtype: x.dtype,
                });
            }
            one(x.shape.clone(), x.dtype)
        }
        Op::Binary(b) => {
            let (x, y) = (inputs[0], inputs[1]);
            same_dtype(x, y)?;
            if !(x.dtype.is_float() || b.allows_integers() && x.dtype != DType::Bool) {
                return Err(InferError::UnsupportedDtype {
                    op: b.name().to_string(),
                    dtype: x.dtype,
                });
            }
            one(broadcast(&x.shape, &y.shape)?, x.dtype)
        }
        Op::Compare(_) => {
            same_dtype(inputs[0], inputs[1])?;
            one(broadcast(&inputs[0].shape, &inputs[1].shape)?, DType::Bool)
        }
        Op::Select => {
            let (c, a, b) = (inputs[0], inputs[1], inputs[2]);
            if c.dtype != DType::Bool {
                return Err(InferError::Dtype(format!(
                    "condition must be bool, got {}",
                    c.dtype
                )));
            }
            same_dtype(a, b)?;
            let ab = broadcast(&a.shape, &b.shape)?;
            one(broadcast(&c.shape, &ab)?, a.dtype)
        }
        Op::Cast(d) => one(inputs[0].shape.clone(), *d),
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "elementwise",
        }),
    }
}
