use crate::Result;
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Batched matmul; transposed operands arrive as strided views and need no copy.
pub(super) fn run(ops: &Ops, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    Ok(ops.matmul_into(a, b, out)?)
}
