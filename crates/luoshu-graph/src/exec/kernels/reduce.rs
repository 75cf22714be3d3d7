use crate::{Op, Result};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Reductions. Kernels write the keepdim shape; without keepdim the output buffer is simply
/// viewed with the reduced axes as size 1 (same contiguous bytes).
pub(super) fn run(ops: &Ops, op: &Op, x: &Tensor, out: &Tensor) -> Result<()> {
    match op {
        Op::Reduce { op: r, axes, .. } => {
            let out = out.reshape(keepdim_dims(x, axes))?;
            ops.reduce_into(*r, x, axes, &out)?;
        }
        Op::Argmax { axis, .. } => {
            let out = out.reshape(keepdim_dims(x, &[*axis]))?;
            ops.argmax_into(x, *axis, &out)?;
        }
        other => return Err(super::context::not_in_family(other, "reduction")),
    }
    Ok(())
}

fn keepdim_dims(x: &Tensor, axes: &[usize]) -> Vec<usize> {
    let mut dims = x.dims().to_vec();
    for &a in axes {
        if let Some(d) = dims.get_mut(a) {
            *d = 1;
        }
    }
    dims
}
