//! Indexing: splits along dims the op does not index pass through; a table split along
//! the indexed dim with duplicated indices gives partial sums (Megatron's
//! vocabulary-parallel embedding, whose builder masks out-of-piece indices).

use super::rule::{per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_graph::{Op, TensorType};

pub(super) fn deduce(op: &Op, inputs: &[(&TensorType, &DState)]) -> RuleResult {
    let states: Vec<&DState> = inputs.iter().map(|&(_, s)| s).collect();
    let same_size = |a: usize, b: usize, d: usize| inputs[a].0.shape[d] == inputs[b].0.shape[d];
    match op {
        Op::IndexSelect { dim } => per_axis(&states, 1, |_, roles| {
            let out = match (roles[0], roles[1]) {
                // Each device looks up the rows of its piece of the table; the others are
                // zero, so the pieces' results sum to the lookup.
                (Axis::Split(d), Axis::Duplicate) if d == *dim => Axis::Partial,
                (Axis::Split(d), Axis::Duplicate) => Axis::Split(d),
                (Axis::Duplicate, Axis::Split(_)) => Axis::Split(*dim),
                (Axis::Partial, Axis::Duplicate) => Axis::Partial,
                (Axis::Duplicate, Axis::Duplicate) => Axis::Duplicate,
                (table, indices) => {
                    return Err(format!(
                        "no index_select rule for a {table:?} table with {indices:?} indices"
                    ))
                }
            };
            Ok(vec![out])
        }),
        // The backward of index_select: adding duplicated gradient rows into a table split
        // along the indexed dim keeps the split (the builder masks foreign indices).
        Op::IndexAdd { dim } => per_axis(&states, 1, |_, roles| {
            let out = match (roles[0], roles[1], roles[2]) {
                (Axis::Split(d), Axis::Duplicate, Axis::Duplicate) if d == *dim => Axis::Split(d),
                (Axis::Split(d), Axis::Duplicate, Axis::Split(e)) if d == e && d != *dim => {
                    Axis::Split(d)
                }
                (Axis::Partial, Axis::Duplicate, Axis::Partial) => Axis::Partial,
                (Axis::Duplicate, Axis::Duplicate, Axis::Duplicate) => Axis::Duplicate,
                (dst, indices, src) => {
                    return Err(format!(
                        "no index_add rule for a {dst:?} destination, {indices:?} indices and {src:?} source"
                    ))
                }
            };
            Ok(vec![out])
        }),
        Op::Gather { dim } => per_axis(&states, 1, |_, roles| {
            let out = match (roles[0], roles[1]) {
                (Axis::Split(d), Axis::Split(e)) if d == e && d != *dim && same_size(0, 1, d) => {
                    Axis::Split(d)
                }
                (Axis::Partial, Axis::Duplicate) => Axis::Partial,
                (Axis::Duplicate, Axis::Duplicate) => Axis::Duplicate,
                (x, index) => {
                    return Err(format!(
                        "no gather rule along dim {dim} for a {x:?} input with a {index:?} index"
                    ))
                }
            };
            Ok(vec![out])
        }),
        Op::ScatterAdd { dim } => per_axis(&states, 1, |_, roles| {
            let out = match (roles[0], roles[1], roles[2]) {
                (Axis::Split(d), Axis::Split(e), Axis::Split(f))
                    if d == e && e == f && d != *dim && same_size(0, 1, d) =>
                {
                    Axis::Split(d)
                }
                (Axis::Partial, Axis::Duplicate, Axis::Partial) => Axis::Partial,
                (Axis::Duplicate, Axis::Duplicate, Axis::Duplicate) => Axis::Duplicate,
                (dst, index, src) => {
                    return Err(format!(
                        "no scatter_add rule along dim {dim} for a {dst:?} destination, {index:?} index and {src:?} source"
                    ))
                }
            };
            Ok(vec![out])
        }),
        Op::Concat { dim } => per_axis(&states, 1, |_, roles| {
            let first = roles[0];
            if roles.iter().any(|&r| r != first) {
                return Err("the concatenated inputs differ".into());
            }
            if first == Axis::Split(*dim) {
                return Err(format!("concatenating along the split dim {dim}"));
            }
            Ok(vec![first])
        }),
        other => Err(format!("{} is not an indexing op", other.name())),
    }
}
