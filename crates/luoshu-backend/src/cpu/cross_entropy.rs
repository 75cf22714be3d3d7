//! CPU kernels: cross_entropy and its backward. The forward keeps only the per-row
//! log-sum-exp; the backward recomputes probabilities straight into `grad_logits`.

use super::rows::{input, output, rows_per_task, with_float, Acc, Float};
use super::softmax::logsumexp;
use crate::{Error, Result};
use luoshu_tensor::Tensor;
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
) -> Result<()> {
    const OP: &str = "cross_entropy";
    let (_, vocab) = rows_and_vocab(logits);
    let x = input::<T>(OP, "logits", logits)?;
    let targets = input::<i64>(OP, "targets", targets)?;
    check_targets(OP, targets, vocab, ignore_index)?;
    let losses = output::<f32>(OP, "losses", losses)?;
    let lse = output::<f32>(OP, "lse", lse)?;
    let per_task = rows_per_task(vocab);
    losses
        .par_chunks_mut(per_task)
        .zip(lse.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, (losses, lse))| {
            let first = task * per_task;
            for (r, (loss, lse)) in losses.iter_mut().zip(lse).enumerate() {
                let row = &x[(first + r) * vocab..(first + r + 1) * vocab];
                let row_lse = logsumexp(row);
                *lse = row_lse.to_f32();
                let target = targets[first + r];
                *loss = if target == ignore_index {
                    0.0
                } else {
                    (row_lse - row[target as usize].load()).to_f32()
                };
            }
        });
    Ok(())
}

fn backward<T: Float>(
    logits: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    grad_losses: &Tensor,
    ignore_index: i64,
    grad_logits: &Tensor,
) -> Result<()> {
    const OP: &str = "cross_entropy_backward";
    let (rows, vocab) = rows_and_vocab(logits);
    let x = input::<T>(OP, "logits", logits)?;
    let targets = input::<i64>(OP, "targets", targets)?;
    check_targets(OP, targets, vocab, ignore_index)?;
    let lse = input::<f32>(OP, "lse", lse)?;
    let grad_losses = input::<f32>(OP, "grad_losses", grad_losses)?;
    let grad = output::<T>(OP, "grad_logits", grad_logits)?;
    if rows == 0 || vocab == 0 {
        return Ok(());
    }
    let per_task = rows_per_task(vocab);
    grad.par_chunks_mut(per_task * vocab)
        .enumerate()
        .for_each(|(task, grad)| {
            let first = task * per_task;
            for (r, grad) in grad.chunks_mut(vocab).enumerate() {
                let i = first + r;
                let target = targets[i];
                if target == ignore_index {
                    grad.fill(T::store(T::Acc::ZERO));
                    continue;
                }
                let row = &x[i * vocab..(i + 1) * vocab];
                let (row_lse, scale) = (T::Acc::from_f32(lse[i]), T::Acc::from_f32(grad_losses[i]));
                let prob = |x: T| (x.load() - row_lse).exp();
                for (g, &x) in grad.iter_mut().zip(row) {
                    *g = T::store(prob(x) * scale);
                }
                let t = target as usize;
                grad[t] = T::store((prob(row[t]) - T::Acc::ONE) * scale);
            }
        });
    Ok(())
}
