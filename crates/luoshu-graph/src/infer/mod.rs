//! Shape and dtype inference: one rule per op, one file per op family. Rules return an
//! [`InferError`] naming the kind of failure; `Graph::add` wraps it with the op name and the
//! input types.

mod comm;
mod elementwise;
mod error;
mod fused;
mod indexing;
mod leaves;
mod matmul;
mod nn;
mod reduce;
mod rule;
mod shape_ops;

use crate::{Op, TensorType};
pub use error::InferError;
use rule::InferResult;

/// Output types of `op` applied to inputs of the given types.
pub fn infer(op: &Op, inputs: &[&TensorType]) -> InferResult {
    let arity = expected_arity(op);
    if let Some(n) = arity {
        if inputs.len() != n {
            return Err(InferError::Arity {
                expected: n,
                got: inputs.len(),
            });
        }
    }
    match op {
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. } => leaves::infer(op),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast(_) => {
            elementwise::infer(op, inputs)
        }
        Op::Reduce { .. } | Op::Argmax { .. } => reduce::infer(op, inputs[0]),
        Op::MatMul => matmul::infer(inputs[0], inputs[1]),
        Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous => shape_ops::infer(op, inputs[0]),
        Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. } => indexing::infer(op, inputs),
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
        | Op::AttentionBackward { .. } => nn::infer(op, inputs),
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => comm::infer(op, inputs[0]),
        Op::Fused(program) => fused::infer(program, inputs),
    }
}

/// Number of inputs an op takes (`None`: variadic).
pub fn expected_arity(op: &Op) -> Option<usize> {
    Some(match op {
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. } => 0,
        Op::Concat { .. } | Op::Fused(_) => return None,
        Op::Unary(_)
        | Op::Cast(_)
        | Op::Reduce { .. }
        | Op::Argmax { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous
        | Op::Softmax
        | Op::LogSoftmax
        | Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => 1,
        Op::Binary(_)
        | Op::Compare(_)
        | Op::MatMul
        | Op::IndexSelect { .. }
        | Op::Gather { .. }
        | Op::CrossEntropy { .. }
        | Op::RmsNorm { .. }
        | Op::Swiglu => 2,
        Op::Select
        | Op::IndexAdd { .. }
        | Op::ScatterAdd { .. }
        | Op::LayerNorm { .. }
        | Op::Rope { .. }
        | Op::SwigluBackward => 3,
        Op::Attention { segmented, .. } => 3 + usize::from(*segmented),
        Op::CrossEntropyBackward { .. } | Op::RmsNormBackward => 4,
        Op::LayerNormBackward => 5,
        Op::AttentionBackward {
            segmented,
            lse_grad,
            ..
        } => 6 + usize::from(*segmented) + usize::from(*lse_grad),
    })
}
