//! Handles to nodes and to their outputs.

use std::fmt;

/// Index of a node in its graph. Nodes are only ever appended, so an input always has a
/// smaller id than its consumer: the node order is a topological order and cycles cannot be
/// built.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// Position of the node in [`crate::Graph::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One output of a node (most nodes have exactly one).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// The node computing the value.
    pub node: NodeId,
    /// Which of the node's outputs it is (0 for single-output nodes).
    pub output: u32,
}

impl Value {
    /// Output `output` of `node`.
    pub fn new(node: NodeId, output: u32) -> Self {
        Value { node, output }
    }
}

impl From<NodeId> for Value {
    fn from(node: NodeId) -> Self {
        Value { node, output: 0 }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.output == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}.{}", self.node, self.output)
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
