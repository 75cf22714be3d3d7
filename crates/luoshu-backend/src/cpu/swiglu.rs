//! CPU kernels: swiglu, swiglu_backward (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn swiglu(_gate: &Tensor, _up: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("swiglu"))
}

pub(crate) fn swiglu_backward(
    _gate: &Tensor,
    _up: &Tensor,
    _grad_out: &Tensor,
    _grad_gate: &Tensor,
    _grad_up: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("swiglu_backward"))
}
