//! CPU kernels: reduce, argmax (being built).

use crate::ops::ReduceOp;
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn reduce(_op: ReduceOp, _x: &Tensor, _axes: &[usize], _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("reduce"))
}

pub(crate) fn argmax(_x: &Tensor, _axis: usize, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("argmax"))
}
