//! Default decompositions of the composite ops into primitives. Any backend gets these for
//! free; they are also what the conformance suite compares fused kernels against (run on
//! the reference backend).

use crate::ops::{AdamW, AttentionOpts};
use crate::{Backend, Error, Result};
use luoshu_tensor::Tensor;

fn unbuilt(op: &'static str) -> Error {
    Error::invalid(
        op,
        "the decomposition of this composite op is not built yet",
    )
}

pub fn softmax(_b: &dyn Backend, _x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(unbuilt("softmax"))
}
pub fn log_softmax(_b: &dyn Backend, _x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(unbuilt("log_softmax"))
}
pub fn cross_entropy(
    _b: &dyn Backend,
    _logits: &Tensor,
    _targets: &Tensor,
    _ignore_index: i64,
    _losses: &Tensor,
    _lse: &Tensor,
) -> Result<()> {
    Err(unbuilt("cross_entropy"))
}
pub fn cross_entropy_backward(
    _b: &dyn Backend,
    _logits: &Tensor,
    _targets: &Tensor,
    _lse: &Tensor,
    _grad_losses: &Tensor,
    _ignore_index: i64,
    _grad_logits: &Tensor,
) -> Result<()> {
    Err(unbuilt("cross_entropy_backward"))
}
pub fn rms_norm(
    _b: &dyn Backend,
    _x: &Tensor,
    _weight: &Tensor,
    _eps: f32,
    _out: &Tensor,
    _rstd: &Tensor,
) -> Result<()> {
    Err(unbuilt("rms_norm"))
}
pub fn rms_norm_backward(
    _b: &dyn Backend,
    _x: &Tensor,
    _weight: &Tensor,
    _rstd: &Tensor,
    _grad_out: &Tensor,
    _grad_x: &Tensor,
    _grad_weight: &Tensor,
) -> Result<()> {
    Err(unbuilt("rms_norm_backward"))
}
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    _b: &dyn Backend,
    _x: &Tensor,
    _weight: &Tensor,
    _bias: &Tensor,
    _eps: f32,
    _out: &Tensor,
    _mean: &Tensor,
    _rstd: &Tensor,
) -> Result<()> {
    Err(unbuilt("layer_norm"))
}
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    _b: &dyn Backend,
    _x: &Tensor,
    _weight: &Tensor,
    _mean: &Tensor,
    _rstd: &Tensor,
    _grad_out: &Tensor,
    _grad_x: &Tensor,
    _grad_weight: &Tensor,
    _grad_bias: &Tensor,
) -> Result<()> {
    Err(unbuilt("layer_norm_backward"))
}
pub fn rope(
    _b: &dyn Backend,
    _x: &Tensor,
    _cos: &Tensor,
    _sin: &Tensor,
    _inverse: bool,
    _out: &Tensor,
) -> Result<()> {
    Err(unbuilt("rope"))
}
pub fn swiglu(_b: &dyn Backend, _gate: &Tensor, _up: &Tensor, _out: &Tensor) -> Result<()> {
    Err(unbuilt("swiglu"))
}
pub fn swiglu_backward(
    _b: &dyn Backend,
    _gate: &Tensor,
    _up: &Tensor,
    _grad_out: &Tensor,
    _grad_gate: &Tensor,
    _grad_up: &Tensor,
) -> Result<()> {
    Err(unbuilt("swiglu_backward"))
}
pub fn attention(
    _b: &dyn Backend,
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _opts: AttentionOpts,
    _out: &Tensor,
    _lse: &Tensor,
) -> Result<()> {
    Err(unbuilt("attention"))
}
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    _b: &dyn Backend,
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
    Err(unbuilt("attention_backward"))
}
pub fn adamw(
    _b: &dyn Backend,
    _param: &Tensor,
    _grad: &Tensor,
    _m: &Tensor,
    _v: &Tensor,
    _hp: AdamW,
) -> Result<()> {
    Err(unbuilt("adamw"))
}
pub fn sum_squares(_b: &dyn Backend, _tensors: &[&Tensor]) -> Result<f64> {
    Err(unbuilt("sum_squares"))
}
