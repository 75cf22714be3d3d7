use super::rule::{one, InferResult};
use super::InferError;
use crate::Op;
use luoshu_tensor::DType;

pub(super) fn infer(op: &Op) -> InferResult {
    match op {
        Op::Input { shape, dtype, .. }
        | Op::Parameter { shape, dtype, .. }
        | Op::Full { shape, dtype, .. } => one(shape.clone(), *dtype),
        Op::Constant(c) => {
            let expected: usize = c.dims.iter().product();
            if c.values.len() != expected {
                return Err(InferError::Shape(format!(
                    "{} values for dims {:?}",
                    c.values.len(),
                    c.dims
                )));
            }
            one(crate::fixed_shape(&c.dims), c.dtype)
        }
        Op::Arange { len, dtype, .. } => one(vec![len.clone()], *dtype),
        Op::Random { shape, dtype, .. } => {
            if !dtype.is_float() && *dtype != DType::Bool {
                return Err(InferError::Dtype(format!(
                    "random tensors are float or bool, not {dtype}"
                )));
            }
            one(shape.clone(), *dtype)
        }
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "a leaf",
        }),
    }
}
