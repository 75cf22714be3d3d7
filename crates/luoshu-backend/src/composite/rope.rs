//! Rotary position embedding in the rotate-half convention.
use super::{to_dtype, upcast, write};
use crate::ops::UnaryOp;
use crate::{Backend, Ops, Result};
use luoshu_tensor::Tensor;

/// `x [b, s, h, d]` with halves `x1 = x[.., :d/2]`, `x2 = x[.., d/2:]`:
/// `out = [x1·cos - x2·sin, x2·cos + x1·sin]`; `inverse` negates `sin`.
pub fn rope(
    b: &dyn Backend,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    inverse: bool,
    out: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let (seq, half) = (x.dims()[1], x.dims()[3] / 2);
    // The tables are [s, d/2]; as [1, s, 1, d/2] they broadcast over batch and heads.
    let table = |t: &Tensor| -> Result<Tensor> {
        to_dtype(&ops, &ops.reshape(t, &[1, seq, 1, half])?, x.dtype())
    };
    let cos = table(cos)?;
    let mut sin = table(sin)?;
    if inverse {
        sin = ops.unary(UnaryOp::Neg, &sin)?;
    }
    let (x1, x2) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
    let first = ops.sub(&ops.mul(&x1, &cos)?, &ops.mul(&x2, &sin)?)?;
    let second = ops.add(&ops.mul(&x2, &cos)?, &ops.mul(&x1, &sin)?)?;
    write(&ops, &ops.concat(&[&first, &second], 3)?, out)
}
