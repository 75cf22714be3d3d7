use super::{rebuild, PassStats};
use crate::{Graph, Result};

/// `live[id]`: node `id` is needed to compute the graph's outputs. One reverse sweep,
/// since node order is topological.
pub fn live_nodes(graph: &Graph) -> Vec<bool> {
    let mut live = vec![false; graph.len()];
    for v in graph.outputs() {
        live[v.node.index()] = true;
    }
    for (i, node) in graph.nodes().iter().enumerate().rev() {
        if live[i] {
            for v in &node.inputs {
                live[v.node.index()] = true;
            }
        }
    }
    live
}

/// Dead-code elimination: drop every node the outputs do not need.
pub fn dce(graph: &Graph) -> Result<(Graph, PassStats)> {
    let live = live_nodes(graph);
    let out = rebuild(graph, &live)?;
    let removed = graph.len() - out.len();
    let stats = PassStats::new("dce", graph, &out, removed);
    Ok((out, stats))
}
