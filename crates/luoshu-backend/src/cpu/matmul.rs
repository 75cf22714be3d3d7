//! CPU kernels: matmul (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn matmul(_a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("matmul"))
}
