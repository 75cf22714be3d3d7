//! Validation of fused elementwise programs and their `Ops` entry points.

use super::{check_dtype, check_no_partial_overlap, check_out, Ops};
use crate::ops::{ElementwiseProgram, FusedInstr};
use crate::{Error, Result};
use luoshu_tensor::{broadcast_shapes, DType, Tensor};

const OP: &str = "fused_elementwise";

fn bad(detail: String) -> Error {
    Error::invalid(OP, detail)
}

impl ElementwiseProgram {
    /// The dtype of every register, checking that each operand names an earlier register,
    /// each load an existing input, and each op gets dtypes it supports.
    pub fn register_dtypes(&self) -> Result<Vec<DType>> {
        let mut dtypes: Vec<DType> = Vec::with_capacity(self.instrs.len());
        for (i, instr) in self.instrs.iter().enumerate() {
            let reg = |r: usize| {
                dtypes.get(r).copied().ok_or_else(|| {
                    bad(format!(
                        "instruction {i} reads register {r}, which is not defined yet"
                    ))
                })
            };
            let same = |a: usize, b: usize| -> Result<DType> {
                let (da, db) = (reg(a)?, reg(b)?);
                if da != db {
                    return Err(bad(format!("instruction {i} mixes {da} and {db}")));
                }
                Ok(da)
            };
            let unsupported =
                |name: &str, d: DType| bad(format!("instruction {i}: {name} does not support {d}"));
            let dtype = match *instr {
                FusedInstr::Load(k) => *self.inputs.get(k).ok_or_else(|| {
                    bad(format!(
                        "instruction {i} loads input {k} of {}",
                        self.inputs.len()
                    ))
                })?,
                FusedInstr::Constant { dtype, .. } => dtype,
                FusedInstr::Unary(op, x) => {
                    let d = reg(x)?;
                    if !(d.is_float()
                        || op.allows_integers() && matches!(d, DType::I64 | DType::I32))
                    {
                        return Err(unsupported(op.name(), d));
                    }
                    d
                }
                FusedInstr::Binary(op, a, b) => {
                    let d = same(a, b)?;
                    if !(d.is_float()
                        || op.allows_integers() && matches!(d, DType::I64 | DType::I32 | DType::U8))
                    {
                        return Err(unsupported(op.name(), d));
                    }
                    d
                }
                FusedInstr::Compare(_, a, b) => {
                    same(a, b)?;
                    DType::Bool
                }
                FusedInstr::Select(c, a, b) => {
                    if reg(c)? != DType::Bool {
                        return Err(bad(format!("instruction {i}: condition must be bool")));
                    }
                    same(a, b)?
                }
                FusedInstr::Cast(x, d) => {
                    reg(x)?;
                    d
                }
            };
            dtypes.push(dtype);
        }
        if self.output >= dtypes.len() {
            return Err(bad(format!(
                "output register {} of a {}-instruction program",
                self.output,
                dtypes.len()
            )));
        }
        Ok(dtypes)
    }

    /// The dtype of the program's result.
    pub fn output_dtype(&self) -> Result<DType> {
        Ok(self.register_dtypes()?[self.output])
    }
}

impl Ops<'_> {
    /// `out = program(inputs)`, every input broadcast to `out`'s shape.
    pub fn fused_elementwise_into(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
        out: &Tensor,
    ) -> Result<()> {
        let dtypes = program.register_dtypes()?;
        if inputs.len() != program.inputs.len() {
            return Err(bad(format!(
                "the program takes {} inputs, got {}",
                program.inputs.len(),
                inputs.len()
            )));
        }
        for (t, &d) in inputs.iter().zip(&program.inputs) {
            check_dtype(OP, t, d)?;
        }
        check_out(OP, "out", out, dtypes[program.output], out.dims())?;
        check_no_partial_overlap(OP, out, inputs)?;
        let views = inputs
            .iter()
            .map(|t| Ok(t.broadcast_to(out.dims().to_vec())?))
            .collect::<Result<Vec<Tensor>>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        self.backend.fused_elementwise(program, &refs, out)
    }

    /// `program(inputs)` over the broadcast shape of the inputs.
    pub fn fused_elementwise(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
    ) -> Result<Tensor> {
        let mut dims: Vec<usize> = Vec::new();
        for t in inputs {
            dims = broadcast_shapes(OP, &dims, t.dims())?.dims().to_vec();
        }
        let out = self.alloc(program.output_dtype()?, &dims)?;
        self.fused_elementwise_into(program, inputs, &out)?;
        Ok(out)
    }
}
