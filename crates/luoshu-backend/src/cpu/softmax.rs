//! CPU kernels: softmax, log_softmax (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn softmax(_x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("softmax"))
}

pub(crate) fn log_softmax(_x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("log_softmax"))
}
