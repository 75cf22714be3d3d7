use crate::{Op, Result};
use luoshu_backend::ops::{
    AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, LayerNormGrads, NormStats,
};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Composite nn ops, one backend call each (fused where the backend has a fused kernel).
pub(super) fn run(ops: &Ops, op: &Op, i: &[&Tensor], outputs: &[Tensor]) -> Result<()> {
    let o = outputs;
    match op {
        Op::Softmax => ops.softmax_into(i[0], &o[0])?,
        Op::LogSoftmax => ops.log_softmax_into(i[0], &o[0])?,
        Op::CrossEntropy { ignore_index } => {
            ops.cross_entropy_into(i[0], i[1], *ignore_index, &o[0], &o[1])?
        }
        Op::CrossEntropyBackward { ignore_index } => {
            ops.cross_entropy_backward_into(i[0], i[1], i[2], i[3], *ignore_index, &o[0])?
        }
        Op::RmsNorm { eps } => ops.rms_norm_into(i[0], i[1], eps.get() as f32, &o[0], &o[1])?,
        Op::Rope { inverse } => ops.rope_into(i[0], i[1], i[2], *inverse, &o[0])?,
        Op::Swiglu => ops.swiglu_into(i[0], i[1], &o[0])?,
        Op::Attention {
            scale,
            causal,
            segmented,
        } => {
            let inputs =
                AttentionInputs::new(i[0], i[1], i[2]).with_segments(segmented.then(|| i[3]));
            ops.attention_into(inputs, opts(*scale, *causal), &o[0], &o[1])?
        }
        Op::RmsNormBackward => ops.rms_norm_backward_into(i[0], i[1], i[2], i[3], &o[0], &o[1])?,
        Op::LayerNorm { eps } => {
            let stats = NormStats {
                mean: &o[1],
                rstd: &o[2],
            };
            ops.layer_norm_into(i[0], i[1], i[2], eps.get() as f32, &o[0], stats)?
        }
        Op::LayerNormBackward => {
            let stats = NormStats {
                mean: i[2],
                rstd: i[3],
            };
            let grads = LayerNormGrads {
                x: &o[0],
                weight: &o[1],
                bias: &o[2],
            };
            ops.layer_norm_backward_into(i[0], i[1], stats, i[4], grads)?
        }
        Op::SwigluBackward => ops.swiglu_backward_into(i[0], i[1], i[2], &o[0], &o[1])?,
        Op::AttentionBackward {
            scale,
            causal,
            segmented,
            lse_grad,
        } => {
            let inputs =
                AttentionInputs::new(i[0], i[1], i[2]).with_segments(segmented.then(|| i[6]));
            let output_grads = AttentionOutputGrads::new(i[3], i[4], i[5])
                .with_grad_lse(lse_grad.then(|| i[6 + usize::from(*segmented)]));
            let grads = AttentionGrads {
                q: &o[0],
                k: &o[1],
                v: &o[2],
            };
            ops.attention_backward_into(inputs, opts(*scale, *causal), output_grads, grads)?
        }
        other => return Err(super::context::not_in_family(other, "nn")),
    }
    Ok(())
}

fn opts(scale: crate::Float, causal: bool) -> AttentionOpts {
    AttentionOpts {
        scale: scale.get() as f32,
        causal,
    }
}
