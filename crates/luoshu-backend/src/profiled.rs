//! [`Profiled`]: a backend that runs another one and adds up, per op family, the time its
//! kernels take and the FLOPs of its matmuls and attention, for `luoshu bench train
//! --profile`. Composite ops count as one call of their family (a backend's own
//! decomposition is timed as a whole, never twice).

use crate::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, BinaryOp,
    CompareOp, CompositeOp, ElementwiseProgram, LayerNormGrads, NormStats, RandomDist, ReduceOp,
    UnaryOp,
};
use crate::{Backend, Result};
use luoshu_tensor::{DType, Shape, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a kernel is, for the profile's time shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Matrix products.
    Matmul,
    /// Attention, forward and backward.
    Attention,
    /// RMS and layer norm, forward and backward.
    Norms,
    /// Unary, binary, compare, select, fused elementwise programs, SwiGLU, RoPE, softmax.
    Elementwise,
    /// Cross-entropy forward and backward.
    Loss,
    /// Reductions, argmax, indexing (embedding lookups and their gradients), random.
    ReduceIndex,
    /// AdamW and the sum of squares of global-norm clipping.
    Optimizer,
    /// Allocation (zeroed), copy, fill, cast, concat.
    Copies,
}

impl Family {
    /// Every family, in declaration order (the order of [`Profiled::totals`]).
    pub const ALL: [Family; 8] = [
        Family::Matmul,
        Family::Attention,
        Family::Norms,
        Family::Elementwise,
        Family::Loss,
        Family::ReduceIndex,
        Family::Optimizer,
        Family::Copies,
    ];

    /// Name as printed in the profile (`"reduce/index"`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Attention => "attention",
            Family::Norms => "norms",
            Family::Elementwise => "elementwise",
            Family::Loss => "cross-entropy",
            Family::ReduceIndex => "reduce/index",
            Family::Optimizer => "optimizer",
            Family::Copies => "copies",
        }
    }
}

/// Accumulated time, calls and FLOPs of one family.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FamilyTotals {
    /// Wall-clock time spent in the family's kernels, summed over calls (and over threads
    /// when kernels run concurrently).
    pub time: Duration,
    /// Number of kernel calls.
    pub calls: u64,
    /// Multiply-adds counted as 2 FLOPs; matmul and attention only (causal attention counts
    /// the half of the score matrix it computes).
    pub flops: f64,
}

#[derive(Default)]
struct Counters {
    nanos: AtomicU64,
    calls: AtomicU64,
    /// FLOPs as an integer: exact up to 2⁶⁴, far beyond any profiled run.
    flops: AtomicU64,
}

/// Runs `inner`'s kernels and counts them per [`Family`]. Share it as `Arc<dyn Backend>`
/// and read [`Profiled::totals`] through the `Arc<Profiled>` kept aside.
pub struct Profiled {
    inner: Arc<dyn Backend>,
    counters: [Counters; Family::ALL.len()],
}

impl Profiled {
    /// Profiles `inner`, with every counter at zero.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Profiled {
            inner,
            counters: Default::default(),
        }
    }

    /// Totals per family since creation or the last [`Profiled::reset`], in
    /// [`Family::ALL`] order.
    pub fn totals(&self) -> Vec<(Family, FamilyTotals)> {
        Family::ALL
            .iter()
            .zip(&self.counters)
            .map(|(&family, c)| {
                let totals = FamilyTotals {
                    time: Duration::from_nanos(c.nanos.load(Ordering::Relaxed)),
                    calls: c.calls.load(Ordering::Relaxed),
                    flops: c.flops.load(Ordering::Relaxed) as f64,
                };
                (family, totals)
            })
            .collect()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for c in &self.counters {
            c.nanos.store(0, Ordering::Relaxed);
            c.calls.store(0, Ordering::Relaxed);
            c.flops.store(0, Ordering::Relaxed);
        }
    }

    fn timed<R>(&self, family: Family, flops: u64, kernel: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = kernel();
        let nanos = start.elapsed().as_nanos() as u64;
        // `Family::ALL` lists the variants in declaration order.
        let c = &self.counters[family as usize];
        c.nanos.fetch_add(nanos, Ordering::Relaxed);
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.flops.fetch_add(flops, Ordering::Relaxed);
        result
    }
}

