//! Reverse-mode automatic differentiation as a graph-to-graph transform: [`grad`] appends the
//! backward nodes to a copy of the graph. One gradient rule per op, in a `match` per op
//! family (one file each); gradients of views are views, broadcasting is undone with
//! [`Graph::sum_to`], and gradients reaching a value along several paths are summed with
//! `add` nodes.

mod comm;
mod elementwise;
mod indexing;
mod matmul;
mod nn;
mod reduce;
mod shape_ops;
mod step;

use crate::{Error, Graph, Node, NodeId, Op, Result, Value};
use std::collections::HashMap;
use step::{Grads, Step};

/// Append to a copy of `graph` the gradients of `loss` with respect to each of `wrt`.
///
/// A non-scalar `loss` is seeded with ones (the gradient of the sum of its elements). A
/// `wrt` the loss does not depend on gets a zeros `Full` node. Returns the new graph
/// (outputs unchanged) and the gradient value of each `wrt`, with its shape and dtype.
pub fn grad(graph: &Graph, loss: Value, wrt: &[Value]) -> Result<(Graph, Vec<Value>)> {
    check_float(graph, loss, "loss")?;
    for &w in wrt {
        check_float(graph, w, "wrt")?;
    }
    let depends = depends_on(graph, wrt);
    let mut g = graph.clone();
    let mut grads: HashMap<Value, Value> = HashMap::new();
    let loss_type = graph.value_type(loss).clone();
    grads.insert(loss, g.full(1.0, &loss_type.shape, loss_type.dtype)?);

    for id in (0..=loss.node.0).rev().map(NodeId) {
        let node = graph.node(id);
        if node.op.is_leaf() || !depends[id.index()] {
            continue;
        }
        let Some((dy, d_lse)) = output_grads(&mut g, &grads, id, node)? else {
            continue;
        };
        let needs: Vec<bool> = node
            .inputs
            .iter()
            .map(|v| depends[v.node.index()] && graph.value_type(*v).dtype.is_float())
            .collect();
        if !needs.contains(&true) {
            continue;
        }
        let step = Step {
            id,
            node,
            dy,
            d_lse,
            needs,
        };
        let input_grads = rule(&mut g, &step)?;
        for (&input, d) in node.inputs.iter().zip(input_grads) {
            let Some(d) = d else { continue };
            if g.value_type(d) != graph.value_type(input) {
                return Err(node_error(
                    id,
                    node,
                    format!(
                        "gradient rule gave {} for input {input} of type {} (a bug in the rule)",
                        g.value_type(d),
                        graph.value_type(input)
                    ),
                ));
            }
            let total = match grads.get(&input) {
                Some(&prev) => g.plus(prev, d)?,
                None => d,
            };
            grads.insert(input, total);
        }
    }

    let results = wrt
        .iter()
        .map(|w| match grads.get(w) {
            Some(&d) => Ok(d),
            None => g.zeros_like(*w),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((g, results))
}

fn check_float(graph: &Graph, v: Value, role: &'static str) -> Result<()> {
    let exists = graph
        .nodes()
        .get(v.node.index())
        .is_some_and(|n| (v.output as usize) < n.outputs.len());
    if !exists {
        return Err(Error::GradOfUnknownValue { role, value: v });
    }
    let dtype = graph.dtype_of(v);
    if !dtype.is_float() {
        return Err(Error::NotDifferentiable {
            role,
            value: v,
            dtype,
        });
    }
    Ok(())
}

/// Nodes whose value depends on some `wrt` (inputs precede consumers, so one forward sweep).
fn depends_on(graph: &Graph, wrt: &[Value]) -> Vec<bool> {
    let mut depends = vec![false; graph.len()];
    for w in wrt {
        depends[w.node.index()] = true;
    }
    for (i, node) in graph.nodes().iter().enumerate() {
        if node.inputs.iter().any(|v| depends[v.node.index()]) {
            depends[i] = true;
        }
    }
    depends
}

/// The gradients of output 0 and of attention's lse (`None`: no gradient reached the node),
/// or an error when one reached a statistic output.
fn output_grads(
    g: &mut Graph,
    grads: &HashMap<Value, Value>,
    id: NodeId,
    node: &Node,
) -> Result<Option<(Value, Option<Value>)>> {
    let lse_differentiable = matches!(node.op, Op::Attention { .. });
    let d_lse = lse_differentiable
        .then(|| grads.get(&Value::new(id, 1)).copied())
        .flatten();
    let first_statistic = 1 + u32::from(lse_differentiable);
    for output in first_statistic..node.outputs.len() as u32 {
        if grads.contains_key(&Value::new(id, output)) {
            return Err(node_error(
                id,
                node,
                format!(
                    "the loss depends on output {output}, a saved statistic with no gradient \
                     rule; compute it from primitive ops if it must be differentiated"
                ),
            ));
        }
    }
    let dy = match (grads.get(&Value::new(id, 0)), d_lse) {
        (Some(&dy), _) => dy,
        (None, Some(_)) => g.zeros_like(Value::new(id, 0))?,
        (None, None) => return Ok(None),
    };
    Ok(Some((dy, d_lse)))
}

fn node_error(id: NodeId, node: &Node, detail: String) -> Error {
    Error::Node {
        node: id,
        op: node.op.name(),
        detail,
    }
}

/// The gradient rule of `step`'s op, by family.
fn rule(g: &mut Graph, step: &Step) -> Result<Grads> {
    match &step.node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast(_) => {
            elementwise::backward(g, step)
        }
        Op::Reduce { .. } | Op::Argmax { .. } => reduce::backward(g, step),
        Op::MatMul => matmul::backward(g, step),
        Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous => shape_ops::backward(g, step),
        Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. } => indexing::backward(g, step),
        Op::Softmax
        | Op::LogSoftmax
        | Op::CrossEntropy { .. }
        | Op::RmsNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Rope { .. }
        | Op::Swiglu
        | Op::Attention { .. } => nn::backward(g, step),
        Op::CrossEntropyBackward { .. }
        | Op::RmsNormBackward
        | Op::LayerNormBackward
        | Op::SwigluBackward
        | Op::AttentionBackward { .. } => Err(node_error(
            step.id,
            step.node,
            "is a backward op and has no gradient rule (second-order differentiation is not \
             supported)"
                .into(),
        )),
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. } => Ok(vec![]),
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => comm::backward(g, step),
        Op::Fused(_) => Err(node_error(
            step.id,
            step.node,
            "has no gradient rule: differentiate before fusing (fusion runs after autodiff)".into(),
        )),
    }
}
