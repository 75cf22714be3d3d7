//! The graph itself: nodes appended in topological order, hash-consed, with their
//! inferred output types.

use crate::infer::infer;
use crate::{Error, NodeId, Op, Result, TensorType, Value};
use std::collections::HashMap;

/// One operation of a [`Graph`] with its inputs and the types of its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Values it reads, in the order the op defines; each comes from an earlier node.
    pub inputs: Vec<Value>,
    /// Shape and dtype of each output, as shape inference gave them (most ops have one).
    pub outputs: Vec<TensorType>,
}

/// A functional (SSA) graph. [`Graph::add`] hash-conses: adding a node identical to an
/// existing one (same op, same inputs) returns the existing node, so common-subexpression
/// elimination is structural. Inputs and parameters are unique by name.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    dedup: HashMap<(Op, Vec<Value>), NodeId>,
    leaves_by_name: HashMap<String, NodeId>,
    outputs: Vec<Value>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node (or find the identical existing one) after inferring its output types.
    /// Errors when an input is not a value of this graph, when inference rejects the
    /// inputs ([`Error::Infer`]), or when a different input or parameter already has the
    /// name.
    pub fn add(&mut self, op: Op, inputs: &[Value]) -> Result<NodeId> {
        for v in inputs {
            self.check_value(*v)?;
        }
        if let Some(&id) = self.dedup.get(&(op.clone(), inputs.to_vec())) {
            return Ok(id);
        }
        let input_types: Vec<&TensorType> = inputs.iter().map(|v| self.value_type(*v)).collect();
        let outputs = infer(&op, &input_types).map_err(|reason| Error::Infer {
            op: op.name(),
            reason,
            inputs: inputs
                .iter()
                .zip(&input_types)
                .map(|(v, t)| format!("{v}: {t}"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        if let Op::Input { name, .. } | Op::Parameter { name, .. } = &op {
            if let Some(&existing) = self.leaves_by_name.get(name) {
                return Err(Error::DuplicateLeaf {
                    existing,
                    op: self.nodes[existing.index()].op.name(),
                    name: name.clone(),
                });
            }
        }
        let id = NodeId(u32::try_from(self.nodes.len()).map_err(|_| Error::Invalid {
            detail: "graph has more than u32::MAX nodes".into(),
        })?);
        if let Op::Input { name, .. } | Op::Parameter { name, .. } = &op {
            self.leaves_by_name.insert(name.clone(), id);
        }
        self.dedup.insert((op.clone(), inputs.to_vec()), id);
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            outputs,
        });
        Ok(id)
    }

    /// Add a single-output node and return its value.
    pub fn add1(&mut self, op: Op, inputs: &[Value]) -> Result<Value> {
        Ok(self.add(op, inputs)?.into())
    }

    fn check_value(&self, v: Value) -> Result<()> {
        let node = self
            .nodes
            .get(v.node.index())
            .ok_or(Error::UnknownValue { value: v })?;
        if v.output as usize >= node.outputs.len() {
            return Err(Error::NoSuchOutput {
                node: v.node,
                op: node.op.name(),
                outputs: node.outputs.len(),
                output: v.output,
            });
        }
        Ok(())
    }

    /// The node `id`. Panics if `id` is not a node of this graph (ids come from it).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Every node, indexed by [`NodeId::index`], in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Ids of all nodes in topological (insertion) order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// Shape and dtype of `v`. Panics if `v` is not a value of this graph.
    pub fn value_type(&self, v: Value) -> &TensorType {
        &self.nodes[v.node.index()].outputs[v.output as usize]
    }

    /// The input or parameter called `name`.
    pub fn leaf(&self, name: &str) -> Option<NodeId> {
        self.leaves_by_name.get(name).copied()
    }

    /// Values the graph computes for its caller (kept alive by dead-code elimination).
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// Replace the graph's outputs; errors if one is not a value of this graph.
    pub fn set_outputs(&mut self, outputs: Vec<Value>) -> Result<()> {
        for v in &outputs {
            self.check_value(*v)?;
        }
        self.outputs = outputs;
        Ok(())
    }

    /// Check the invariants every pass must preserve: inputs precede consumers, output
    /// types are what inference gives, hash-consing holds, leaf names are unique.
    pub fn verify(&self) -> Result<()> {
        let mut seen: HashMap<(&Op, &[Value]), NodeId> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let fail = |detail: String| Error::Node {
                node: id,
                op: node.op.name(),
                detail,
            };
            for v in &node.inputs {
                if v.node >= id {
                    return Err(fail(format!("input {v} does not precede its consumer")));
                }
                self.check_value(*v)?;
            }
            let types: Vec<&TensorType> = node.inputs.iter().map(|v| self.value_type(*v)).collect();
            let inferred =
                infer(&node.op, &types).map_err(|d| fail(format!("shape inference fails: {d}")))?;
            if inferred != node.outputs {
                return Err(fail(format!(
                    "recorded outputs {:?} differ from inferred {:?}",
                    node.outputs, inferred
                )));
            }
            if let Some(first) = seen.insert((&node.op, &node.inputs), id) {
                return Err(fail(format!("duplicate of {first} (hash-consing broken)")));
            }
        }
        for v in &self.outputs {
            self.check_value(*v)?;
        }
        Ok(())
    }
}
