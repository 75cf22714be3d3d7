use crate::{Op, Result};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Indexing ops. The IR's `IndexAdd`/`ScatterAdd` are functional: `out` starts as a copy of
/// `dst` and the backend's in-place accumulation runs on it.
pub(super) fn run(ops: &Ops, op: &Op, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    match op {
        Op::IndexSelect { dim } => ops.index_select_into(inputs[0], *dim, inputs[1], out)?,
        Op::IndexAdd { dim } => {
            ops.copy_into(inputs[0], out)?;
            ops.index_add(out, *dim, inputs[1], inputs[2])?;
        }
        Op::Gather { dim } => ops.gather_into(inputs[0], *dim, inputs[1], out)?,
        Op::ScatterAdd { dim } => {
            ops.copy_into(inputs[0], out)?;
            ops.scatter_add(out, *dim, inputs[1], inputs[2])?;
        }
        Op::Concat { dim } => ops.concat_into(inputs, *dim, out)?,
        other => return Err(super::context::not_in_family(other, "indexing")),
    }
    Ok(())
}
