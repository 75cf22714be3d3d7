//! Choosing the input states an op runs on when it rejects the ones its inputs are in.

use crate::{deduce, Axis, DState, Error, Result};
use luoshu_graph::{Op, TensorType};

/// The states to convert the inputs (of full types `types`, in `states`) to, and the
/// states of the op's outputs then. The inputs stay as they are when the op accepts them;
/// otherwise the first alternative the op accepts wins, in this order (cheapest
/// communication first):
///
/// 1. For elementwise ops: every other input takes the layout of the first input that is
///    split and not partial (split along the dims lining up with its split dims,
///    duplicated along dims it broadcasts) — a local slice when that input was duplicated.
/// 2. Partial inputs are made duplicated on their partial axis (all-reduce).
/// 3. Additionally, one input after the other (first input first) is made duplicated.
/// 4. Every input is made duplicated.
pub(super) fn input_states(
    op: &Op,
    types: &[&TensorType],
    states: &[DState],
    outputs: &[TensorType],
    duplicated: &DState,
) -> Result<(Vec<DState>, Vec<DState>)> {
    let first_error = match try_deduce(op, types, states) {
        Ok(out) => return Ok((states.to_vec(), out)),
        Err(e) => e,
    };
    for candidate in alternatives(op, types, states, outputs, duplicated) {
        if candidate.as_slice() == states {
            continue;
        }
        if let Ok(out) = try_deduce(op, types, &candidate) {
            return Ok((candidate, out));
        }
    }
    Err(Error::NoConversion {
        first: Box::new(first_error),
    })
}

fn try_deduce(op: &Op, types: &[&TensorType], states: &[DState]) -> Result<Vec<DState>> {
    let inputs: Vec<(&TensorType, &DState)> = types.iter().copied().zip(states).collect();
    deduce(op, &inputs)
}

fn alternatives(
    op: &Op,
    types: &[&TensorType],
    states: &[DState],
    outputs: &[TensorType],
    duplicated: &DState,
) -> Vec<Vec<DState>> {
    let mut candidates = Vec::new();
    let elementwise = op.is_elementwise() || matches!(op, Op::Fused(_));
    if let (true, Some(output)) = (elementwise, outputs.first()) {
        candidates.extend(aligned_to_first_split(types, states, output));
    }
    let reduced: Vec<DState> = states
        .iter()
        .map(|s| without_partial(s, duplicated))
        .collect();
    candidates.push(reduced.clone());
    for i in 0..states.len() {
        let mut one_duplicated = reduced.clone();
        one_duplicated[i] = duplicated.clone();
        candidates.push(one_duplicated);
    }
    candidates.push(vec![duplicated.clone(); states.len()]);
    candidates
}

/// Alternative 1 of [`input_states`], or `None` when no input is split without being
/// partial, or the layout is no state for some input.
fn aligned_to_first_split(
    types: &[&TensorType],
    states: &[DState],
    output: &TensorType,
) -> Option<Vec<DState>> {
    let reference = states
        .iter()
        .position(|s| s.partial == 1 && !s.splits.is_empty())?;
    let (ref_type, ref_state) = (types[reference], &states[reference]);
    let out_rank = output.rank();
    types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == reference {
                return Some(ref_state.clone());
            }
            let offset = out_rank - t.rank();
            let axes: Vec<(Axis, usize)> = ref_state
                .axes()
                .into_iter()
                .map(|(axis, extent)| match axis {
                    Axis::Split(d) => {
                        let out_dim = d + out_rank - ref_type.rank();
                        let stretched = out_dim < offset
                            || t.shape[out_dim - offset].is_one()
                                && !output.shape[out_dim].is_one();
                        let role = if stretched {
                            Axis::Duplicate
                        } else {
                            Axis::Split(out_dim - offset)
                        };
                        (role, extent)
                    }
                    other => (other, extent),
                })
                .collect();
            DState::new(&merge_duplicates(axes)).ok()
        })
        .collect()
}

/// `state` with its partial axis made duplicated (neighbouring duplicated axes merge);
/// when that is no state (two duplicated axes apart), fully duplicated.
fn without_partial(state: &DState, duplicated: &DState) -> DState {
    if state.partial == 1 {
        return state.clone();
    }
    let axes = state
        .axes()
        .into_iter()
        .map(|(axis, extent)| match axis {
            Axis::Partial => (Axis::Duplicate, extent),
            other => (other, extent),
        })
        .collect();
    DState::new(&merge_duplicates(axes)).unwrap_or_else(|_| duplicated.clone())
}

/// Neighbouring duplicated axes as one axis of their product extent.
fn merge_duplicates(axes: Vec<(Axis, usize)>) -> Vec<(Axis, usize)> {
    let mut merged: Vec<(Axis, usize)> = Vec::with_capacity(axes.len());
    for (axis, extent) in axes {
        match merged.last_mut() {
            Some((Axis::Duplicate, e)) if axis == Axis::Duplicate => *e *= extent,
            _ => merged.push((axis, extent)),
        }
    }
    merged
}
