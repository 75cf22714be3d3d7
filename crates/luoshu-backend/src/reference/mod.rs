//! The reference backend: plain loops over values read in logical order, floats computed in
//! f64 and integers in wrapping i64, obviously correct rather than fast; the oracle every
//! other backend is checked against.

mod access;
mod elementwise;
mod indexing;
mod matmul;
mod memory;
mod random;
mod reduce;

use crate::ops::{BinaryOp, CompareOp, RandomDist, ReduceOp, UnaryOp};
use crate::{Backend, Result};
use luoshu_tensor::Tensor;

/// The oracle backend. Composite ops use the default decompositions.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReferenceBackend;

impl Backend for ReferenceBackend {
    fn name(&self) -> &'static str {
        "reference"
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        memory::copy(src, dst)
    }
    fn fill(&self, value: f64, out: &Tensor) -> Result<()> {
        memory::fill(value, out)
    }
    fn cast(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        memory::cast(x, out)
    }
    fn unary(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
        elementwise::unary(op, x, out)
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        elementwise::binary(op, a, b, out)
    }
    fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        elementwise::compare(op, a, b, out)
    }
    fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        elementwise::select(cond, a, b, out)
    }
    fn reduce(&self, op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
        reduce::reduce(op, x, axes, out)
    }
    fn argmax(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
        reduce::argmax(x, axis, out)
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        matmul::matmul(a, b, out)
    }
    fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
        indexing::index_select(x, dim, indices, out)
    }
    fn index_add(&self, dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
        indexing::index_add(dst, dim, indices, src)
    }
    fn gather(&self, x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
        indexing::gather(x, dim, index, out)
    }
    fn scatter_add(&self, dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
        indexing::scatter_add(dst, dim, index, src)
    }
    fn concat(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
        indexing::concat(inputs, dim, out)
    }
    fn arange(&self, start: f64, step: f64, out: &Tensor) -> Result<()> {
        indexing::arange(start, step, out)
    }
    fn random(&self, dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
        random::random(dist, seed, stream, out)
    }
}
