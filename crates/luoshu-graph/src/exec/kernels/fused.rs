use crate::Result;
use luoshu_backend::ops::ElementwiseProgram;
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// A fused elementwise node: one backend call over all its inputs.
pub(super) fn run(
    ops: &Ops,
    program: &ElementwiseProgram,
    inputs: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    Ok(ops.fused_elementwise_into(program, inputs, out)?)
}
