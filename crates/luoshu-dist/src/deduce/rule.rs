//! What the family rules share: their answer type, the per-axis deduction they are written
//! in, and NumPy-broadcasting helpers.

use crate::{Axis, DState};
use luoshu_graph::Dim;
use std::collections::VecDeque;

/// A family rule's answer: the output states, or why there is none.
pub(super) type RuleResult = std::result::Result<Vec<DState>, String>;

/// Deduces the output states device axis by device axis: aligns `states` on a common
/// refinement of their axes, maps each axis's input roles (one per state) to one role per
/// output with `rule(extent, roles)`, and builds the `outputs` states.
pub(super) fn per_axis(
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
pub(super) fn aligned_dim(d: usize, input_rank: usize, output_rank: usize) -> usize {
    d + output_rank - input_rank
}

/// Whether an input of `shape` is stretched along output dim `out_dim` of `output` by
/// NumPy broadcasting (the dim is missing or 1 in the input but not in the output).
pub(super) fn is_broadcast(shape: &[Dim], output: &[Dim], out_dim: usize) -> bool {
    let offset = output.len() - shape.len();
    out_dim < offset || shape[out_dim - offset].is_one() && !output[out_dim].is_one()
}

/// Whether `dim` is provably a multiple of `parts` (for a symbolic dim: its coefficient).
pub(super) fn divisible(dim: &Dim, parts: usize) -> bool {
    dim.div_exact(&Dim::fixed(parts)).is_some()
}
