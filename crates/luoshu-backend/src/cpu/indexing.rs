//! CPU kernels: index_select, index_add, gather, scatter_add, concat, arange (being built).

use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn index_select(
    _x: &Tensor,
    _dim: usize,
    _indices: &Tensor,
    _out: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("index_select"))
}

pub(crate) fn index_add(
    _dst: &Tensor,
    _dim: usize,
    _indices: &Tensor,
    _src: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("index_add"))
}

pub(crate) fn gather(_x: &Tensor, _dim: usize, _index: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("gather"))
}

pub(crate) fn scatter_add(
    _dst: &Tensor,
    _dim: usize,
    _index: &Tensor,
    _src: &Tensor,
) -> Result<()> {
    Err(super::unbuilt("scatter_add"))
}

pub(crate) fn concat(_inputs: &[&Tensor], _dim: usize, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("concat"))
}

pub(crate) fn arange(_start: f64, _step: f64, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("arange"))
}
