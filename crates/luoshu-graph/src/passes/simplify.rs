//! Algebraic simplification: identities (`x*1`, `1*x`, `x+0`, `0+x`, `x-0`, `x/1`,
//! `-(-x)`, a cast to the dtype a value already has), view chains (permute∘permute composes
//! into one permute and disappears when the result is the identity; reshape∘reshape becomes
//! one reshape, or nothing when it restores the shape), and broadcast-then-sum back to the
//! original elements, which is a scale by the number of copies.
//!
//! Rules look at the rewritten graph, so chains collapse in one sweep: the input of a rule
//! is already simplified.

use super::{PassStats, Rewriter};
use crate::{numel, Dim, Graph, Op, Result, Value};
use luoshu_backend::ops::{BinaryOp, ReduceOp, UnaryOp};

/// Algebraic simplification (see the module docs); `rewrites` counts the nodes replaced by
/// a simpler value.
pub fn simplify(graph: &Graph) -> Result<(Graph, PassStats)> {
    let mut rw = Rewriter::new(graph);
    let mut rewrites = 0;
    for id in graph.ids() {
        let node = graph.node(id);
        let inputs = node
            .inputs
            .iter()
            .map(|v| rw.map(*v))
            .collect::<Result<Vec<_>>>()?;
        match simplified(rw.graph_mut(), &node.op, &inputs)? {
            Some(v) => {
                rw.replace(id.into(), v);
                rewrites += 1;
            }
            None => {
                rw.copy_node(id)?;
            }
        }
    }
    let out = rw.finish()?;
    let stats = PassStats::new("simplify", graph, &out, rewrites);
    Ok((out, stats))
}

/// The simpler value `op(inputs)` equals, if a rule applies (adding nodes to `g` as needed).
fn simplified(g: &mut Graph, op: &Op, inputs: &[Value]) -> Result<Option<Value>> {
    Ok(match op {
        Op::Binary(b) => identity_operand(g, *b, inputs[0], inputs[1]),
        Op::Unary(UnaryOp::Neg) => match &g.node(inputs[0].node).op {
            Op::Unary(UnaryOp::Neg) => Some(g.node(inputs[0].node).inputs[0]),
            _ => None,
        },
        Op::Cast(d) => (g.dtype_of(inputs[0]) == *d).then_some(inputs[0]),
        Op::Permute { perm } => {
            let x = inputs[0];
            let (base, perm) = match &g.node(x.node).op {
                // permute(permute(y, p1), p2)[i] reads y's dim p1[p2[i]].
                Op::Permute { perm: inner } => {
                    let base = g.node(x.node).inputs[0];
                    (base, perm.iter().map(|&p| inner[p]).collect::<Vec<_>>())
                }
                _ => (x, perm.clone()),
            };
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                Some(base)
            } else if base != x {
                Some(g.add1(Op::Permute { perm }, &[base])?)
            } else {
                None
            }
        }
        Op::Reshape { shape } => {
            let x = inputs[0];
            let base = match &g.node(x.node).op {
                Op::Reshape { .. } => g.node(x.node).inputs[0],
                _ => x,
            };
            if g.shape_of(base) == *shape {
                Some(base)
            } else if base != x {
                Some(g.add1(
                    Op::Reshape {
                        shape: shape.clone(),
                    },
                    &[base],
                )?)
            } else {
                None
            }
        }
        Op::Reduce {
            op: ReduceOp::Sum,
            axes,
            keepdim,
        } => broadcast_sum(g, inputs[0], axes, *keepdim)?,
        _ => None,
    })
}

/// `a op b` when one side is the identity element and the other already has the result's
/// type (so dropping the op changes no shape).
fn identity_operand(g: &Graph, op: BinaryOp, a: Value, b: Value) -> Option<Value> {
    let keeps = |x: Value, other: Value| {
        let (tx, to) = (g.value_type(x), g.value_type(other));
        tx.dtype == to.dtype
            && crate::infer::infer(&Op::Binary(op), &[tx, to]).is_ok_and(|t| t[0] == *tx)
    };
    let right = |value: f64| constant_value(g, b) == Some(value) && keeps(a, b);
    let left = |value: f64| constant_value(g, a) == Some(value) && keeps(b, a);
    match op {
        BinaryOp::Mul if right(1.0) => Some(a),
        BinaryOp::Mul if left(1.0) => Some(b),
        BinaryOp::Add if right(0.0) => Some(a),
        BinaryOp::Add if left(0.0) => Some(b),
        BinaryOp::Sub if right(0.0) => Some(a),
        BinaryOp::Div if right(1.0) => Some(a),
        _ => None,
    }
}

/// The single value every element of `v` has, if `v` is a constant leaf.
pub(crate) fn constant_value(g: &Graph, v: Value) -> Option<f64> {
    match &g.node(v.node).op {
        Op::Full { value, .. } => Some(value.get()),
        Op::Constant(c) => {
            let first = c.values.first()?;
            c.values.iter().all(|x| x == first).then(|| first.get())
        }
        _ => None,
    }
}

/// `sum(broadcast(x))` over exactly the axes the broadcast stretched or added: every copy
/// of an element of `x` is summed, so the result is `x * copies`, reshaped.
fn broadcast_sum(g: &mut Graph, b: Value, axes: &[usize], keepdim: bool) -> Result<Option<Value>> {
    let Op::Broadcast { shape: target } = &g.node(b.node).op else {
        return Ok(None);
    };
    let target = target.clone();
    let x = g.node(b.node).inputs[0];
    let from = g.shape_of(x);
    let lead = target.len() - from.len();
    let stretched = |i: usize| i < lead || (from[i - lead].is_one() && !target[i].is_one());
    let exact = (0..target.len()).all(|i| axes.contains(&i) == stretched(i) || target[i].is_one());
    let copies = axes
        .iter()
        .map(|&i| target[i].clone())
        .fold(Dim::fixed(1), |a, d| a.mul(&d));
    let (Some(copies), true) = (copies.as_fixed(), exact) else {
        return Ok(None);
    };
    let out_shape: Vec<Dim> = target
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdim) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::fixed(1)),
            (true, false) => None,
        })
        .collect();
    if numel(&out_shape) != numel(&from) {
        return Ok(None);
    }
    let scaled = if copies == 1 {
        x
    } else {
        let c = g.scalar(copies as f64, g.dtype_of(x))?;
        g.mul(x, c)?
    };
    Ok(Some(g.reshape(scaled, &out_shape)?))
}
