//! Deduction of the distributed states of an op's outputs from those of its inputs (after
//! Hetu's DStates and Megatron's tensor parallelism), one file per op family.
//!
//! Rules work device axis by device axis: the input states are aligned on a common
//! refinement of their device axes (a duplicate or partial axis may be cut into nested
//! axes; a split may not), and on each axis the inputs' roles (which dim they split, or
//! whether they are partial or duplicated there) decide the outputs' roles. A combination
//! a rule does not know is an error: the caller must redistribute first.

mod comm;
mod elementwise;
mod indexing;
mod leaves;
mod matmul;
mod nn;
mod reduce;
mod rule;
mod shape_ops;

use crate::{DState, Error, Result};
use luoshu_graph::{infer::infer, Op, TensorType};

/// The distributed states of `op`'s outputs when its inputs (full logical types) have the
/// given states.
///
/// Errors with [`Error::Deduction`] naming the op and the input states when the inputs
/// are inconsistent (different device counts, splits beyond a tensor's rank, types the op
/// does not accept) or no rule covers the combination.
pub fn deduce(op: &Op, inputs: &[(&TensorType, &DState)]) -> Result<Vec<DState>> {
    let fail = |why: String| {
        let described: Vec<String> = inputs
            .iter()
            .map(|(t, state)| format!("{t} @ {state}"))
            .collect();
        Error::Deduction {
            op: op.name(),
            why,
            inputs: described.join(", "),
        }
    };
    check_states(inputs).map_err(fail)?;
    // Collectives change the local shape, not the logical one, so their shape rule does
    // not apply to the full types seen here.
    let outputs = if op.is_collective() {
        if inputs.len() != 1 {
            return Err(fail(format!("expects 1 input, got {}", inputs.len())));
        }
        Vec::new()
    } else {
        let types: Vec<&TensorType> = inputs.iter().map(|&(t, _)| t).collect();
        infer(op, &types).map_err(|e| fail(e.to_string()))?
    };
    match op {
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. } => leaves::deduce(op),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast(_) | Op::Fused(_) => {
            elementwise::deduce(op, inputs, &outputs[0])
        }
        Op::Reduce { .. } | Op::Argmax { .. } => reduce::deduce(op, inputs[0].1),
        Op::MatMul => matmul::deduce(inputs[0], inputs[1], &outputs[0]),
        Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous => shape_ops::deduce(op, inputs[0], &outputs[0]),
        Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. } => indexing::deduce(op, inputs),
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
        | Op::AttentionBackward { .. } => nn::deduce(op, inputs),
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => comm::deduce(op, inputs[0].1),
    }
    .map_err(fail)
}

/// Every state is valid, covers the same devices, and splits only dims of its tensor.
fn check_states(inputs: &[(&TensorType, &DState)]) -> std::result::Result<(), String> {
    for (i, (t, state)) in inputs.iter().enumerate() {
        state.check().map_err(|e| e.to_string())?;
        if let Some(d) = state.splits.keys().find(|&&d| d >= t.rank()) {
            return Err(format!(
                "input {i} splits dim {d} of a rank-{} tensor",
                t.rank()
            ));
        }
        if state.devices != inputs[0].1.devices {
            return Err(format!(
                "input {i} is on {} devices but input 0 is on {}",
                state.devices, inputs[0].1.devices
            ));
        }
    }
    Ok(())
}
