//! The default decomposition of a fused elementwise program: one primitive op per
//! instruction, each materialized (what the fused kernel avoids).

use crate::ops::{ElementwiseProgram, FusedInstr};
use crate::{Backend, Error, Ops, Result};
use luoshu_tensor::Tensor;

/// The decomposition of [`Backend::fused_elementwise`]: one primitive op per instruction.
pub fn fused_elementwise(
    b: &dyn Backend,
    program: &ElementwiseProgram,
    inputs: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let missing = |what: &str, i: usize| {
        Error::invalid("fused_elementwise", format!("{what} {i} does not exist"))
    };
    let mut regs: Vec<Tensor> = Vec::with_capacity(program.instrs.len());
    for instr in &program.instrs {
        let r = |i: usize| regs.get(i).ok_or_else(|| missing("register", i));
        let value = match *instr {
            FusedInstr::Load(i) => (*inputs.get(i).ok_or_else(|| missing("input", i))?).clone(),
            FusedInstr::Constant { bits, dtype } => ops.full(f64::from_bits(bits), dtype, &[])?,
            FusedInstr::Unary(op, x) => ops.unary(op, r(x)?)?,
            FusedInstr::Binary(op, a, b) => ops.binary(op, r(a)?, r(b)?)?,
            FusedInstr::Compare(op, a, b) => ops.compare(op, r(a)?, r(b)?)?,
            FusedInstr::Select(c, a, b) => ops.select(r(c)?, r(a)?, r(b)?)?,
            FusedInstr::Cast(x, dtype) => ops.cast(r(x)?, dtype)?,
        };
        regs.push(value);
    }
    let result = regs
        .get(program.output)
        .ok_or_else(|| missing("register", program.output))?;
    ops.copy_into(&result.broadcast_to(out.dims().to_vec())?, out)
}
