use super::context::{not_in_family, Context};
use crate::{Error, Op, Result};
use luoshu_tensor::Tensor;

pub(super) fn run(ctx: &Context, op: &Op, x: &Tensor, out: &Tensor) -> Result<()> {
    let collectives = ctx.collectives.ok_or_else(|| Error::Invalid {
        detail: format!(
            "{} needs a communicator: compile the plan with CompileOptions::collectives",
            op.name()
        ),
    })?;
    match op {
        Op::AllReduce { group, op, .. } => collectives.all_reduce(group, *op, x, out),
        Op::AllGather { group, dim, .. } => collectives.all_gather(group, *dim, x, out),
        Op::ReduceScatter { group, dim, .. } => collectives.reduce_scatter(group, *dim, x, out),
        Op::RingShift { group, offset, .. } => collectives.ring_shift(group, *offset, x, out),
        other => Err(not_in_family(other, "collective")),
    }
}
