//! Communication insertion: from a single-device (logical) graph and the distributed
//! states of its leaves, the local graph one rank runs, with collective nodes wherever a
//! consumer needs its input in another state.
//!
//! States propagate in node order with [`crate::deduce()`]. When an op rejects its inputs'
//! states, `choose` converts inputs to the first of a fixed list of alternatives the op
//! accepts, and `lower` turns each conversion into local nodes (a slice of this rank's
//! piece, or one collective per changed device axis). Graph outputs are converted to
//! duplicated, so every rank reads the full result. The alternatives, cheapest first:
//! for elementwise ops, the other inputs take the layout of the first split input (a
//! local slice of a duplicated input, a reduce-scatter of a partial one); then partial
//! inputs are all-reduced; then one input after the other is made duplicated; then all.
//! The first one the op accepts wins, even when its lowering is unsupported (below).
//!
//! Supported conversions: nothing, local slicing (also uneven), all-reduce (partial →
//! duplicate), reduce-scatter (partial → even split), all-gather (even split → duplicate),
//! and anything → duplicated as one of those collectives per device axis. A collective
//! over one axis of a multi-axis state runs on a sub-group named
//! `"{group}.stride{s}x{e}"`; [`Distributed::required_groups`] lists the
//! `Communicator::split(color, key)` calls the caller makes to create them.
//!
//! Not supported yet: a conversion that needs an all-to-all (e.g. elementwise inputs that
//! split different dims, or different mesh axes) or general point-to-point transfers,
//! except towards duplicated, both errors with
//! [`Error::Redistribution`] — the next step is an `AllToAll` op in the graph IR; turning
//! a non-partial tensor partial (zeros on the other summands); collectives over uneven
//! splits (the graph's all-gather output is `parts` × the local length); graphs that
//! already contain collectives.

mod choose;
mod localize;
mod lower;

pub use lower::SubGroup;

use crate::{DState, Error, Kind, Result};
use localize::{local_op, local_type};
use lower::Lowering;
use luoshu_graph::{Bindings, Graph, Op, TensorType, Value};
use std::collections::HashMap;

/// The result of [`distribute`] for one rank.
#[derive(Debug, Clone)]
pub struct Distributed {
    /// The graph this rank runs: leaves have the shapes of this rank's pieces, and the
    /// outputs are the full (duplicated) results.
    pub graph: Graph,
    /// The state each original output had before it was converted to duplicated.
    pub states: Vec<DState>,
    /// The nodes inserted for conversions, in order: (op name, kind of conversion).
    pub inserted: Vec<(String, Kind)>,
    /// Sub-groups the collectives of `graph` run on (the whole group is not listed).
    pub required_groups: Vec<SubGroup>,
}

/// The local graph of `rank` (of `devices`) for the logical `graph`, whose `Input` and
/// `Parameter` leaves have the states `leaf_states` by name (a leaf not named there, and
/// every other leaf, is duplicated). Collectives over all devices use the communicator
/// named `group`; `bindings` gives the symbolic dims (needed wherever a conversion is
/// planned or a symbolic dim is split unevenly).
pub fn distribute(
    graph: &Graph,
    bindings: &Bindings,
    leaf_states: &HashMap<String, DState>,
    devices: usize,
    rank: usize,
    group: &str,
) -> Result<Distributed> {
    check_arguments(graph, leaf_states, devices, rank)?;
    let duplicated = DState::duplicated(devices)?;
    let mut local = Graph::new();
    let mut lowering = Lowering::new(bindings, devices, rank, group);
    // Old value → (local value, state of the logical tensor).
    let mut values: HashMap<Value, (Value, DState)> = HashMap::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if node.op.is_collective() {
            return Err(Error::CollectiveInGraph {
                node: id.to_string(),
                op: node.op.name().to_string(),
            });
        }
        let (inputs, out_states) = if node.op.is_leaf() {
            (
                Vec::new(),
                vec![leaf_state(&node.op, leaf_states, &duplicated)],
            )
        } else {
            let mut held = Vec::with_capacity(node.inputs.len());
            for v in &node.inputs {
                let entry = values.get(v).ok_or_else(|| Error::UseBeforeDefinition {
                    node: id.to_string(),
                    value: v.to_string(),
                })?;
                held.push((entry.0, graph.value_type(*v), entry.1.clone()));
            }
            let types: Vec<&TensorType> = held.iter().map(|h| h.1).collect();
            let states: Vec<DState> = held.iter().map(|h| h.2.clone()).collect();
            let (targets, out_states) =
                choose::input_states(&node.op, &types, &states, &node.outputs, &duplicated)?;
            let mut inputs = Vec::with_capacity(held.len());
            for ((value, full, state), target) in held.iter().zip(&targets) {
                inputs.push(lowering.convert(&mut local, *value, full, state, target)?);
            }
            (inputs, out_states)
        };
        let expected = node
            .outputs
            .iter()
            .zip(&out_states)
            .map(|(t, s)| local_type(t, s, rank))
            .collect::<Result<Vec<_>>>()?;
        let new = local.add(local_op(&node.op, &expected), &inputs)?;
        let inferred = &local.node(new).outputs;
        if *inferred != expected {
            return Err(Error::LocalMismatch(format!(
                "{id} {}: the local graph infers {inferred:?} but the states {out_states:?} give {expected:?}",
                node.op.name()
            )));
        }
        for (k, state) in out_states.into_iter().enumerate() {
            values.insert(Value::new(id, k as u32), (Value::new(new, k as u32), state));
        }
    }
    let mut outputs = Vec::with_capacity(graph.outputs().len());
    let mut states = Vec::with_capacity(graph.outputs().len());
    for v in graph.outputs() {
        let (value, state) = values.get(v).cloned().ok_or_else(|| Error::UnknownOutput {
            value: v.to_string(),
        })?;
        let full = graph.value_type(*v);
        outputs.push(lowering.convert(&mut local, value, full, &state, &duplicated)?);
        states.push(state);
    }
    local.set_outputs(outputs)?;
    let (inserted, required_groups) = lowering.finish();
    Ok(Distributed {
        graph: local,
        states,
        inserted,
        required_groups,
    })
}

/// The rank is one of the devices, and every given state names a leaf of the graph and
/// covers `devices` devices.
fn check_arguments(
    graph: &Graph,
    leaf_states: &HashMap<String, DState>,
    devices: usize,
    rank: usize,
) -> Result<()> {
    if rank >= devices {
        return Err(Error::RankOutOfGroup { rank, devices });
    }
    for (name, state) in leaf_states {
        let leaf = graph
            .leaf(name)
            .ok_or_else(|| Error::NotALeaf { name: name.clone() })?;
        state.check()?;
        if state.devices != devices {
            return Err(Error::LeafDevices {
                name: name.clone(),
                state: Box::new(state.clone()),
                devices: state.devices,
                expected: devices,
            });
        }
        let rank_of_leaf = graph.node(leaf).outputs[0].rank();
        if let Some(d) = state.splits.keys().find(|&&d| d >= rank_of_leaf) {
            return Err(Error::LeafSplitBeyondRank {
                name: name.clone(),
                rank: rank_of_leaf,
                state: Box::new(state.clone()),
                dim: *d,
            });
        }
    }
    Ok(())
}

/// The given state of an `Input` or `Parameter`; duplicated otherwise.
fn leaf_state(op: &Op, leaf_states: &HashMap<String, DState>, duplicated: &DState) -> DState {
    match op {
        Op::Input { name, .. } | Op::Parameter { name, .. } => leaf_states.get(name).cloned(),
        _ => None,
    }
    .unwrap_or_else(|| duplicated.clone())
}
