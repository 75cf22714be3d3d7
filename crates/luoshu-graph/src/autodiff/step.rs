//! What a gradient rule sees of the node it differentiates, and what it returns.

use crate::{Error, Graph, Node, NodeId, Result, Value};

/// The gradient of each input of a node (`None`: not wanted, or not differentiable).
pub(super) type Grads = Vec<Option<Value>>;

/// What a gradient rule sees of the node it differentiates.
pub(super) struct Step<'a> {
    pub(super) id: NodeId,
    pub(super) node: &'a Node,
    /// Gradient of output 0 (zeros when only `d_lse` reached the node).
    pub(super) dy: Value,
    /// Gradient of attention's lse (output 1), when the loss depends on it (log-sum-exp
    /// merges of partial attentions). Every other further output is a saved statistic
    /// (rstd, mean, a cross-entropy's lse) that carries none.
    pub(super) d_lse: Option<Value>,
    /// Whether each input's gradient is wanted (it depends on a `wrt` and is a float).
    pub(super) needs: Vec<bool>,
}

impl Step<'_> {
    pub(super) fn x(&self, i: usize) -> Value {
        self.node.inputs[i]
    }

    pub(super) fn y(&self, output: u32) -> Value {
        Value::new(self.id, output)
    }

    /// Run `rule(graph, input, dy)` for each wanted input.
    pub(super) fn each(
        &self,
        g: &mut Graph,
        mut rule: impl FnMut(&mut Graph, usize, Value) -> Result<Option<Value>>,
    ) -> Result<Grads> {
        (0..self.needs.len())
            .map(|i| match self.needs[i] {
                true => rule(g, i, self.dy),
                false => Ok(None),
            })
            .collect()
    }

    /// The error of a family's rules for an op of another family: a bug in the dispatch.
    pub(super) fn not_in_family(&self, family: &str) -> Error {
        Error::Node {
            node: self.id,
            op: self.node.op.name(),
            detail: format!("is not a {family} op (a bug in the gradient rule dispatch)"),
        }
    }
}
