//! CPU kernels: cross_entropy, cross_entropy_backward (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn cross_entropy(
    _logits: &Tensor,
    _targets: &Tensor,
    _ignore_index: i64,
    _losses: &Tensor,
    _lse: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("cross_entropy"))
}

pub(crate) fn cross_entropy_backward(
    _logits: &Tensor,
    _targets: &Tensor,
    _lse: &Tensor,
    _grad_losses: &Tensor,
    _ignore_index: i64,
    _grad_logits: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("cross_entropy_backward"))
}
