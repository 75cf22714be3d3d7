//! CPU kernels: copy, fill, cast (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn copy(_src: &Tensor, _dst: &Tensor) -> Result<()> {
    Err(super::unbuilt("copy"))
}

pub(crate) fn fill(_value: f64, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("fill"))
}

pub(crate) fn cast(_x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("cast"))
}
