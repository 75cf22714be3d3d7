//! The reference backend: plain loops with f64 accumulation, obviously correct; the oracle
//! every other backend is checked against.
use crate::ops::{BinaryOp, CompareOp, RandomDist, ReduceOp, UnaryOp};
use crate::{Backend, Error, Result};
use luoshu_tensor::Tensor;

pub struct ReferenceBackend;

fn unbuilt(op: &'static str) -> Error {
    Error::invalid(op, "the reference kernel is not built yet")
}

impl Backend for ReferenceBackend {
    fn name(&self) -> &'static str {
        "reference"
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn copy(&self, _src: &Tensor, _dst: &Tensor) -> Result<()> {
        Err(unbuilt("copy"))
    }
    fn fill(&self, _value: f64, _out: &Tensor) -> Result<()> {
        Err(unbuilt("fill"))
    }
    fn cast(&self, _x: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("cast"))
    }
    fn unary(&self, _op: UnaryOp, _x: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("unary"))
    }
    fn binary(&self, _op: BinaryOp, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("binary"))
    }
    fn compare(&self, _op: CompareOp, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("compare"))
    }
    fn select(&self, _cond: &Tensor, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("where"))
    }
    fn reduce(&self, _op: ReduceOp, _x: &Tensor, _axes: &[usize], _out: &Tensor) -> Result<()> {
        Err(unbuilt("reduce"))
    }
    fn argmax(&self, _x: &Tensor, _axis: usize, _out: &Tensor) -> Result<()> {
        Err(unbuilt("argmax"))
    }
    fn matmul(&self, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("matmul"))
    }
    fn index_select(
        &self,
        _x: &Tensor,
        _dim: usize,
        _indices: &Tensor,
        _out: &Tensor,
    ) -> Result<()> {
        Err(unbuilt("index_select"))
    }
    fn index_add(
        &self,
        _dst: &Tensor,
        _dim: usize,
        _indices: &Tensor,
        _src: &Tensor,
    ) -> Result<()> {
        Err(unbuilt("index_add"))
    }
    fn gather(&self, _x: &Tensor, _dim: usize, _index: &Tensor, _out: &Tensor) -> Result<()> {
        Err(unbuilt("gather"))
    }
    fn scatter_add(
        &self,
        _dst: &Tensor,
        _dim: usize,
        _index: &Tensor,
        _src: &Tensor,
    ) -> Result<()> {
        Err(unbuilt("scatter_add"))
    }
    fn concat(&self, _inputs: &[&Tensor], _dim: usize, _out: &Tensor) -> Result<()> {
        Err(unbuilt("concat"))
    }
    fn arange(&self, _start: f64, _step: f64, _out: &Tensor) -> Result<()> {
        Err(unbuilt("arange"))
    }
    fn random(&self, _dist: RandomDist, _seed: u64, _stream: u64, _out: &Tensor) -> Result<()> {
        Err(unbuilt("random"))
    }
}
