//! The fast CPU backend: matmul through the `gemm` crate, parallel loops through `rayon`,
//! and a fused kernel for every composite op.

mod access;
mod attention;
mod cross_entropy;
mod dispatch;
mod elementwise;
mod fast_exp;
mod fused;
mod indexing;
mod map;
mod matmul;
mod memory;
mod norm;
mod numeric;
mod optim;
mod parallel;
mod random;
mod reduce;
mod reduction;
mod rope;
mod rows;
mod softmax;
mod strided;
mod swiglu;

use crate::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, BinaryOp,
    CompareOp, CompositeOp, ElementwiseProgram, LayerNormGrads, NormStats, RandomDist, ReduceOp,
    UnaryOp,
};
use crate::{Backend, Result};
use luoshu_tensor::Tensor;

/// The CPU backend. Stateless: the thread pool is rayon's global pool.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend; equal to `CpuBackend::default()`, as it holds no state.
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn native_composites(&self) -> &'static [CompositeOp] {
        &CompositeOp::ALL
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
    fn matmul(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        matmul::matmul(a, b, out)
    }
    fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        attention::attention(inputs, opts, out, lse)
    }
    fn attention_backward(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
        grads: AttentionGrads<'_>,
    ) -> Result<()> {
        attention::attention_backward(inputs, opts, output_grads, grads)
    }
    fn softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        softmax::softmax(x, out)
    }
    fn log_softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        softmax::log_softmax(x, out)
    }
    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        losses: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        cross_entropy::cross_entropy(logits, targets, ignore_index, losses, lse)
    }
    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        grad_losses: &Tensor,
        ignore_index: i64,
        grad_logits: &Tensor,
    ) -> Result<()> {
        cross_entropy::cross_entropy_backward(
            logits,
            targets,
            lse,
            grad_losses,
            ignore_index,
            grad_logits,
        )
    }
    fn rms_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        eps: f32,
        out: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        norm::rms_norm(x, weight, eps, out, rstd)
    }
    fn rms_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        rstd: &Tensor,
        grad_out: &Tensor,
        grad_x: &Tensor,
        grad_weight: &Tensor,
    ) -> Result<()> {
        norm::rms_norm_backward(x, weight, rstd, grad_out, grad_x, grad_weight)
    }
    fn layer_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        out: &Tensor,
        stats: NormStats<'_>,
    ) -> Result<()> {
        norm::layer_norm(x, weight, bias, eps, out, stats)
    }
    fn layer_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        stats: NormStats<'_>,
        grad_out: &Tensor,
        grads: LayerNormGrads<'_>,
    ) -> Result<()> {
        norm::layer_norm_backward(x, weight, stats, grad_out, grads)
    }
    fn rope(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        inverse: bool,
        out: &Tensor,
    ) -> Result<()> {
        rope::rope(x, cos, sin, inverse, out)
    }
    fn swiglu(&self, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
        swiglu::swiglu(gate, up, out)
    }
    fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad_out: &Tensor,
        grad_gate: &Tensor,
        grad_up: &Tensor,
    ) -> Result<()> {
        swiglu::swiglu_backward(gate, up, grad_out, grad_gate, grad_up)
    }
    fn adamw(
        &self,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamW,
    ) -> Result<()> {
        optim::adamw(param, grad, m, v, hp)
    }
    fn sum_squares(&self, tensors: &[&Tensor]) -> Result<f64> {
        optim::sum_squares(tensors)
    }
    fn fused_elementwise(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
        out: &Tensor,
    ) -> Result<()> {
        fused::fused_elementwise(program, inputs, out)
    }
}
