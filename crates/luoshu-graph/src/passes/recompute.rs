//! Activation recomputation ("recompute cheap ops"): a forward elementwise value that the
//! backward pass reads is computed a second time for its backward readers, so its forward
//! buffer dies at its last forward use. Only values whose inputs the backward keeps alive
//! anyway (or that live outside the arena) are recomputed, so no other lifetime grows.
//!
//! Hash-consing would merge the copy with the original (same op, same inputs), so the copy
//! is a one-instruction `Op::Fused` program: a different op computing the same values, run
//! in one kernel. Run this after simplification and fusion passes that could merge the two.

use super::fuse_elementwise::elementwise_instr;
use super::{PassStats, Rewriter};
use crate::{Graph, NodeId, Op, Result, Value};
use luoshu_backend::ops::{ElementwiseProgram, FusedInstr};
use std::collections::HashMap;

/// Which nodes are backward nodes: autodiff appends the backward after the forward, so it
/// is every node from `backward_from` on (the first node `grad` added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecomputePolicy {
    /// The first backward node.
    pub backward_from: NodeId,
}

/// Activation recomputation (see the module docs); `rewrites` counts the forward values
/// recomputed for the backward.
pub fn recompute(graph: &Graph, policy: RecomputePolicy) -> Result<(Graph, PassStats)> {
    let is_backward = |id: NodeId| id >= policy.backward_from;
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); graph.len()];
    for id in graph.ids() {
        for v in &graph.node(id).inputs {
            consumers[v.node.index()].push(id);
        }
    }
    let read_by_backward = |id: NodeId| consumers[id.index()].iter().any(|&c| is_backward(c));
    let recomputable = |id: NodeId| {
        let node = graph.node(id);
        !is_backward(id)
            && node.op.is_elementwise()
            && read_by_backward(id)
            && consumers[id.index()].iter().any(|&c| !is_backward(c))
            && node.inputs.iter().all(|v| {
                crate::memory::lives_outside_arena(&graph.node(v.node).op)
                    || read_by_backward(v.node)
            })
    };
    let mut rw = Rewriter::new(graph);
    let mut copies: HashMap<NodeId, Value> = HashMap::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if !is_backward(id) {
            rw.copy_node(id)?;
            continue;
        }
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for v in &node.inputs {
            inputs.push(match copies.get(&v.node) {
                Some(&c) => c,
                None if recomputable(v.node) => {
                    let src = graph.node(v.node);
                    let c =
                        rw.add_mapped(Op::Fused(single_op_program(graph, v.node)?), &src.inputs)?;
                    copies.insert(v.node, c.into());
                    c.into()
                }
                None => rw.map(*v)?,
            });
        }
        let new = rw.graph_mut().add(node.op.clone(), &inputs)?;
        for k in 0..node.outputs.len() as u32 {
            rw.replace(Value::new(id, k), Value::new(new, k));
        }
    }
    let out = rw.finish()?;
    let stats = PassStats::new("recompute", graph, &out, copies.len());
    Ok((out, stats))
}

/// The elementwise node `id` as a program loading each of its inputs once.
fn single_op_program(graph: &Graph, id: NodeId) -> Result<ElementwiseProgram> {
    let node = graph.node(id);
    let n = node.inputs.len();
    let mut instrs: Vec<FusedInstr> = (0..n).map(FusedInstr::Load).collect();
    let loads: Vec<usize> = (0..n).collect();
    instrs.push(elementwise_instr(&node.op, &loads)?);
    Ok(ElementwiseProgram {
        inputs: node
            .inputs
            .iter()
            .map(|v| graph.value_type(*v).dtype)
            .collect(),
        instrs,
        output: n,
    })
}
