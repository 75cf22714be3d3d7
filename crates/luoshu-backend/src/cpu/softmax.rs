//! CPU kernels: softmax and log_softmax over the last dimension, one pass for the row
//! statistics and one pass that writes, rows split across rayon tasks.

use super::rows::{input, lane_sum, output, rows_per_task, with_float, Acc, Float};
use crate::Result;
use luoshu_tensor::{Borrows, Tensor};
use rayon::prelude::*;

/// Elements whose maximum is found before they are summed, so the running sum is rescaled
/// at most once per block instead of once per new maximum.
const BLOCK: usize = 64;

/// `(max, Σ exp(x - max))` of a row in a single pass (a fully `-inf` row gives `(-inf, 0)`).
pub(super) fn max_and_sumexp<T: Float>(row: &[T]) -> (T::Acc, T::Acc) {
    let mut max = T::Acc::NEG_INFINITY;
    let mut sum = T::Acc::ZERO;
    for block in row.chunks(BLOCK) {
        let block_max = block
            .iter()
            .fold(T::Acc::NEG_INFINITY, |m, &x| m.max(x.load()));
        if block_max > max {
            sum = sum * (max - block_max).exp();
            max = block_max;
        }
        if max > T::Acc::NEG_INFINITY {
            sum += lane_sum(block.len(), |i| (block[i].load() - max).exp());
        }
    }
    (max, sum)
}

/// `log Σ exp(x)` of a row, computed stably.
fn logsumexp<T: Float>(row: &[T]) -> T::Acc {
    let (max, sum) = max_and_sumexp(row);
    max + sum.ln()
}

/// Applies `f(x_row, out_row)` to every row of the last dimension, rows split across tasks.
fn map_rows<T: Float>(
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    f: impl Fn(&[T], &mut [T]) + Sync,
) -> Result<()> {
    let borrows = Borrows::new();
    let d = x.dims().last().copied().unwrap_or(1);
    let (x, out) = (
        input::<T>(&borrows, op, "x", x)?,
        output::<T>(&borrows, op, "out", out)?,
    );
    if d == 0 {
        return Ok(());
    }
    let task = rows_per_task(d) * d;
    out.par_chunks_mut(task)
        .zip(x.par_chunks(task))
        .for_each(|(o, x)| o.chunks_mut(d).zip(x.chunks(d)).for_each(|(o, x)| f(x, o)));
    Ok(())
}

pub(crate) fn softmax(x: &Tensor, out: &Tensor) -> Result<()> {
    with_float!("softmax", x.dtype(), |T| softmax_typed::<T>(x, out))
}

pub(crate) fn log_softmax(x: &Tensor, out: &Tensor) -> Result<()> {
    with_float!("log_softmax", x.dtype(), |T| log_softmax_typed::<T>(x, out))
}

fn softmax_typed<T: Float>(x: &Tensor, out: &Tensor) -> Result<()> {
    map_rows::<T>("softmax", x, out, |x, o| {
        let (max, sum) = max_and_sumexp(x);
        let inv = T::Acc::ONE / sum;
        for (o, &x) in o.iter_mut().zip(x) {
            *o = T::store((x.load() - max).exp() * inv);
        }
    })
}

fn log_softmax_typed<T: Float>(x: &Tensor, out: &Tensor) -> Result<()> {
    map_rows::<T>("log_softmax", x, out, |x, o| {
        let lse = logsumexp(x);
        for (o, &x) in o.iter_mut().zip(x) {
            *o = T::store(x.load() - lse);
        }
    })
}
