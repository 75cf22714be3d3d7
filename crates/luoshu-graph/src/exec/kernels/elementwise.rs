use crate::{Op, Result};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Elementwise ops; broadcasting between inputs is done by `Ops` with zero-stride views.
pub(super) fn run(ops: &Ops, op: &Op, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    match op {
        Op::Unary(u) => ops.unary_into(*u, inputs[0], out)?,
        Op::Binary(b) => ops.binary_into(*b, inputs[0], inputs[1], out)?,
        Op::Compare(c) => ops.compare_into(*c, inputs[0], inputs[1], out)?,
        Op::Select => ops.select_into(inputs[0], inputs[1], inputs[2], out)?,
        Op::Cast(_) => ops.cast_into(inputs[0], out)?,
        other => return Err(super::context::not_in_family(other, "elementwise")),
    }
    Ok(())
}
