//! Reductions: a sum over a split dim leaves partial sums; other reductions over a split
//! dim, and nonlinear reductions of partial inputs, need a redistribution first.

use super::rule::{per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_backend::ops::ReduceOp;
use luoshu_graph::Op;

pub(super) fn deduce(op: &Op, state: &DState) -> RuleResult {
    match op {
        Op::Reduce {
            op: reduce,
            axes,
            keepdim,
        } => per_axis(&[state], 1, |_, roles| {
            match (roles[0], reduce) {
            (Axis::Split(d), ReduceOp::Sum) if axes.contains(&d) => Ok(vec![Axis::Partial]),
            (Axis::Split(d), ReduceOp::Mean) if axes.contains(&d) => Err(format!(
                "a mean over the split dim {d} is not a sum of the pieces' means: sum, then scale"
            )),
            (Axis::Split(d), _) if axes.contains(&d) => Err(format!(
                "a {} over the split dim {d} leaves per-piece results, which no state models: all-gather dim {d} first",
                reduce.name()
            )),
            (Axis::Split(d), _) => Ok(vec![Axis::Split(remaining_dim(d, axes, *keepdim))]),
            (Axis::Partial, ReduceOp::Sum | ReduceOp::Mean) => Ok(vec![Axis::Partial]),
            (Axis::Partial, ReduceOp::Max | ReduceOp::Min) => Err(format!(
                "a {} of partial sums is not the {0} of their sum: all-reduce first",
                reduce.name()
            )),
            (Axis::Duplicate, _) => Ok(vec![Axis::Duplicate]),
        }
        }),
        Op::Argmax { axis, keepdim } => per_axis(&[state], 1, |_, roles| match roles[0] {
            Axis::Split(d) if d == *axis => Err(format!(
                "argmax over the split dim {d} needs the whole dim: all-gather it first"
            )),
            Axis::Split(d) => Ok(vec![Axis::Split(remaining_dim(d, &[*axis], *keepdim))]),
            Axis::Partial => Err("argmax of partial sums: all-reduce first".into()),
            Axis::Duplicate => Ok(vec![Axis::Duplicate]),
        }),
        other => Err(format!("{} is not a reduction", other.name())),
    }
}

/// The output dim of kept input dim `d` once `axes` are reduced.
fn remaining_dim(d: usize, axes: &[usize], keepdim: bool) -> usize {
    if keepdim {
        d
    } else {
        d - axes.iter().filter(|&&a| a < d).count()
    }
}
