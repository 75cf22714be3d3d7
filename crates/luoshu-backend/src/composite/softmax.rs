//! Softmax and log-softmax over the last dimension.
use super::{row_exp, upcast, write};
use crate::{Backend, Ops, Result};
use luoshu_tensor::Tensor;

/// The decomposition of [`Backend::softmax`] into primitives.
pub fn softmax(b: &dyn Backend, x: &Tensor, out: &Tensor) -> Result<()> {
    let ops = Ops::new(b);
    let rows = row_exp(&ops, &upcast(&ops, x)?)?;
    write(&ops, &ops.div(&rows.exps, &rows.sums)?, out)
}

/// The decomposition of [`Backend::log_softmax`] into primitives.
pub fn log_softmax(b: &dyn Backend, x: &Tensor, out: &Tensor) -> Result<()> {
    let ops = Ops::new(b);
    let x = upcast(&ops, x)?;
    let rows = row_exp(&ops, &x)?;
    write(&ops, &ops.sub(&x, &rows.lse)?, out)
}
