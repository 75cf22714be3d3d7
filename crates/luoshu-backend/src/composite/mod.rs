//! Default decompositions of the composite ops into primitives. Any backend gets these for
//! free; they are also what the conformance suite compares fused kernels against (run on
//! the reference backend).
//!
//! Every decomposition goes through the validated [`Ops`] API and reads no tensor data on
//! the host (except `sum_squares`, whose result is a host number). Half-precision inputs
//! are computed in f32 and rounded once into the output, like a fused kernel; f64 stays
//! f64 so finite-difference gradient checks see full precision.

mod attention;
mod cross_entropy;
mod fused;
mod norm;
mod optim;
mod rope;
mod softmax;
mod swiglu;

pub use attention::{attention, attention_backward};
pub use cross_entropy::{cross_entropy, cross_entropy_backward};
pub use fused::fused_elementwise;
pub use norm::{layer_norm, layer_norm_backward, rms_norm, rms_norm_backward};
pub use optim::{adamw, sum_squares};
pub use rope::rope;
pub use softmax::{log_softmax, softmax};
pub use swiglu::{swiglu, swiglu_backward};

use crate::ops::{CompareOp, ReduceOp, UnaryOp};
use crate::{Ops, Result};
use luoshu_tensor::{DType, Tensor};

/// The dtype a decomposition computes in for inputs of `dtype`: f32 for the half types.
fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// `t` converted to `dtype` (itself when it already has it).
fn to_dtype(ops: &Ops, t: &Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    ops.cast(t, dtype)
}

/// `t` in its compute dtype (see [`compute_dtype`]).
fn upcast(ops: &Ops, t: &Tensor) -> Result<Tensor> {
    to_dtype(ops, t, compute_dtype(t.dtype()))
}

/// Stores `value` (same element count, any dtype) into `out`, rounding once if the dtypes
/// differ.
fn write(ops: &Ops, value: &Tensor, out: &Tensor) -> Result<()> {
    let value = ops.reshape(value, out.dims())?;
    if value.dtype() == out.dtype() {
        ops.copy_into(&value, out)
    } else {
        ops.cast_into(&value, out)
    }
}

/// A rank-0 tensor holding `value`, broadcast by the binary ops.
fn scalar(ops: &Ops, value: f64, dtype: DType) -> Result<Tensor> {
    ops.full(value, dtype, &[])
}

/// The index of `t`'s last axis (callers have checked `t` has rank >= 1).
fn last_axis(t: &Tensor) -> usize {
    t.rank().saturating_sub(1)
}

/// `t`'s dims with the last one set to 1: the shape of a per-row statistic that broadcasts
/// against `t`.
fn row_dims(t: &Tensor) -> Vec<usize> {
    let mut dims = t.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = 1;
    }
    dims
}

/// A saved per-row statistic (`like`'s dims without the last) as a `[.., 1]` column in
/// `like`'s dtype.
fn stat_column(ops: &Ops, stat: &Tensor, like: &Tensor) -> Result<Tensor> {
    to_dtype(ops, &ops.reshape(stat, &row_dims(like))?, like.dtype())
}

/// Reduction over the last axis, keeping it with size 1.
fn reduce_last(ops: &Ops, op: ReduceOp, t: &Tensor) -> Result<Tensor> {
    ops.reduce(op, t, &[last_axis(t)], true)
}

/// `t` summed over every axis but the last (the gradient of a per-feature parameter).
fn sum_rows(ops: &Ops, t: &Tensor) -> Result<Tensor> {
    let leading: Vec<usize> = (0..last_axis(t)).collect();
    if leading.is_empty() {
        return Ok(t.clone());
    }
    ops.reduce(ReduceOp::Sum, t, &leading, false)
}

/// Exponentials of one row-wise softmax over the last axis, shifted by the row maximum.
struct RowExp {
    /// `exp(x - max)`; exactly 0 where `x` is -inf.
    exps: Tensor,
    /// Row sums of `exps` (keepdim); 0 only for rows that are entirely -inf or empty.
    sums: Tensor,
    /// `log(sum(exp(x)))` (keepdim); -inf for rows that are entirely -inf or empty.
    lse: Tensor,
}

/// Numerically stable exponentials over the last axis. A row that is entirely -inf (a
/// fully masked attention row) is shifted by 0 instead of its maximum, so it never
/// computes `-inf - -inf`; its sum is 0 and its log-sum-exp -inf.
fn row_exp(ops: &Ops, x: &Tensor) -> Result<RowExp> {
    if x.dims().last() == Some(&0) {
        return Ok(RowExp {
            exps: x.clone(),
            sums: ops.full(0.0, x.dtype(), &row_dims(x))?,
            lse: ops.full(f64::NEG_INFINITY, x.dtype(), &row_dims(x))?,
        });
    }
    let max = reduce_last(ops, ReduceOp::Max, x)?;
    let neg_inf = scalar(ops, f64::NEG_INFINITY, x.dtype())?;
    let zero = scalar(ops, 0.0, x.dtype())?;
    let masked_row = ops.compare(CompareOp::Eq, &max, &neg_inf)?;
    let shift = ops.select(&masked_row, &zero, &max)?;
    let exps = ops.unary(UnaryOp::Exp, &ops.sub(x, &shift)?)?;
    let sums = reduce_last(ops, ReduceOp::Sum, &exps)?;
    let log_sums = ops.unary(UnaryOp::Log, &sums)?;
    let lse = ops.add(&shift, &log_sums)?;
    Ok(RowExp { exps, sums, lse })
}
