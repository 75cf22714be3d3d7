//! Rebuilding a graph through a map from old values to new ones.

use crate::{Error, Graph, NodeId, Op, Result, Value};
use std::collections::HashMap;

/// Builds a new graph from an old one: nodes are re-added through a map from old values to
/// new ones, so a pass only spells out what it changes. Re-adding goes through
/// `Graph::add`, which hash-conses (CSE for free) and re-infers types.
pub struct Rewriter<'a> {
    source: &'a Graph,
    graph: Graph,
    remap: HashMap<Value, Value>,
}

impl<'a> Rewriter<'a> {
    /// A rewriter of `source` with an empty new graph and nothing mapped yet.
    pub fn new(source: &'a Graph) -> Self {
        Rewriter {
            source,
            graph: Graph::new(),
            remap: HashMap::new(),
        }
    }

    /// The graph being rewritten.
    pub fn source(&self) -> &'a Graph {
        self.source
    }

    /// The graph under construction (to add replacement nodes).
    pub fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    /// The new value standing for old value `v`.
    pub fn map(&self, v: Value) -> Result<Value> {
        self.remap.get(&v).copied().ok_or_else(|| Error::Invalid {
            detail: format!("rewrite: value {v} was used before being mapped"),
        })
    }

    /// Let `new` stand for old value `old` from now on.
    pub fn replace(&mut self, old: Value, new: Value) {
        self.remap.insert(old, new);
    }

    /// Add `op` applied to the new values standing for old `inputs`.
    pub fn add_mapped(&mut self, op: Op, inputs: &[Value]) -> Result<NodeId> {
        let inputs = inputs
            .iter()
            .map(|v| self.map(*v))
            .collect::<Result<Vec<_>>>()?;
        self.graph.add(op, &inputs)
    }

    /// Copy old node `id` unchanged (inputs remapped) and map all its outputs.
    pub fn copy_node(&mut self, id: NodeId) -> Result<NodeId> {
        let node = self.source.node(id);
        let new = self.add_mapped(node.op.clone(), &node.inputs)?;
        for k in 0..node.outputs.len() as u32 {
            self.replace(Value::new(id, k), Value::new(new, k));
        }
        Ok(new)
    }

    /// The finished graph, with the old graph's outputs remapped.
    pub fn finish(mut self) -> Result<Graph> {
        let outputs = self
            .source
            .outputs()
            .iter()
            .map(|v| self.map(*v))
            .collect::<Result<Vec<_>>>()?;
        self.graph.set_outputs(outputs)?;
        Ok(self.graph)
    }
}

/// A copy of `graph` keeping only the nodes with `keep[id]` set (they must include
/// everything the kept nodes and the outputs use).
pub fn rebuild(graph: &Graph, keep: &[bool]) -> Result<Graph> {
    let mut rw = Rewriter::new(graph);
    for id in graph.ids().filter(|id| keep[id.index()]) {
        rw.copy_node(id)?;
    }
    rw.finish()
}
