//! CPU kernels: cross_entropy and its backward. The forward keeps only the per-row
//! log-sum-exp; the backward recomputes probabilities straight into `grad_logits`. Both
//! exponentiate whole rows with the vectorized slice `exp`.

use super::fast_exp::{vectorized, ExpSlice};
use super::rows::{input, lane_max, lane_sum, output, rows_per_task, with_float, Acc, Float};
use crate::{Error, Result};
use luoshu_tensor::{Borrows, Tensor};
use rayon::prelude::*;

pub(crate) fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: i64,
    losses: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    with_float!("cross_entropy", logits.dtype(), |T| forward::<T>(
        logits,
        targets,
        ignore_index,
        losses,
        lse
    ))
}

pub(crate) fn cross_entropy_backward(
    logits: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    grad_losses: &Tensor,
    ignore_index: i64,
    grad_logits: &Tensor,
) -> Result<()> {
    with_float!("cross_entropy_backward", logits.dtype(), |T| backward::<T>(
        logits,
        targets,
        lse,
        grad_losses,
        ignore_index,
        grad_logits
    ))
}

/// Rejects a target outside `0..vocab` (other than `ignore_index`) before any row is read.
fn check_targets(op: &'static str, targets: &[i64], vocab: usize, ignore_index: i64) -> Result<()> {
    match targets
        .iter()
        .find(|&&t| t != ignore_index && usize::try_from(t).map_or(true, |t| t >= vocab))
    {
        Some(&bad) => Err(Error::from(luoshu_tensor::Error::IndexOutOfRange {
            op,
            index: bad,
            dim: 1,
            size: vocab,
        })),
        None => Ok(()),
    }
}

/// `(rows, vocab)` of `logits [n, vocab]`.
fn rows_and_vocab(logits: &Tensor) -> (usize, usize) {
    let vocab = logits.dims().last().copied().unwrap_or(1);
    (logits.numel().checked_div(vocab).unwrap_or(0), vocab)
}

fn forward<T: Float>(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: i64,
    losses: &Tensor,
    lse: &Tensor,
) -> Result<()>
where
    T::Acc: ExpSlice,
{
    const OP: &str = "cross_entropy";
    let borrows = Borrows::new();
    let (_, vocab) = rows_and_vocab(logits);
    let x = input::<T>(&borrows, OP, "logits", logits)?;
    let targets = input::<i64>(&borrows, OP, "targets", targets)?;
    check_targets(OP, targets, vocab, ignore_index)?;
    let losses = output::<f32>(&borrows, OP, "losses", losses)?;
    let lse = output::<f32>(&borrows, OP, "lse", lse)?;
    let per_task = rows_per_task(vocab);
    losses
        .par_chunks_mut(per_task)
        .zip(lse.par_chunks_mut(per_task))
        .enumerate()
        .for_each_init(
            || vec![T::Acc::ZERO; vocab],
            |scratch, (task, (losses, lse))| {
                vectorized(|| {
                    let first = task * per_task;
                    for (r, (loss, lse)) in losses.iter_mut().zip(lse).enumerate() {
                        let row = &x[(first + r) * vocab..(first + r + 1) * vocab];
                        let row_lse = logsumexp(row, scratch);
                        *lse = row_lse.to_f32();
                        let target = targets[first + r];
                        *loss = if target == ignore_index {
                            0.0
                        } else {
                            (row_lse - row[target as usize].load()).to_f32()
                        };
                    }
                })
            },
        );
    Ok(())
}

/// `log Σ exp(x)` of a row, computed stably (`-inf` for a fully `-inf` row); `scratch`
/// holds a row.
#[inline(always)]
fn logsumexp<T: Float>(row: &[T], scratch: &mut [T::Acc]) -> T::Acc
where
    T::Acc: ExpSlice,
{
    for (s, &x) in scratch.iter_mut().zip(row) {
        *s = x.load();
    }
    let max = lane_max(scratch);
    if max == T::Acc::NEG_INFINITY {
        return max;
    }
    for s in scratch.iter_mut() {
        *s = *s - max;
    }
    T::Acc::exp_in_place(scratch);
    max + lane_sum(scratch.len(), |i| scratch[i]).ln()
}

fn backward<T: Float>(
    logits: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    grad_losses: &Tensor,
    ignore_index: i64,
    grad_logits: &Tensor,
) -> Result<()>
where
    T::Acc: ExpSlice,
{
    const OP: &str = "cross_entropy_backward";
    let borrows = Borrows::new();
    let (rows, vocab) = rows_and_vocab(logits);
    let x = input::<T>(&borrows, OP, "logits", logits)?;
    let targets = input::<i64>(&borrows, OP, "targets", targets)?;
    check_targets(OP, targets, vocab, ignore_index)?;
    let lse = input::<f32>(&borrows, OP, "lse", lse)?;
    let grad_losses = input::<f32>(&borrows, OP, "grad_losses", grad_losses)?;
    let grad = output::<T>(&borrows, OP, "grad_logits", grad_logits)?;
    if rows == 0 || vocab == 0 {
        return Ok(());
    }
    let per_task = rows_per_task(vocab);
    grad.par_chunks_mut(per_task * vocab)
        .enumerate()
        .for_each_init(
            || vec![T::Acc::ZERO; vocab],
            |prob, (task, grad)| {
                vectorized(|| {
                    let first = task * per_task;
                    for (r, grad) in grad.chunks_mut(vocab).enumerate() {
                        let i = first + r;
                        let target = targets[i];
                        if target == ignore_index {
                            grad.fill(T::store(T::Acc::ZERO));
                            continue;
                        }
                        let row = &x[i * vocab..(i + 1) * vocab];
                        let row_lse = T::Acc::from_f32(lse[i]);
                        let scale = T::Acc::from_f32(grad_losses[i]);
                        for (p, &x) in prob.iter_mut().zip(row) {
                            *p = x.load() - row_lse;
                        }
                        T::Acc::exp_in_place(prob);
                        for (g, &p) in grad.iter_mut().zip(prob.iter()) {
                            *g = T::store(p * scale);
                        }
                        let t = target as usize;
                        grad[t] = T::store((prob[t] - T::Acc::ONE) * scale);
                    }
                })
            },
        );
    Ok(())
}
