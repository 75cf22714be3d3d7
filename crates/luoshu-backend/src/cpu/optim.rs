//! CPU kernels: adamw, sum_squares (being built).

use crate::ops::AdamW;
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn adamw(
    _param: &Tensor,
    _grad: &Tensor,
    _m: &Tensor,
    _v: &Tensor,
    _hp: AdamW,
) -> Result<()> {
    Err(super::unbuilt("adamw"))
}

pub(crate) fn sum_squares(_tensors: &[&Tensor]) -> Result<f64> {
    Err(super::unbuilt("sum_squares"))
}
