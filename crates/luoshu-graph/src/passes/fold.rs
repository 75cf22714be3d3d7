//! Constant folding: values computed only from `Full`, `Constant` and `Arange` leaves
//! through pure ops are evaluated once, on the reference backend, into `Constant` leaves.
//! Only small values are folded (a folded constant is stored in the graph and hashed), and
//! never `Random` (it is pure, but a graph keeps its seed rather than its data) or anything
//! depending on an input or parameter.

use super::{PassStats, Rewriter};
use crate::{evaluate, Bindings, ConstData, Float, Graph, NodeId, Op, Result, Value};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// Largest value (in elements) that folding materializes.
pub const MAX_FOLD_ELEMENTS: usize = 4096;

/// Constant folding (see the module docs); `rewrites` counts the non-leaf nodes folded.
pub fn fold(graph: &Graph) -> Result<(Graph, PassStats)> {
    // Values of every foldable node, in node order.
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for id in graph.ids() {
        if let Some(t) = try_evaluate(graph, id, &values)? {
            values.insert(id, t);
        }
    }
    // Rebuild: folded nodes are skipped; a folded value is materialized (as its original
    // leaf, or as a `Constant`) only where an unfolded node or an output reads it.
    let mut rw = Rewriter::new(graph);
    let mut folded = 0;
    let mut materialized: HashMap<NodeId, Value> = HashMap::new();
    let mut materialize = |rw: &mut Rewriter, id: NodeId| -> Result<()> {
        if materialized.contains_key(&id) {
            return Ok(());
        }
        let node = graph.node(id);
        let new = if node.op.is_leaf() {
            rw.copy_node(id)?.into()
        } else {
            let v = rw
                .graph_mut()
                .add1(Op::Constant(const_data(&values[&id])), &[])?;
            rw.replace(id.into(), v);
            v
        };
        materialized.insert(id, new);
        Ok(())
    };
    for id in graph.ids() {
        let node = graph.node(id);
        if values.contains_key(&id) {
            if !node.op.is_leaf() {
                folded += 1;
            }
            continue;
        }
        for v in &node.inputs {
            if values.contains_key(&v.node) {
                materialize(&mut rw, v.node)?;
            }
        }
        rw.copy_node(id)?;
    }
    for v in graph.outputs() {
        if values.contains_key(&v.node) {
            materialize(&mut rw, v.node)?;
        }
    }
    let out = rw.finish()?;
    let stats = PassStats::new("fold", graph, &out, folded);
    Ok((out, stats))
}

/// The value of node `id` if it can be folded: a small constant leaf, or a small
/// single-output pure op over folded inputs.
fn try_evaluate(
    graph: &Graph,
    id: NodeId,
    values: &HashMap<NodeId, Tensor>,
) -> Result<Option<Tensor>> {
    let node = graph.node(id);
    let foldable_op = match &node.op {
        Op::Full { .. } | Op::Constant(_) | Op::Arange { .. } => true,
        Op::Input { .. } | Op::Parameter { .. } | Op::Random { .. } => false,
        // A rank cannot know its peers' values at compile time.
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. } => false,
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast(_)
        | Op::Reduce { .. }
        | Op::Argmax { .. }
        | Op::MatMul
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous
        | Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. }
        | Op::Softmax
        | Op::LogSoftmax
        | Op::CrossEntropy { .. }
        | Op::CrossEntropyBackward { .. }
        | Op::RmsNorm { .. }
        | Op::RmsNormBackward
        | Op::LayerNorm { .. }
        | Op::LayerNormBackward
        | Op::Rope { .. }
        | Op::Swiglu
        | Op::SwigluBackward
        | Op::Attention { .. }
        | Op::AttentionBackward { .. }
        | Op::Fused(_) => {
            node.outputs.len() == 1 && node.inputs.iter().all(|v| values.contains_key(&v.node))
        }
    };
    let Some(dims) = fixed_dims(&node.outputs[0].shape) else {
        return Ok(None);
    };
    if !foldable_op || dims.iter().product::<usize>() > MAX_FOLD_ELEMENTS {
        return Ok(None);
    }
    // A one-node graph over constants, run by the oracle.
    let mut g = Graph::new();
    let inputs = node
        .inputs
        .iter()
        .map(|v| g.add1(Op::Constant(const_data(&values[&v.node])), &[]))
        .collect::<Result<Vec<_>>>()?;
    let out = g.add1(node.op.clone(), &inputs)?;
    g.set_outputs(vec![out])?;
    let mut results = evaluate(&g, &Bindings::new(), &HashMap::new(), &ReferenceBackend)?;
    Ok(results.pop())
}

fn fixed_dims(shape: &[crate::Dim]) -> Option<Vec<usize>> {
    shape.iter().map(|d| d.as_fixed()).collect()
}

fn const_data(t: &Tensor) -> ConstData {
    ConstData {
        dims: t.dims().to_vec(),
        dtype: t.dtype(),
        values: t.to_f64_vec().into_iter().map(Float::new).collect(),
    }
}
