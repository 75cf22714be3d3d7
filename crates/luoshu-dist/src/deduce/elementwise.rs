//! Elementwise ops (and fused elementwise programs): the inputs agree on every device axis
//! after NumPy broadcasting, and partial inputs pass only through linear ops.

use super::rule::{aligned_dim, is_broadcast, per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_backend::ops::{BinaryOp, UnaryOp};
use luoshu_graph::{Op, TensorType};

/// On each device axis, either one output dim is split (every input splits the dim it
/// lines up with, or is duplicated when it broadcasts along it), or no input is split and
/// the output is partial when [`linear_in`] allows the partial inputs, else duplicated.
pub(super) fn deduce(
    op: &Op,
    inputs: &[(&TensorType, &DState)],
    output: &TensorType,
) -> RuleResult {
    let states: Vec<&DState> = inputs.iter().map(|&(_, s)| s).collect();
    per_axis(&states, 1, |_, roles| {
        let mut split = None;
        for (i, (&role, (t, _))) in roles.iter().zip(inputs).enumerate() {
            if let Axis::Split(d) = role {
                let out_dim = aligned_dim(d, t.rank(), output.rank());
                if is_broadcast(&t.shape, &output.shape, out_dim) {
                    return Err(format!(
                        "input {i} splits dim {d}, which broadcasts to {}",
                        output.shape[out_dim]
                    ));
                }
                match split {
                    Some(other) if other != out_dim => {
                        return Err(format!(
                            "inputs split different dims ({other} and {out_dim} of the output)"
                        ))
                    }
                    _ => split = Some(out_dim),
                }
            }
        }
        if let Some(out_dim) = split {
            let agrees = |(role, (t, _)): (&Axis, &(&TensorType, &DState))| match role {
                Axis::Split(_) => true,
                Axis::Duplicate => is_broadcast(&t.shape, &output.shape, out_dim),
                Axis::Partial => false,
            };
            if !roles.iter().zip(inputs).all(agrees) {
                return Err(format!(
                    "the output dim {out_dim} is split, so every input must split it or broadcast along it duplicated"
                ));
            }
            return Ok(vec![Axis::Split(out_dim)]);
        }
        let partial: Vec<bool> = roles.iter().map(|&r| r == Axis::Partial).collect();
        if !partial.contains(&true) {
            Ok(vec![Axis::Duplicate])
        } else if linear_in(op, &partial) {
            Ok(vec![Axis::Partial])
        } else {
            Err(format!(
                "{} is not linear in the partial inputs {partial:?}: a reduction (all-reduce) is needed first",
                op.name()
            ))
        }
    })
}

/// Whether the op's result is the sum of its results on the summands when exactly the
/// inputs marked in `partial` are partial sums and the others are the same on every
/// device.
fn linear_in(op: &Op, partial: &[bool]) -> bool {
    match op {
        Op::Unary(UnaryOp::Neg) => true,
        Op::Cast(dtype) => dtype.is_float(),
        Op::Binary(BinaryOp::Add | BinaryOp::Sub) => partial.iter().all(|&p| p),
        Op::Binary(BinaryOp::Mul) => partial.iter().filter(|&&p| p).count() == 1,
        Op::Binary(BinaryOp::Div) => partial == [true, false],
        // `cond ? a : b` is linear in `(a, b)` together.
        Op::Select => partial == [false, true, true],
        _ => false,
    }
}