/// `2·m·k·n` per batch entry of `out[..., m, n] = a[..., m, k] · b[..., k, n]`.
fn matmul_flops(a: &Tensor, out: &Tensor) -> u64 {
    let k = a.dims().last().copied().unwrap_or(0);
    2 * out.numel() as u64 * k as u64
}

/// Score and weighted-sum products of attention, `2·sq·sk·(d + dv)` per query head, halved
/// when causal (square); `products` is 1 forward and 2.5 backward (recomputed scores,
/// `dP`, `dV`, `dQ`, `dK`: 5 products of the forward's 2).
fn attention_flops(q: &Tensor, v: &Tensor, k: &Tensor, causal: bool, backward: bool) -> u64 {
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    if qd.len() != 4 || kd.len() != 4 || vd.len() != 4 {
        return 0;
    }
    let heads = (qd[0] * qd[1]) as u64;
    let (sq, sk, d, dv) = (qd[2] as u64, kd[2] as u64, qd[3] as u64, vd[3] as u64);
    let forward = 2 * heads * sq * sk * (d + dv);
    let forward = if causal { forward / 2 } else { forward };
    if backward {
        forward * 5 / 2
    } else {
        forward
    }
}

impl Backend for Profiled {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn native_composites(&self) -> &'static [CompositeOp] {
        self.inner.native_composites()
    }
    fn alloc(&self, dtype: DType, shape: &Shape) -> Result<Tensor> {
        self.timed(Family::Copies, 0, || self.inner.alloc(dtype, shape))
    }
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        self.timed(Family::Copies, 0, || self.inner.copy(src, dst))
    }
    fn fill(&self, value: f64, out: &Tensor) -> Result<()> {
        self.timed(Family::Copies, 0, || self.inner.fill(value, out))
    }
    fn cast(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Copies, 0, || self.inner.cast(x, out))
    }
    fn unary(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.unary(op, x, out))
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.binary(op, a, b, out))
    }
    fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.compare(op, a, b, out))
    }
    fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || {
            self.inner.select(cond, a, b, out)
        })
    }
    fn reduce(&self, op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.reduce(op, x, axes, out)
        })
    }
    fn argmax(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || self.inner.argmax(x, axis, out))
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        let flops = matmul_flops(a, out);
        self.timed(Family::Matmul, flops, || self.inner.matmul(a, b, out))
    }
    fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.index_select(x, dim, indices, out)
        })
    }
    fn index_add(&self, dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.index_add(dst, dim, indices, src)
        })
    }
    fn gather(&self, x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.gather(x, dim, index, out)
        })
    }
    fn scatter_add(&self, dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.scatter_add(dst, dim, index, src)
        })
    }
    fn concat(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
        self.timed(Family::Copies, 0, || self.inner.concat(inputs, dim, out))
    }
    fn arange(&self, start: f64, step: f64, out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.arange(start, step, out)
        })
    }
    fn random(&self, dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
        self.timed(Family::ReduceIndex, 0, || {
            self.inner.random(dist, seed, stream, out)
        })
    }
    fn softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.softmax(x, out))
    }
    fn log_softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.log_softmax(x, out))
    }
    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        losses: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        self.timed(Family::Loss, 0, || {
            self.inner
                .cross_entropy(logits, targets, ignore_index, losses, lse)
        })
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
        self.timed(Family::Loss, 0, || {
            self.inner.cross_entropy_backward(
                logits,
                targets,
                lse,
                grad_losses,
                ignore_index,
                grad_logits,
            )
        })
    }
    fn rms_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        eps: f32,
        out: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        self.timed(Family::Norms, 0, || {
            self.inner.rms_norm(x, weight, eps, out, rstd)
        })
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
        self.timed(Family::Norms, 0, || {
            self.inner
                .rms_norm_backward(x, weight, rstd, grad_out, grad_x, grad_weight)
        })
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
        self.timed(Family::Norms, 0, || {
            self.inner.layer_norm(x, weight, bias, eps, out, stats)
        })
    }
    fn layer_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        stats: NormStats<'_>,
        grad_out: &Tensor,
        grads: LayerNormGrads<'_>,
    ) -> Result<()> {
        self.timed(Family::Norms, 0, || {
            self.inner
                .layer_norm_backward(x, weight, stats, grad_out, grads)
        })
    }
    fn rope(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        inverse: bool,
        out: &Tensor,
    ) -> Result<()> {
        self.timed(Family::Elementwise, 0, || {
            self.inner.rope(x, cos, sin, inverse, out)
        })
    }
    fn swiglu(&self, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
        self.timed(Family::Elementwise, 0, || self.inner.swiglu(gate, up, out))
    }
    fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad_out: &Tensor,
        grad_gate: &Tensor,
        grad_up: &Tensor,
    ) -> Result<()> {
        self.timed(Family::Elementwise, 0, || {
            self.inner
                .swiglu_backward(gate, up, grad_out, grad_gate, grad_up)
        })
    }
    fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        let AttentionInputs { q, k, v, .. } = inputs;
        let flops = attention_flops(q, v, k, opts.causal, false);
        self.timed(Family::Attention, flops, || {
            self.inner.attention(inputs, opts, out, lse)
        })
    }
    fn attention_backward(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
        grads: AttentionGrads<'_>,
    ) -> Result<()> {
        let AttentionInputs { q, k, v, .. } = inputs;
        let flops = attention_flops(q, v, k, opts.causal, true);
        self.timed(Family::Attention, flops, || {
            self.inner
                .attention_backward(inputs, opts, output_grads, grads)
        })
    }
    fn adamw(
        &self,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamW,
    ) -> Result<()> {
        self.timed(Family::Optimizer, 0, || {
            self.inner.adamw(param, grad, m, v, hp)
        })
    }
    fn sum_squares(&self, tensors: &[&Tensor]) -> Result<f64> {
        self.timed(Family::Optimizer, 0, || self.inner.sum_squares(tensors))
    }
    fn fused_elementwise(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
        out: &Tensor,
    ) -> Result<()> {
        self.timed(Family::Elementwise, 0, || {
            self.inner.fused_elementwise(program, inputs, out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::Ops;

    #[test]
    fn matmul_time_and_flops_land_in_the_matmul_family_only() {
        let profiled = Arc::new(Profiled::new(Arc::new(CpuBackend)));
        let ops = Ops::new(profiled.as_ref());
        let a = Tensor::from_vec(vec![1.0f32; 2 * 3 * 4], [2, 3, 4]).unwrap();
        let b = Tensor::from_vec(vec![1.0f32; 2 * 4 * 5], [2, 4, 5]).unwrap();
        let out = ops.matmul(&a, &b).unwrap();
        assert_eq!(out.to_f64_vec()[0], 4.0);
        let totals = profiled.totals();
        let matmul = totals.iter().find(|(f, _)| *f == Family::Matmul).unwrap().1;
        assert_eq!(
            (matmul.calls, matmul.flops),
            (1, 2.0 * 2.0 * 3.0 * 4.0 * 5.0)
        );
        let others: u64 = totals
            .iter()
            .filter(|(f, _)| !matches!(f, Family::Matmul | Family::Copies))
            .map(|(_, t)| t.calls)
            .sum();
        assert_eq!(others, 0);
        profiled.reset();
        assert!(profiled.totals().iter().all(|(_, t)| t.calls == 0));
    }

    #[test]
    fn causal_attention_counts_half_the_scores_and_backward_two_and_a_half_times_forward() {
        let q = Tensor::zeros(DType::F32, Shape::new(vec![2, 3, 8, 4])).unwrap();
        let v = Tensor::zeros(DType::F32, Shape::new(vec![2, 3, 8, 6])).unwrap();
        let full = attention_flops(&q, &v, &q, false, false);
        assert_eq!(full, 2 * 6 * 8 * 8 * (4 + 6));
        assert_eq!(attention_flops(&q, &v, &q, true, false), full / 2);
        assert_eq!(attention_flops(&q, &v, &q, true, true), full / 2 * 5 / 2);
    }
}
