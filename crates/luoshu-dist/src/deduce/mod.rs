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
mod shape_ops;

use crate::{Axis, DState, Error, Result};
use luoshu_graph::{infer::infer, Dim, Op, TensorType};
use std::collections::VecDeque;

/// A family rule's answer: the output states, or why there is none.
type RuleResult = std::result::Result<Vec<DState>, String>;

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
        Error::Deduction(format!(
            "{}: {why}; inputs [{}]",
            op.name(),
            described.join(", ")
        ))
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
        infer(op, &types).map_err(fail)?
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
        Op::AllReduce { .. } | Op::AllGather { .. } | Op::ReduceScatter { .. } => {
            comm::deduce(op, inputs[0].1)
        }
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

/// Deduces the output states device axis by device axis: aligns `states` on a common
/// refinement of their axes, maps each axis's input roles (one per state) to one role per
/// output with `rule(extent, roles)`, and builds the `outputs` states.
fn per_axis(
    states: &[&DState],
    outputs: usize,
    rule: impl Fn(usize, &[Axis]) -> std::result::Result<Vec<Axis>, String>,
) -> RuleResult {
    let mut axes: Vec<Vec<(Axis, usize)>> = vec![Vec::new(); outputs];
    for (extent, roles) in align(states)? {
        let out_roles = rule(extent, &roles).map_err(|why| {
            format!("{why} (on a device axis of extent {extent} where the inputs are {roles:?})")
        })?;
        for (out, role) in axes.iter_mut().zip(out_roles) {
            out.push((role, extent));
        }
    }
    axes.into_iter().map(assemble).collect()
}

/// Cuts the device axes of `states` into a common sequence of nested axes, returning each
/// axis's extent and the role every state has along it. Only duplicate and partial axes
/// are cut: a duplicate (partial) axis of extent `a·b` is an outer and an inner
/// duplicate (partial) axis of extents `a` and `b`.
fn align(states: &[&DState]) -> std::result::Result<Vec<(usize, Vec<Axis>)>, String> {
    let mut queues: Vec<VecDeque<(Axis, usize)>> = states.iter().map(|s| s.axes().into()).collect();
    let mut aligned = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let fronts: Option<Vec<(Axis, usize)>> =
            queues.iter().map(|q| q.front().copied()).collect();
        let fronts = fronts.ok_or("the device axes of the inputs do not line up")?;
        let step = fronts.iter().map(|&(_, e)| e).min().unwrap_or(1);
        for &(axis, extent) in &fronts {
            let cuttable = matches!(axis, Axis::Duplicate | Axis::Partial);
            if extent != step && !(cuttable && extent % step == 0) {
                return Err(format!(
                    "the device axes do not nest: {axis:?} of extent {extent} meets an axis of extent {step}"
                ));
            }
        }
        for q in &mut queues {
            if let Some(front) = q.front_mut() {
                front.1 /= step;
                if front.1 == 1 {
                    q.pop_front();
                }
            }
        }
        aligned.push((step, fronts.iter().map(|&(a, _)| a).collect()));
    }
    Ok(aligned)
}

/// The state of the axes in device order, merging neighbouring duplicate (or partial) axes
/// into one.
fn assemble(axes: Vec<(Axis, usize)>) -> std::result::Result<DState, String> {
    let mut merged: Vec<(Axis, usize)> = Vec::with_capacity(axes.len());
    for (axis, extent) in axes {
        match merged.last_mut() {
            Some((last, e)) if *last == axis && matches!(axis, Axis::Duplicate | Axis::Partial) => {
                *e *= extent
            }
            _ => merged.push((axis, extent)),
        }
    }
    DState::new(&merged)
        .map_err(|e| format!("the outputs' device axes {merged:?} are not one state: {e}"))
}

/// The output dim that dim `d` of a rank-`input_rank` input lines up with under NumPy
/// broadcasting (right-aligned) into a rank-`output_rank` output.
fn aligned_dim(d: usize, input_rank: usize, output_rank: usize) -> usize {
    d + output_rank - input_rank
}

/// Whether an input of `shape` is stretched along output dim `out_dim` of `output` by
/// NumPy broadcasting (the dim is missing or 1 in the input but not in the output).
fn is_broadcast(shape: &[Dim], output: &[Dim], out_dim: usize) -> bool {
    let offset = output.len() - shape.len();
    out_dim < offset || shape[out_dim - offset].is_one() && !output[out_dim].is_one()
}

/// Whether `dim` is provably a multiple of `parts` (for a symbolic dim: its coefficient).
fn divisible(dim: &Dim, parts: usize) -> bool {
    dim.div_exact(&Dim::fixed(parts)).is_some()
}
