//! Cross-entropy of logits `[n, v]` against class indices `[n]`, and its gradient. Targets
//! stay on the device: ignored rows are found with `compare`, the target logit is picked
//! with `gather` and the one-hot is a comparison against `arange`.
use super::{row_exp, scalar, stat_column, upcast, write};
use crate::ops::{CompareOp, UnaryOp};
use crate::{Backend, Ops, Result};
use luoshu_tensor::{DType, Tensor};

/// Targets as a column `[n, 1]`, with ignored rows pointing at class 0 so every index is
/// valid, and the column of ignored rows (`Bool [n, 1]`).
fn safe_targets(ops: &Ops, targets: &Tensor, ignore_index: i64) -> Result<(Tensor, Tensor)> {
    let column = ops.reshape(targets, &[targets.numel(), 1])?;
    let ignored = ops.compare(
        CompareOp::Eq,
        &column,
        &scalar(ops, ignore_index as f64, DType::I64)?,
    )?;
    let safe = ops.select(&ignored, &scalar(ops, 0.0, DType::I64)?, &column)?;
    Ok((safe, ignored))
}

/// The decomposition of [`Backend::cross_entropy`] into primitives.
pub fn cross_entropy(
    b: &dyn Backend,
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: i64,
    losses: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, logits)?;
    let rows = row_exp(&ops, &x)?;
    write(&ops, &rows.lse, lse)?;
    if x.dims()[1] == 0 {
        // No classes: validation allowed only ignored targets, whose loss is 0.
        return ops.fill_into(0.0, losses);
    }
    let (safe, ignored) = safe_targets(&ops, targets, ignore_index)?;
    let picked = ops.gather(&x, 1, &safe)?;
    let loss = ops.sub(&rows.lse, &picked)?;
    let zero = scalar(&ops, 0.0, x.dtype())?;
    write(&ops, &ops.select(&ignored, &zero, &loss)?, losses)
}

/// `(exp(logits - lse) - onehot(target)) * grad_loss`, zero rows where ignored.
pub fn cross_entropy_backward(
    b: &dyn Backend,
    logits: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    grad_losses: &Tensor,
    ignore_index: i64,
    grad_logits: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, logits)?;
    let dtype = x.dtype();
    let vocab = x.dims()[1];
    let lse = stat_column(&ops, lse, &x)?;
    let grad = stat_column(&ops, grad_losses, &x)?;
    let probs = ops.unary(UnaryOp::Exp, &ops.sub(&x, &lse)?)?;
    let (safe, ignored) = safe_targets(&ops, targets, ignore_index)?;
    let classes = ops
        .arange(0.0, 1.0, vocab, DType::I64)?
        .reshape([1, vocab])?;
    let onehot = ops.cast(&ops.compare(CompareOp::Eq, &classes, &safe)?, dtype)?;
    let scaled = ops.mul(&ops.sub(&probs, &onehot)?, &grad)?;
    let zero = scalar(&ops, 0.0, dtype)?;
    write(&ops, &ops.select(&ignored, &zero, &scaled)?, grad_logits)
}
