//! CPU kernels: rms_norm, rms_norm_backward, layer_norm, layer_norm_backward (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn rms_norm(
    _x: &Tensor,
    _weight: &Tensor,
    _eps: f32,
    _out: &Tensor,
    _rstd: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("rms_norm"))
}

pub(crate) fn rms_norm_backward(
    _x: &Tensor,
    _weight: &Tensor,
    _rstd: &Tensor,
    _grad_out: &Tensor,
    _grad_x: &Tensor,
    _grad_weight: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("rms_norm_backward"))
}

pub(crate) fn layer_norm(
    _x: &Tensor,
    _weight: &Tensor,
    _bias: &Tensor,
    _eps: f32,
    _out: &Tensor,
    _mean: &Tensor,
    _rstd: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("layer_norm"))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward(
    _x: &Tensor,
    _weight: &Tensor,
    _mean: &Tensor,
    _rstd: &Tensor,
    _grad_out: &Tensor,
    _grad_x: &Tensor,
    _grad_weight: &Tensor,
    _grad_bias: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("layer_norm_backward"))
}
