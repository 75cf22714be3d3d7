//! CPU kernels: attention, attention_backward (being built).

use crate::ops::AttentionOpts;
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn attention(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _opts: AttentionOpts,
    _out: &Tensor,
    _lse: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("attention"))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _out: &Tensor,
    _lse: &Tensor,
    _grad_out: &Tensor,
    _opts: AttentionOpts,
    _grad_q: &Tensor,
    _grad_k: &Tensor,
    _grad_v: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("attention_backward"))
}
