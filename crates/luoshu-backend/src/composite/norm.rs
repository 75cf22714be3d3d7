//! RMSNorm and LayerNorm over the last dimension, forward and backward. Row statistics
//! (`mean`, `rstd`) are f32 outputs whatever the input dtype; they are computed in the
//! compute dtype and rounded once when stored.
use super::{reduce_last, scalar, stat_column, sum_rows, to_dtype, upcast, write};
use crate::ops::{LayerNormGrads, NormStats, ReduceOp, UnaryOp};
use crate::{Backend, Ops, Result};
use luoshu_tensor::Tensor;

/// `rsqrt(mean_square + eps)`.
fn reciprocal_std(ops: &Ops, mean_square: &Tensor, eps: f32) -> Result<Tensor> {
    let shifted = ops.add(mean_square, &scalar(ops, eps as f64, mean_square.dtype())?)?;
    ops.unary(UnaryOp::Rsqrt, &shifted)
}

/// The decomposition of [`Backend::rms_norm`] into primitives.
pub fn rms_norm(
    b: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    eps: f32,
    out: &Tensor,
    rstd: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let w = to_dtype(&ops, weight, x.dtype())?;
    let mean_square = reduce_last(&ops, ReduceOp::Mean, &ops.mul(&x, &x)?)?;
    let r = reciprocal_std(&ops, &mean_square, eps)?;
    write(&ops, &r, rstd)?;
    write(&ops, &ops.mul(&ops.mul(&x, &r)?, &w)?, out)
}

/// With `y = x · r` and `dŷ = dy · w`: `dx = r · (dŷ - y · mean(dŷ · y))`,
/// `dw = Σ_rows dy · y`.
pub fn rms_norm_backward(
    b: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    rstd: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_weight: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let dtype = x.dtype();
    let (w, dy) = (to_dtype(&ops, weight, dtype)?, upcast(&ops, grad_out)?);
    let r = stat_column(&ops, rstd, &x)?;
    let y = ops.mul(&x, &r)?;
    write(&ops, &sum_rows(&ops, &ops.mul(&dy, &y)?)?, grad_weight)?;
    let dy_hat = ops.mul(&dy, &w)?;
    let projection = reduce_last(&ops, ReduceOp::Mean, &ops.mul(&dy_hat, &y)?)?;
    let centred = ops.sub(&dy_hat, &ops.mul(&y, &projection)?)?;
    write(&ops, &ops.mul(&centred, &r)?, grad_x)
}

/// The decomposition of [`Backend::layer_norm`] into primitives.
pub fn layer_norm(
    b: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
    out: &Tensor,
    stats: NormStats<'_>,
) -> Result<()> {
    let NormStats { mean, rstd } = stats;
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let dtype = x.dtype();
    let (w, bias) = (to_dtype(&ops, weight, dtype)?, to_dtype(&ops, bias, dtype)?);
    let mu = reduce_last(&ops, ReduceOp::Mean, &x)?;
    let centred = ops.sub(&x, &mu)?;
    let variance = reduce_last(&ops, ReduceOp::Mean, &ops.mul(&centred, &centred)?)?;
    let r = reciprocal_std(&ops, &variance, eps)?;
    write(&ops, &mu, mean)?;
    write(&ops, &r, rstd)?;
    let normalized = ops.mul(&centred, &r)?;
    write(&ops, &ops.add(&ops.mul(&normalized, &w)?, &bias)?, out)
}

/// With `x̂ = (x - mean) · r` and `dx̂ = dy · w`:
/// `dx = r · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))`, `dw = Σ_rows dy · x̂`, `db = Σ_rows dy`.
pub fn layer_norm_backward(
    b: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    stats: NormStats<'_>,
    grad_out: &Tensor,
    grads: LayerNormGrads<'_>,
) -> Result<()> {
    let NormStats { mean, rstd } = stats;
    let LayerNormGrads {
        x: grad_x,
        weight: grad_weight,
        bias: grad_bias,
    } = grads;
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let dtype = x.dtype();
    let (w, dy) = (to_dtype(&ops, weight, dtype)?, upcast(&ops, grad_out)?);
    let (mu, r) = (stat_column(&ops, mean, &x)?, stat_column(&ops, rstd, &x)?);
    let x_hat = ops.mul(&ops.sub(&x, &mu)?, &r)?;
    write(&ops, &sum_rows(&ops, &ops.mul(&dy, &x_hat)?)?, grad_weight)?;
    write(&ops, &sum_rows(&ops, &dy)?, grad_bias)?;
    let dx_hat = ops.mul(&dy, &w)?;
    let dx_hat_mean = reduce_last(&ops, ReduceOp::Mean, &dx_hat)?;
    let projection = reduce_last(&ops, ReduceOp::Mean, &ops.mul(&dx_hat, &x_hat)?)?;
    let centred = ops.sub(
        &ops.sub(&dx_hat, &dx_hat_mean)?,
        &ops.mul(&x_hat, &projection)?,
    )?;
    write(&ops, &ops.mul(&centred, &r)?, grad_x)
}
