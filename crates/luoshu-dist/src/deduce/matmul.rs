//! `[.., m, k] · [.., k, n]`: Megatron's column parallelism (split n), row parallelism
//! (split k on both: partial sums), data parallelism (split m or batch dims).

use super::rule::{aligned_dim, is_broadcast, per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_graph::TensorType;

/// What a split of an operand's dim means for the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A batch dim, as the output dim it lines up with.
    Batch(usize),
    Rows,
    Contracted,
    Columns,
    Partial,
    Duplicate,
}

pub(super) fn deduce(
    (lhs, lhs_state): (&TensorType, &DState),
    (rhs, rhs_state): (&TensorType, &DState),
    output: &TensorType,
) -> RuleResult {
    let rank = output.rank();
    let role = |t: &TensorType, axis: Axis, last: Role, second_last: Role| match axis {
        Axis::Split(d) if d + 1 == t.rank() => last,
        Axis::Split(d) if d + 2 == t.rank() => second_last,
        Axis::Split(d) => Role::Batch(aligned_dim(d, t.rank(), rank)),
        Axis::Partial => Role::Partial,
        Axis::Duplicate => Role::Duplicate,
    };
    per_axis(&[lhs_state, rhs_state], 1, |_, roles| {
        let l = role(lhs, roles[0], Role::Contracted, Role::Rows);
        let r = role(rhs, roles[1], Role::Columns, Role::Contracted);
        for (t, side) in [(lhs, l), (rhs, r)] {
            if let Role::Batch(b) = side {
                if is_broadcast(&t.shape, &output.shape, b) {
                    return Err(format!(
                        "an operand splits batch dim {b}, which it broadcasts"
                    ));
                }
            }
        }
        let out = match (l, r) {
            (Role::Rows, Role::Duplicate) => Axis::Split(rank - 2),
            (Role::Duplicate, Role::Columns) => Axis::Split(rank - 1),
            (Role::Contracted, Role::Contracted) => Axis::Partial,
            (Role::Batch(a), Role::Batch(b)) if a == b => Axis::Split(a),
            (Role::Batch(b), Role::Duplicate) if is_broadcast(&rhs.shape, &output.shape, b) => {
                Axis::Split(b)
            }
            (Role::Duplicate, Role::Batch(b)) if is_broadcast(&lhs.shape, &output.shape, b) => {
                Axis::Split(b)
            }
            (Role::Partial, Role::Duplicate) | (Role::Duplicate, Role::Partial) => Axis::Partial,
            (Role::Duplicate, Role::Duplicate) => Axis::Duplicate,
            (l, r) => {
                return Err(format!(
                    "no matmul rule for a {l:?} left operand with a {r:?} right operand"
                ))
            }
        };
        Ok(vec![out])
    })
}
