//! CPU kernels: unary, binary, compare, select (being built).

use crate::ops::{BinaryOp, CompareOp, UnaryOp};
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn unary(_op: UnaryOp, _x: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("unary"))
}

pub(crate) fn binary(_op: BinaryOp, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("binary"))
}

pub(crate) fn compare(_op: CompareOp, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("compare"))
}

pub(crate) fn select(_cond: &Tensor, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("select"))
}
