//! Reference kernels: reduce and argmax, in f64 for floats and wrapping i64 for integers.

use super::access::{read, write, Values};
use super::elementwise::{nan_max, nan_min};
use crate::ops::ReduceOp;
use crate::{Error, Result};
use luoshu_tensor::Tensor;

/// `x`'s values with `axes` moved last (the other axes keep their order), so the inputs of
/// each output element are one run of `run` consecutive values, runs in output order.
fn read_runs(x: &Tensor, axes: &[usize]) -> Result<(Values, usize)> {
    let mut perm: Vec<usize> = (0..x.rank()).filter(|a| !axes.contains(a)).collect();
    perm.extend_from_slice(axes);
    let run = axes.iter().map(|&a| x.dims()[a]).product();
    Ok((read(&x.permute(&perm)?)?, run))
}

fn reduce_floats(op: ReduceOp, v: &[f64]) -> f64 {
    // An explicit fold from +0.0: `Iterator::sum` of nothing gives -0.0.
    let sum = || v.iter().fold(0.0, |acc, &x| acc + x);
    match op {
        ReduceOp::Sum => sum(),
        // 0/0 is NaN, the mean of nothing.
        ReduceOp::Mean => sum() / v.len() as f64,
        ReduceOp::Max => v.iter().copied().fold(f64::NEG_INFINITY, nan_max),
        ReduceOp::Min => v.iter().copied().fold(f64::INFINITY, nan_min),
    }
}

fn reduce_ints(op: ReduceOp, v: &[i64]) -> Result<i64> {
    match op {
        ReduceOp::Sum => Ok(v.iter().fold(0, |acc, &x| acc.wrapping_add(x))),
        ReduceOp::Max => Ok(v.iter().copied().fold(i64::MIN, i64::max)),
        ReduceOp::Min => Ok(v.iter().copied().fold(i64::MAX, i64::min)),
        ReduceOp::Mean => Err(Error::invalid("mean", "not defined on integer dtypes")),
    }
}

/// Splits `v` into `count` runs of `run` values (`run` may be 0).
fn runs<T>(v: &[T], count: usize, run: usize) -> impl Iterator<Item = &[T]> {
    (0..count).map(move |g| &v[g * run..(g + 1) * run])
}

pub(super) fn reduce(op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
    let (values, run) = read_runs(x, axes)?;
    let count = out.numel();
    if values.len() != count * run {
        return Err(Error::invalid(
            op.name(),
            format!(
                "output {:?} does not match input {:?}",
                out.dims(),
                x.dims()
            ),
        ));
    }
    let result = match values {
        Values::Float(v) => {
            Values::Float(runs(&v, count, run).map(|r| reduce_floats(op, r)).collect())
        }
        Values::Int(v) => Values::Int(
            runs(&v, count, run)
                .map(|r| reduce_ints(op, r))
                .collect::<Result<_>>()?,
        ),
    };
    write(out, &result)
}

/// Index of the first maximum; a NaN counts as larger than everything, so the first NaN
/// wins (PyTorch's rule).
fn argmax_floats(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if v[best].is_nan() {
            break;
        }
        if x.is_nan() || x > v[best] {
            best = i;
        }
    }
    best
}

fn argmax_ints(v: &[i64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

pub(super) fn argmax(x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
    let (values, run) = read_runs(x, &[axis])?;
    let count = out.numel();
    if run == 0 || values.len() != count * run {
        return Err(Error::invalid(
            "argmax",
            format!(
                "axis {axis} of {:?} is empty or does not match {:?}",
                x.dims(),
                out.dims()
            ),
        ));
    }
    let result: Vec<i64> = match values {
        Values::Float(v) => runs(&v, count, run)
            .map(argmax_floats)
            .map(|i| i as i64)
            .collect(),
        Values::Int(v) => runs(&v, count, run)
            .map(argmax_ints)
            .map(|i| i as i64)
            .collect(),
    };
    write(out, &Values::Int(result))
}
