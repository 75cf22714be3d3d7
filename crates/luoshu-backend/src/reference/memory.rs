//! Reference kernels: copy, fill, cast.

use super::access::{read, write, write_floats};
use crate::Result;
use luoshu_tensor::Tensor;

/// `dst = src`: a cast to the same dtype, which is exact because values are read into i64
/// or f64 without loss.
pub(super) fn copy(src: &Tensor, dst: &Tensor) -> Result<()> {
    cast(src, dst)
}

pub(super) fn fill(value: f64, out: &Tensor) -> Result<()> {
    write_floats(out, &vec![value; out.numel()])
}

/// The exact input values written with [`write`]'s numeric-cast rule.
pub(super) fn cast(x: &Tensor, out: &Tensor) -> Result<()> {
    write(out, &read(x)?)
}
