//! The optimizer composites: AdamW and the sum of squares behind global-norm clipping.
use super::{scalar, to_dtype, upcast};
use crate::ops::{AdamW, ReduceOp, UnaryOp};
use crate::{Backend, Ops, Result};
use luoshu_tensor::Tensor;

/// One AdamW step: the new `m`, `v` and `param` are computed out of place from the old
/// values, then copied over them.
pub fn adamw(
    b: &dyn Backend,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamW,
) -> Result<()> {
    let ops = Ops::new(b);
    let dtype = param.dtype();
    let g = to_dtype(&ops, grad, dtype)?;
    let s = |value: f64| scalar(&ops, value, dtype);
    let (beta1, beta2) = (hp.beta1 as f64, hp.beta2 as f64);
    let step = i32::try_from(hp.step).unwrap_or(i32::MAX);
    let bias1 = 1.0 - beta1.powi(step);
    let bias2 = 1.0 - beta2.powi(step);

    let m_new = ops.add(&ops.mul(m, &s(beta1)?)?, &ops.mul(&g, &s(1.0 - beta1)?)?)?;
    let g2 = ops.mul(&g, &g)?;
    let v_new = ops.add(&ops.mul(v, &s(beta2)?)?, &ops.mul(&g2, &s(1.0 - beta2)?)?)?;
    let m_hat = ops.div(&m_new, &s(bias1)?)?;
    let v_hat = ops.div(&v_new, &s(bias2)?)?;
    let denom = ops.add(&ops.unary(UnaryOp::Sqrt, &v_hat)?, &s(hp.eps as f64)?)?;
    let decay = ops.mul(param, &s(hp.weight_decay as f64)?)?;
    let update = ops.add(&ops.div(&m_hat, &denom)?, &decay)?;
    let param_new = ops.sub(param, &ops.mul(&update, &s(hp.lr as f64)?)?)?;

    ops.copy_into(&m_new, m)?;
    ops.copy_into(&v_new, v)?;
    ops.copy_into(&param_new, param)
}

/// Each tensor's squares are summed on the device in its compute dtype (reductions
/// accumulate in at least f32) and read back as one number; the per-tensor totals are
/// added in f64.
pub fn sum_squares(b: &dyn Backend, tensors: &[&Tensor]) -> Result<f64> {
    let ops = Ops::new(b);
    let mut total = 0.0;
    for t in tensors {
        let flat = ops.reshape(&upcast(&ops, t)?, &[t.numel()])?;
        let squares = ops.mul(&flat, &flat)?;
        let sum = ops.reduce(ReduceOp::Sum, &squares, &[0], false)?;
        total += sum.to_f64_vec().iter().sum::<f64>();
    }
    Ok(total)
}
