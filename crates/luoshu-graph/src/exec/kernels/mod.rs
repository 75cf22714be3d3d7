//! The per-op dispatch table shared by [`crate::evaluate`] and the planned executor: given a
//! node's op, its input tensors and caller-provided contiguous output tensors, run the
//! kernel through the validated [`luoshu_backend::Ops`] API. One file per op family, like
//! `infer/`.

mod comm;
mod context;
mod elementwise;
mod fused;
mod indexing;
mod leaves;
mod matmul;
mod nn;
mod reduce;
mod shape_ops;

pub(crate) use context::Context;
pub(crate) use shape_ops::{needs_copy, view_layout};

use crate::{Op, Result};
use luoshu_tensor::Tensor;

/// Compute `op(inputs)` into `outputs` (one contiguous tensor per node output, shaped as
/// inference says). View ops land here only when their result must be materialized.
pub(crate) fn run_node(
    ctx: &Context,
    op: &Op,
    inputs: &[&Tensor],
    outputs: &[Tensor],
) -> Result<()> {
    let ops = &ctx.ops;
    match op {
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. } => leaves::run(ops, op, &outputs[0]),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast(_) => {
            elementwise::run(ops, op, inputs, &outputs[0])
        }
        Op::Reduce { .. } | Op::Argmax { .. } => reduce::run(ops, op, inputs[0], &outputs[0]),
        Op::MatMul => matmul::run(ops, inputs[0], inputs[1], &outputs[0]),
        Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous => shape_ops::run(ops, op, inputs[0], &outputs[0]),
        Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. } => indexing::run(ops, op, inputs, &outputs[0]),
        Op::Softmax
        | Op::LogSoftmax
        | Op::CrossEntropy { .. }
        | Op::CrossEntropyBackward { .. }
        | Op::RmsNorm { .. }
        | Op::RmsNormBackward
        | Op::LayerNorm { .. }
        | Op::LayerNormBackward
        | Op::Rope { .. }
        | Op::Swiglu
        | Op::SwigluBackward
        | Op::Attention { .. }
        | Op::AttentionBackward { .. } => nn::run(ops, op, inputs, outputs),
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => comm::run(ctx, op, inputs[0], &outputs[0]),
        Op::Fused(program) => fused::run(ops, program, inputs, &outputs[0]),
    }
}
