//! CPU kernels: flash-style attention forward and backward (tiled over keys with an online
//! softmax, grouped-query heads, causal mask aligned at the end, packed segments with
//! masked tiles skipped, f32 compute for bf16/f16, strided inputs with a contiguous last
//! dim).

mod backward;
mod forward;
mod tiles;
mod visibility;

use super::rows::with_float;
use crate::ops::AttentionOpts;
use crate::Result;
use luoshu_tensor::Tensor;

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: Option<&Tensor>,
    opts: AttentionOpts,
    out: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    with_float!("attention", q.dtype(), |T| forward::run::<T>(
        q, k, v, segments, opts, out, lse
    ))
}

/// `grads` are the gradients of `out` and, when given, of `lse`; `into` receives those of
/// `q`, `k` and `v`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: Option<&Tensor>,
    out: &Tensor,
    lse: &Tensor,
    grads: (&Tensor, Option<&Tensor>),
    opts: AttentionOpts,
    into: (&Tensor, &Tensor, &Tensor),
) -> Result<()> {
    with_float!("attention_backward", q.dtype(), |T| backward::run::<T>(
        (q, k, v),
        segments,
        (out, lse),
        grads,
        opts,
        into
    ))
}
