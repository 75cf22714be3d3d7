//! Pattern fusion: subgraphs of primitives that compute a known composite are replaced by
//! the composite op, where the model builder did not use it. Matched shapes are exactly what
//! the `Graph` builder methods produce when the composite is written from primitives:
//!
//! * softmax: `e = exp(x - max(x, last, keepdim)); e / sum(e, last, keepdim)`
//! * log-softmax: `s = x - max(x, ..); s - log(sum(exp(s), ..))`
//! * RMSNorm: `x * rsqrt(mean(x * x, last, keepdim) + eps) * w`
//! * cross-entropy: `-reshape(gather(log_softmax(x), 1, reshape(t, [n, 1])), [n])`
//! * attention: `softmax(q · kᵀ * scale [+ causal mask]) · v` with `kᵀ` a transpose of the
//!   last two dims and the mask `where(rows >= cols, 0, -inf)` built from `arange`.
//!
//! A match is used only if no node inside it is read from outside it (or is an output), so
//! fusing never computes anything twice. Patterns are matched from the last node backwards,
//! so an enclosing pattern (attention) claims an inner one (softmax) first.

use super::{dce, PassStats, Rewriter};
use crate::{Graph, Node, NodeId, Op, Result, Value};
use luoshu_backend::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use std::collections::{HashMap, HashSet};

/// `ignore_index` of cross-entropy from a gather: gather rejects negative targets anyway,
/// so any negative value gives the same results on valid inputs.
const IGNORE_INDEX: i64 = -100;

/// Pattern fusion (see the module docs); `rewrites` counts the composites substituted.
pub fn fuse_patterns(graph: &Graph) -> Result<(Graph, PassStats)> {
    let m = Matcher::new(graph);
    let mut claimed: HashSet<NodeId> = HashSet::new();
    let mut replacements: HashMap<NodeId, (Op, Vec<Value>)> = HashMap::new();
    for id in graph.ids().collect::<Vec<_>>().into_iter().rev() {
        if claimed.contains(&id) {
            continue;
        }
        if let Some(found) = m.any(id) {
            claimed.extend(found.interior.iter().copied());
            replacements.insert(id, (found.op, found.inputs));
        }
    }
    let mut rw = Rewriter::new(graph);
    for id in graph.ids() {
        if claimed.contains(&id) {
            continue;
        }
        match replacements.get(&id) {
            Some((op, inputs)) => {
                let new = rw.add_mapped(op.clone(), inputs)?;
                rw.replace(id.into(), Value::new(new, 0));
            }
            None => {
                rw.copy_node(id)?;
            }
        }
    }
    // Views and leaves only the fused nodes read (a transposed k, the mask) are dead now.
    let (out, _) = dce(&rw.finish()?)?;
    let stats = PassStats::new("fuse_patterns", graph, &out, replacements.len());
    Ok((out, stats))
}

/// A matched pattern: the composite (its output 0 replaces the root), its inputs, and the
/// nodes it absorbs besides the root.
struct Found {
    op: Op,
    inputs: Vec<Value>,
    interior: Vec<NodeId>,
}

struct Matcher<'a> {
    g: &'a Graph,
    consumers: Vec<Vec<NodeId>>,
    is_output: Vec<bool>,
}

impl<'a> Matcher<'a> {
    fn new(g: &'a Graph) -> Self {
        let mut consumers = vec![Vec::new(); g.len()];
        for id in g.ids() {
            for v in &g.node(id).inputs {
                consumers[v.node.index()].push(id);
            }
        }
        let mut is_output = vec![false; g.len()];
        for v in g.outputs() {
            is_output[v.node.index()] = true;
        }
        Matcher {
            g,
            consumers,
            is_output,
        }
    }

    /// The first pattern rooted at `id` whose replacement is valid and self-contained.
    fn any(&self, id: NodeId) -> Option<Found> {
        let v = Value::from(id);
        let found = self
            .attention(v)
            .or_else(|| self.cross_entropy(v))
            .or_else(|| self.rms_norm(v))
            .or_else(|| {
                self.softmax_primitive(v).map(|(x, interior)| Found {
                    op: Op::Softmax,
                    inputs: vec![x],
                    interior,
                })
            })
            .or_else(|| {
                self.log_softmax_primitive(v).map(|(x, interior)| Found {
                    op: Op::LogSoftmax,
                    inputs: vec![x],
                    interior,
                })
            })?;
        (self.self_contained(id, &found.interior) && self.same_type(id, &found)).then_some(found)
    }

