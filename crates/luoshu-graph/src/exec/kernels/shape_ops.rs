use crate::{Error, Op, Result};
use luoshu_backend::Ops;
use luoshu_tensor::{Layout, Tensor};

/// The layout a view op gives its input's layout. `out_dims` is the node's output shape
/// under the bindings. Fails with `Error::Tensor(ReshapeNeedsCopy)` exactly when strides
/// cannot express a reshape (see [`needs_copy`]).
pub(crate) fn view_layout(op: &Op, input: &Layout, out_dims: &[usize]) -> Result<Layout> {
    Ok(match op {
        Op::Reshape { .. } => input.reshape(out_dims)?,
        Op::Permute { perm } => input.permute(perm)?,
        Op::Slice {
            dim,
            start,
            end,
            step,
        } => input.slice(*dim, *start, *end, *step)?,
        Op::Broadcast { .. } => input.broadcast_to(out_dims)?,
        other => {
            return Err(Error::Invalid {
                detail: format!("{} is not a view op", other.name()),
            })
        }
    })
}

/// True for the error [`view_layout`] returns when a view must become a copy.
pub(crate) fn needs_copy(err: &Error) -> bool {
    matches!(
        err,
        Error::Tensor(luoshu_tensor::Error::ReshapeNeedsCopy { .. })
    )
}

/// Materialize a view op (or `Contiguous`) into the contiguous `out`. A reshape whose
/// strides cannot express the view copies the input in its own shape into `out`'s bytes.
pub(super) fn run(ops: &Ops, op: &Op, x: &Tensor, out: &Tensor) -> Result<()> {
    if matches!(op, Op::Contiguous) {
        return Ok(ops.copy_into(x, out)?);
    }
    match view_layout(op, x.layout(), out.dims()) {
        Ok(layout) => ops.copy_into(&x.with_layout(layout)?, out)?,
        Err(e) if needs_copy(&e) => ops.copy_into(x, &out.reshape(x.dims())?)?,
        Err(e) => return Err(e),
    }
    Ok(())
}
