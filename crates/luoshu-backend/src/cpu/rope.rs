//! CPU kernels: rope (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn rope(
    _x: &Tensor,
    _cos: &Tensor,
    _sin: &Tensor,
    _inverse: bool,
    _out: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("rope"))
}
