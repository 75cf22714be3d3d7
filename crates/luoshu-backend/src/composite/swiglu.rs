//! SwiGLU, `silu(gate) * up`, and its gradients.
use super::{scalar, upcast, write};
use crate::ops::UnaryOp;
use crate::{Backend, Ops, Result};
use luoshu_tensor::Tensor;

/// The decomposition of [`Backend::swiglu`] into primitives.
pub fn swiglu(b: &dyn Backend, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
    let ops = Ops::new(b);
    let silu = ops.unary(UnaryOp::Silu, &upcast(&ops, gate)?)?;
    write(&ops, &ops.mul(&silu, &upcast(&ops, up)?)?, out)
}

/// With `s = sigmoid(g)`: `d silu(g) / dg = s · (1 + g · (1 - s))`.
pub fn swiglu_backward(
    b: &dyn Backend,
    gate: &Tensor,
    up: &Tensor,
    grad_out: &Tensor,
    grad_gate: &Tensor,
    grad_up: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let (g, u, dy) = (
        upcast(&ops, gate)?,
        upcast(&ops, up)?,
        upcast(&ops, grad_out)?,
    );
    let one = scalar(&ops, 1.0, g.dtype())?;
    let s = ops.unary(UnaryOp::Sigmoid, &g)?;
    let silu = ops.mul(&g, &s)?;
    let one_minus_s = ops.sub(&one, &s)?;
    let dsilu = ops.mul(&s, &ops.add(&one, &ops.mul(&g, &one_minus_s)?)?)?;
    write(&ops, &ops.mul(&ops.mul(&dy, &u)?, &dsilu)?, grad_gate)?;
    write(&ops, &ops.mul(&dy, &silu)?, grad_up)
}
