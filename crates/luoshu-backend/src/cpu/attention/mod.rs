//! CPU kernels: flash-style attention forward and backward (tiled over keys with an online
//! softmax, grouped-query heads, causal mask aligned at the end, packed segments with
//! masked tiles skipped, f32 compute for bf16/f16, strided inputs with a contiguous last
//! dim).

mod backward;
mod forward;
mod tiles;
mod visibility;

use super::rows::with_float;
use crate::ops::{AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads};
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn attention(
    inputs: AttentionInputs<'_>,
    opts: AttentionOpts,
    out: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    with_float!("attention", inputs.q.dtype(), |T| forward::run::<T>(
        inputs, opts, out, lse
    ))
}

pub(crate) fn attention_backward(
    inputs: AttentionInputs<'_>,
    opts: AttentionOpts,
    output_grads: AttentionOutputGrads<'_>,
    grads: AttentionGrads<'_>,
) -> Result<()> {
    with_float!(
        "attention_backward",
        inputs.q.dtype(),
        |T| backward::run::<T>(inputs, opts, output_grads, grads)
    )
}
