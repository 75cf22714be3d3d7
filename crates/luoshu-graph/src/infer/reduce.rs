use super::rule::{one, require_dim, InferResult};
use super::InferError;
use crate::{Op, TensorType};
use luoshu_backend::ops::ReduceOp;
use luoshu_tensor::DType;

pub(super) fn infer(op: &Op, x: &TensorType) -> InferResult {
    match op {
        Op::Reduce {
            op: r,
            axes,
            keepdim,
        } => {
            if axes.is_empty() {
                return Err(InferError::Shape("no axes to reduce over".into()));
            }
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted != *axes {
                return Err(InferError::Shape(format!(
                    "axes {axes:?} must be sorted and unique"
                )));
            }
            for &a in axes {
                require_dim(a, x.rank())?;
            }
            if *r == ReduceOp::Mean && !x.dtype.is_float()
                || x.dtype == DType::Bool
                || x.dtype == DType::U8
            {
                return Err(InferError::UnsupportedDtype {
                    op: r.name().to_string(),
                    dtype: x.dtype,
                });
            }
            one(reduced_shape(x, axes, *keepdim), x.dtype)
        }
        Op::Argmax { axis, keepdim } => {
            require_dim(*axis, x.rank())?;
            one(reduced_shape(x, &[*axis], *keepdim), DType::I64)
        }
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "a reduction",
        }),
    }
}

fn reduced_shape(x: &TensorType, axes: &[usize], keepdim: bool) -> Vec<crate::Dim> {
    x.shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdim) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(crate::Dim::fixed(1)),
            (true, false) => None,
        })
        .collect()
}
