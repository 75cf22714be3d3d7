//! Scheduling: a topological order of the nodes the outputs need that lowers peak memory.
//!
//! Greedy list scheduling: among the ready nodes, run the one that frees the most arena
//! bytes minus the bytes it allocates; ties go to the lowest node id (the builder's order),
//! so the result is deterministic. Views allocate nothing and keep their base alive.

use crate::memory::{lives_outside_arena, value_bytes};
use crate::passes::live_nodes;
use crate::{Bindings, Graph, NodeId, Result, Value};
use std::collections::{BTreeSet, HashMap};

/// The memory-lowering order of the live nodes of `graph` under `bindings`.
pub fn schedule(graph: &Graph, bindings: &Bindings) -> Result<Vec<NodeId>> {
    let live = live_nodes(graph);
    let live_ids: Vec<NodeId> = graph.ids().filter(|id| live[id.index()]).collect();

    // Every value maps to the root value owning its bytes (views share their input's).
    let mut root: HashMap<Value, Value> = HashMap::new();
    let mut root_bytes: HashMap<Value, usize> = HashMap::new();
    let mut alloc = vec![0usize; graph.len()];
    for &id in &live_ids {
        let node = graph.node(id);
        for (k, t) in node.outputs.iter().enumerate() {
            let v = Value::new(id, k as u32);
            if node.op.is_view() {
                root.insert(v, root[&node.inputs[0]]);
            } else {
                root.insert(v, v);
                if !lives_outside_arena(&node.op) {
                    let bytes = value_bytes(t, bindings)?;
                    root_bytes.insert(v, bytes);
                    alloc[id.index()] += bytes;
                }
            }
        }
    }
    // Output roots stay alive to the end: finishing their readers frees nothing.
    for v in graph.outputs() {
        root_bytes.remove(&root[v]);
    }

    let mut pending_reads: HashMap<Value, usize> = HashMap::new();
    let mut waiting = vec![0usize; graph.len()];
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); graph.len()];
    for &id in &live_ids {
        for v in &graph.node(id).inputs {
            *pending_reads.entry(root[v]).or_default() += 1;
            waiting[id.index()] += 1;
            consumers[v.node.index()].push(id);
        }
    }

    let mut ready: BTreeSet<NodeId> = live_ids
        .iter()
        .copied()
        .filter(|id| waiting[id.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(live_ids.len());
    while let Some(&next) = ready.iter().max_by_key(|&&id| {
        let freed = freed_bytes(graph, id, &root, &pending_reads, &root_bytes);
        (
            freed as i128 - alloc[id.index()] as i128,
            std::cmp::Reverse(id),
        )
    }) {
        ready.remove(&next);
        order.push(next);
        for v in &graph.node(next).inputs {
            if let Some(n) = pending_reads.get_mut(&root[v]) {
                *n -= 1;
            }
        }
        for &c in &consumers[next.index()] {
            waiting[c.index()] -= 1;
            if waiting[c.index()] == 0 {
                ready.insert(c);
            }
        }
    }
    Ok(order)
}

/// Arena bytes released once `id` has read its inputs: roots whose every remaining read
/// is by `id`.
fn freed_bytes(
    graph: &Graph,
    id: NodeId,
    root: &HashMap<Value, Value>,
    pending_reads: &HashMap<Value, usize>,
    root_bytes: &HashMap<Value, usize>,
) -> usize {
    let inputs = &graph.node(id).inputs;
    let mut roots: Vec<Value> = inputs.iter().map(|v| root[v]).collect();
    roots.sort_unstable();
    roots.dedup();
    roots
        .iter()
        .filter(|r| {
            let reads_here = inputs.iter().filter(|v| root[*v] == **r).count();
            pending_reads.get(*r) == Some(&reads_here)
        })
        .filter_map(|r| root_bytes.get(r))
        .sum()
}
