use super::feeds::bind_feed;
use super::kernels::{needs_copy, run_node, view_layout, Context};
use super::node_error;
use super::Collectives;
use crate::passes::live_nodes;
use crate::{eval_shape, Bindings, Graph, Node, Op, Result};
use luoshu_backend::{Backend, Ops};
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// Run `graph` node by node in insertion order with a fresh buffer per computed value and
/// return the values of `graph.outputs()`. Views are zero-copy where strides allow. Nodes
/// the outputs do not need are skipped (their leaves need no feed).
///
/// `feeds` binds `Input` and `Parameter` leaves by name; `bindings` gives the symbolic dims.
pub fn evaluate(
    graph: &Graph,
    bindings: &Bindings,
    feeds: &HashMap<String, Tensor>,
    backend: &dyn Backend,
) -> Result<Vec<Tensor>> {
    evaluate_with(graph, bindings, feeds, backend, None)
}

/// [`evaluate`] for one rank of a distributed graph: `collectives` runs its collective nodes.
pub fn evaluate_with(
    graph: &Graph,
    bindings: &Bindings,
    feeds: &HashMap<String, Tensor>,
    backend: &dyn Backend,
    collectives: Option<&dyn Collectives>,
) -> Result<Vec<Tensor>> {
    let ctx = Context {
        ops: Ops::new(backend),
        collectives,
    };
    let live = live_nodes(graph);
    let mut values: Vec<Vec<Tensor>> = vec![Vec::new(); graph.len()];
    for id in graph.ids().filter(|id| live[id.index()]) {
        let node = graph.node(id);
        let dims = node
            .outputs
            .iter()
            .map(|t| eval_shape(&t.shape, bindings))
            .collect::<Result<Vec<_>>>()?;
        let inputs: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|v| &values[v.node.index()][v.output as usize])
            .collect();
        let outputs =
            compute(&ctx, node, &inputs, &dims, feeds).map_err(|e| node_error(id, &node.op, e))?;
        values[id.index()] = outputs;
    }
    Ok(graph
        .outputs()
        .iter()
        .map(|v| values[v.node.index()][v.output as usize].clone())
        .collect())
}

fn compute(
    ctx: &Context,
    node: &Node,
    inputs: &[&Tensor],
    dims: &[Vec<usize>],
    feeds: &HashMap<String, Tensor>,
) -> Result<Vec<Tensor>> {
    if matches!(node.op, Op::Input { .. } | Op::Parameter { .. }) {
        return Ok(vec![bind_feed(&node.op, &dims[0], feeds)?]);
    }
    if node.op.is_view() {
        match view_layout(&node.op, inputs[0].layout(), &dims[0]) {
            Ok(layout) => return Ok(vec![inputs[0].with_layout(layout)?]),
            Err(e) if needs_copy(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let outputs = node
        .outputs
        .iter()
        .zip(dims)
        .map(|(t, d)| ctx.ops.alloc(t.dtype, d))
        .collect::<luoshu_backend::Result<Vec<_>>>()?;
    run_node(ctx, &node.op, inputs, &outputs)?;
    Ok(outputs)
}
