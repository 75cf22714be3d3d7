//! Gradients of reductions: the output gradient is broadcast back over the reduced axes.

use super::step::{Grads, Step};
use crate::{numel, Dim, Graph, Op, Result, Value};
use luoshu_backend::ops::{CompareOp, ReduceOp};
use luoshu_tensor::DType;

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    let (op, axes) = match &s.node.op {
        Op::Reduce { op, axes, .. } => (op, axes),
        // An integer output has no gradient.
        Op::Argmax { .. } => return Ok(vec![None; s.node.inputs.len()]),
        _ => return Err(s.not_in_family("reduction")),
    };
    s.each(g, |g, _, dy| {
        let x = s.x(0);
        let shape = g.shape_of(x);
        let kept: Vec<Dim> = shape
            .iter()
            .enumerate()
            .map(|(i, d)| match axes.contains(&i) {
                true => Dim::fixed(1),
                false => d.clone(),
            })
            .collect();
        let dy = g.reshape(dy, &kept)?;
        let d = match op {
            ReduceOp::Sum => g.broadcast_to(dy, &shape)?,
            ReduceOp::Mean => {
                let reduced: Vec<Dim> = axes.iter().map(|&a| shape[a].clone()).collect();
                let count = count(g, &reduced, g.dtype_of(x))?;
                let share = g.div(dy, count)?;
                g.broadcast_to(share, &shape)?
            }
            // Ties share the gradient equally.
            ReduceOp::Max | ReduceOp::Min => {
                let y = g.reshape(s.y(0), &kept)?;
                let hit = g.compare(CompareOp::Eq, x, y)?;
                let hit = g.cast(hit, g.dtype_of(x))?;
                let ties = g.sum(hit, axes, true)?;
                let share = g.div(dy, ties)?;
                g.mul(hit, share)?
            }
        };
        Ok(Some(d))
    })
}

/// The number of elements of `dims` as a rank-0 value; a sum of ones when it is symbolic,
/// which constant folding resolves once the symbols are bound.
fn count(g: &mut Graph, dims: &[Dim], dtype: DType) -> Result<Value> {
    let n = numel(dims);
    match n.as_fixed() {
        Some(n) => g.scalar(n as f64, dtype),
        None => {
            let ones = g.full(1.0, dims, dtype)?;
            g.sum_all(ones)
        }
    }
}