    fn self_contained(&self, root: NodeId, interior: &[NodeId]) -> bool {
        let inside: HashSet<NodeId> = interior.iter().copied().chain([root]).collect();
        interior.iter().all(|n| {
            !self.is_output[n.index()]
                && self.consumers[n.index()].iter().all(|c| inside.contains(c))
        })
    }

    fn same_type(&self, root: NodeId, found: &Found) -> bool {
        let types: Vec<_> = found.inputs.iter().map(|v| self.g.value_type(*v)).collect();
        crate::infer::infer(&found.op, &types).is_ok_and(|t| t[0] == self.g.node(root).outputs[0])
    }

    /// The node of single-output value `v` if its op satisfies `pred`.
    fn node(&self, v: Value, pred: impl Fn(&Op) -> bool) -> Option<&'a Node> {
        let n = self.g.node(v.node);
        (v.output == 0 && n.outputs.len() == 1 && pred(&n.op)).then_some(n)
    }

    fn last_axis(&self, v: Value) -> usize {
        self.g.value_type(v).rank().saturating_sub(1)
    }

    /// `op(x, last axis, keepdim)` → `x`.
    fn row_reduce(&self, v: Value, op: ReduceOp) -> Option<Value> {
        let n = self.node(
            v,
            |o| matches!(o, Op::Reduce { op: r, keepdim: true, .. } if *r == op),
        )?;
        let Op::Reduce { axes, .. } = &n.op else {
            return None;
        };
        (*axes == [self.last_axis(n.inputs[0])]).then_some(n.inputs[0])
    }

    fn binary(&self, v: Value, op: BinaryOp) -> Option<(Value, Value)> {
        let n = self.node(v, |o| *o == Op::Binary(op))?;
        Some((n.inputs[0], n.inputs[1]))
    }

    fn unary(&self, v: Value, op: UnaryOp) -> Option<Value> {
        Some(self.node(v, |o| *o == Op::Unary(op))?.inputs[0])
    }

    /// A rank-0 `Full` constant's value.
    fn scalar(&self, v: Value) -> Option<f64> {
        match &self.node(v, |_| true)?.op {
            Op::Full { value, shape, .. } if shape.is_empty() => Some(value.get()),
            _ => None,
        }
    }

    /// `s = x - max(x)` → `x`.
    fn shifted(&self, s: Value) -> Option<Value> {
        let (x, m) = self.binary(s, BinaryOp::Sub)?;
        (self.row_reduce(m, ReduceOp::Max)? == x).then_some(x)
    }

    fn softmax_primitive(&self, y: Value) -> Option<(Value, Vec<NodeId>)> {
        let (e, z) = self.binary(y, BinaryOp::Div)?;
        if self.row_reduce(z, ReduceOp::Sum)? != e {
            return None;
        }
        let s = self.unary(e, UnaryOp::Exp)?;
        let x = self.shifted(s)?;
        let m = self.g.node(s.node).inputs[1];
        Some((x, vec![z.node, e.node, s.node, m.node]))
    }

    fn log_softmax_primitive(&self, y: Value) -> Option<(Value, Vec<NodeId>)> {
        let (s, l) = self.binary(y, BinaryOp::Sub)?;
        let z = self.unary(l, UnaryOp::Log)?;
        let e = self.row_reduce(z, ReduceOp::Sum)?;
        if self.unary(e, UnaryOp::Exp)? != s {
            return None;
        }
        let x = self.shifted(s)?;
        let m = self.g.node(s.node).inputs[1];
        Some((x, vec![l.node, z.node, e.node, s.node, m.node]))
    }

    /// Softmax written either way: `x` and the absorbed nodes (including `y`).
    fn softmax_any(&self, y: Value) -> Option<(Value, Vec<NodeId>)> {
        if let Some(n) = self.node(y, |o| *o == Op::Softmax) {
            return Some((n.inputs[0], vec![y.node]));
        }
        let (x, mut interior) = self.softmax_primitive(y)?;
        interior.push(y.node);
        Some((x, interior))
    }

    fn log_softmax_any(&self, y: Value) -> Option<(Value, Vec<NodeId>)> {
        if let Some(n) = self.node(y, |o| *o == Op::LogSoftmax) {
            return Some((n.inputs[0], vec![y.node]));
        }
        let (x, mut interior) = self.log_softmax_primitive(y)?;
        interior.push(y.node);
        Some((x, interior))
    }

    fn rms_norm(&self, y: Value) -> Option<Found> {
        let (n, w) = self.binary(y, BinaryOp::Mul)?;
        let (x, r) = self.binary(n, BinaryOp::Mul)?;
        let a = self.unary(r, UnaryOp::Rsqrt)?;
        let (ms, eps) = self.binary(a, BinaryOp::Add)?;
        let eps = self.scalar(eps)?;
        let sq = self.row_reduce(ms, ReduceOp::Mean)?;
        if self.binary(sq, BinaryOp::Mul)? != (x, x) {
            return None;
        }
        Some(Found {
            op: Op::RmsNorm {
                eps: crate::Float::new(eps),
            },
            inputs: vec![x, w],
            interior: vec![n.node, r.node, a.node, ms.node, sq.node],
        })
    }

    fn cross_entropy(&self, y: Value) -> Option<Found> {
        let r = self.unary(y, UnaryOp::Neg)?;
        let gathered = self.node(r, |o| matches!(o, Op::Reshape { .. }))?.inputs[0];
        let gn = self.node(gathered, |o| *o == Op::Gather { dim: 1 })?;
        let (ls, t2) = (gn.inputs[0], gn.inputs[1]);
        let targets = self.node(t2, |o| matches!(o, Op::Reshape { .. }))?.inputs[0];
        let (logits, mut interior) = self.log_softmax_any(ls)?;
        interior.extend([r.node, gathered.node]);
        Some(Found {
            op: Op::CrossEntropy {
                ignore_index: IGNORE_INDEX,
            },
            inputs: vec![logits, targets],
            interior,
        })
    }

    fn attention(&self, o: Value) -> Option<Found> {
        let mm = self.node(o, |op| *op == Op::MatMul)?;
        let (p, v) = (mm.inputs[0], mm.inputs[1]);
        let (scores, mut interior) = self.softmax_any(p)?;
        let (scaled, causal) = match self.binary(scores, BinaryOp::Add) {
            Some((s, mask)) if self.is_causal_mask(mask) => {
                interior.push(scores.node);
                (s, true)
            }
            _ => (scores, false),
        };
        let (s, c) = self.binary(scaled, BinaryOp::Mul)?;
        let scale = self.scalar(c)?;
        let qk = self.node(s, |op| *op == Op::MatMul)?;
        let kt = self.node(qk.inputs[1], |op| {
            *op == Op::Permute {
                perm: vec![0, 1, 3, 2],
            }
        })?;
        interior.extend([scaled.node, s.node]);
        Some(Found {
            op: Op::Attention {
                scale: crate::Float::new(scale),
                causal,
                segmented: false,
            },
            inputs: vec![qk.inputs[0], kt.inputs[0], v],
            interior,
        })
    }

    /// `where(rows >= cols, 0, -inf)` with `rows = reshape(arange(n), [n, 1])` and
    /// `cols = arange(n)` (queries and keys aligned, as `Attention { causal }` assumes when
    /// `seq_q == seq_k`, which `same_type` checks through the shapes).
    fn is_causal_mask(&self, mask: Value) -> bool {
        let Some(sel) = self.node(mask, |o| *o == Op::Select) else {
            return false;
        };
        let (cond, zero, ninf) = (sel.inputs[0], sel.inputs[1], sel.inputs[2]);
        if self.scalar(zero) != Some(0.0) || self.scalar(ninf) != Some(f64::NEG_INFINITY) {
            return false;
        }
        let Some(cmp) = self.node(cond, |o| *o == Op::Compare(CompareOp::Ge)) else {
            return false;
        };
        let (rows, cols) = (cmp.inputs[0], cmp.inputs[1]);
        let n = self
            .g
            .value_type(cols)
            .shape
            .first()
            .and_then(|d| d.as_fixed());
        self.is_index_range(cols)
            && match self.node(rows, |_| true).map(|node| &node.op) {
                Some(Op::Reshape { .. }) => self.g.node(rows.node).inputs[0] == cols,
                // Constant folding turns the reshaped arange into a literal column.
                Some(Op::Constant(c)) => {
                    c.dims.len() == 2
                        && Some(c.dims[0]) == n
                        && c.dims[1] == 1
                        && c.values
                            .iter()
                            .enumerate()
                            .all(|(i, v)| v.get() == i as f64)
                }
                _ => false,
            }
    }

    /// `arange(0, 1, n)`.
    fn is_index_range(&self, v: Value) -> bool {
        self.node(v, |o| {
            matches!(o, Op::Arange { start, step, .. } if start.get() == 0.0 && step.get() == 1.0)
        })
        .is_some()
    }
}
