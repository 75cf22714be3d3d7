//! The [`Backend`] trait: the kernels a device implements, primitives and composites.

use crate::composite;
use crate::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, BinaryOp,
    CompareOp, CompositeOp, ElementwiseProgram, LayerNormGrads, NormStats, RandomDist, ReduceOp,
    UnaryOp,
};
use crate::Result;
use luoshu_tensor::{DType, Shape, Tensor};

/// The operator interface a device implements (after DeepLink's DIOPI).
///
/// Methods are *kernels*: they write into output tensors the caller allocated (the memory
/// planner owns buffers, kernels never keep any). Call them through [`crate::Ops`], which
/// validates every argument first; a kernel may assume the preconditions documented here:
///
/// * every output is contiguous (its offset may be non-zero) and does not overlap any input,
///   except where an op says it is in place or may alias an input;
/// * inputs may have any strides, including zero strides from broadcasting;
/// * shapes and dtypes agree as documented per method.
///
/// A kernel must still return an error rather than read out of bounds when the error
/// depends on data (an index out of range).
///
/// The first block is the **required primitives**. The second block is the **composite
/// ops**; each has a default decomposition into primitives (module `composite`) that a
/// backend may replace with a fused kernel, listing it in [`Backend::native_composites`].
pub trait Backend: Send + Sync {
    /// Short name used in reports (`cpu`, `reference`, ...).
    fn name(&self) -> &'static str;

    /// `self` as a trait object, so default methods can hand the backend to decompositions.
    fn as_dyn(&self) -> &dyn Backend;

    /// Composite ops this backend implements with its own fused kernel.
    fn native_composites(&self) -> &'static [CompositeOp] {
        &[]
    }

    // ----- memory -----

    /// A zero-filled contiguous tensor in this backend's memory.
    fn alloc(&self, dtype: DType, shape: &Shape) -> Result<Tensor> {
        Ok(Tensor::zeros(dtype, shape.clone())?)
    }
    /// `dst = src` elementwise; same shape and dtype; `src` may be any view.
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()>;
    /// Every element of `out` set to `value` (converted like a numeric cast).
    fn fill(&self, value: f64, out: &Tensor) -> Result<()>;
    /// `out = x` converted to `out`'s dtype (floats round to nearest even, floats to
    /// integers truncate toward zero, anything to bool is `!= 0`); same shape.
    fn cast(&self, x: &Tensor, out: &Tensor) -> Result<()>;

    // ----- elementwise -----

    /// `out = op(x)`; same shape and dtype (floats; integers where
    /// [`UnaryOp::allows_integers`]). `out` may be the same region as a contiguous `x`.
    fn unary(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()>;
    /// `out = op(a, b)`; `a` and `b` already have `out`'s shape (broadcast by views) and
    /// dtype. `out` may be the same region as a contiguous `a` or `b`.
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()>;
    /// `out = op(a, b)` as `Bool`; `a`, `b` have `out`'s shape and one dtype.
    fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()>;
    /// `out = cond ? a : b`; `cond` is `Bool`; all have `out`'s shape; `a`, `b` `out`'s dtype.
    fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()>;

    // ----- reductions -----

    /// Reduce `x` over `axes` (sorted, unique, non-empty). `out` has `x`'s rank with the
    /// reduced axes of size 1, and `x`'s dtype. Floats accumulate in at least f32. The sum
    /// of nothing is 0; the mean of nothing is NaN; max/min of nothing is rejected by `Ops`.
    fn reduce(&self, op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()>;
    /// Index of the first maximum along `axis`; `out` is `I64` with `axis` of size 1.
    fn argmax(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()>;

    // ----- matmul -----

    /// Batched `out[..., m, n] = a[..., m, k] · b[..., k, n]`. Batch dims are equal (already
    /// broadcast). Transposed operands are expressed by strides. `a`, `b` and `out` share a
    /// float dtype; bf16/f16 accumulate in f32.
    fn matmul(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()>;

    // ----- indexing -----

    /// `out = x` with dimension `dim` replaced by `x[indices[i]]`; `indices` is rank-1 `I64`
    /// or `I32`. Errors on an index outside `0..x.dims()[dim]`.
    fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()>;
    /// In place: `dst[.., indices[i], ..] += src[.., i, ..]` along `dim` (the gradient of
    /// `index_select`); repeated indices accumulate.
    fn index_add(&self, dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()>;
    /// `out[i][j][k] = x[i][index[i][j][k]][k]` for `dim == 1` (PyTorch `gather`); `index`
    /// has `x`'s rank and `out`'s shape, and no dim larger than `x`'s except `dim`.
    fn gather(&self, x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()>;
    /// In place: `dst[i][index[i][j][k]][k] += src[i][j][k]` for `dim == 1` (PyTorch
    /// `scatter_add`, the gradient of `gather`).
    fn scatter_add(&self, dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()>;
    /// `out` = the inputs joined along `dim`; all inputs have `out`'s dtype and its dims
    /// except `dim`.
    fn concat(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()>;
    /// `out[i] = start + i * step` for a rank-1 `out` of any numeric dtype.
    fn arange(&self, start: f64, step: f64, out: &Tensor) -> Result<()>;

    // ----- random -----

    /// `out[i]` drawn from `dist` as a pure function of `(seed, stream, i)` through
    /// `luoshu_tensor::rng`, so every backend produces the same values.
    fn random(&self, dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()>;

    // ----- composite ops (default: decomposition into the primitives above) -----

    /// Softmax over the last dimension; `out` has `x`'s shape and dtype.
    fn softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        composite::softmax(self.as_dyn(), x, out)
    }
    /// Log-softmax over the last dimension.
    fn log_softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        composite::log_softmax(self.as_dyn(), x, out)
    }
    /// Per-row cross-entropy of `logits [n, v]` against `targets [n]` (`I64`):
    /// `losses[i] = logsumexp(logits[i]) - logits[i, targets[i]]` (f32), 0 where
    /// `targets[i] == ignore_index`; `lse [n]` (f32) keeps the log-sum-exp for backward.
    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        losses: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        composite::cross_entropy(self.as_dyn(), logits, targets, ignore_index, losses, lse)
    }
    /// `grad_logits[i] = (softmax(logits[i]) - onehot(targets[i])) * grad_losses[i]`, zero
    /// rows where ignored; `grad_logits` has `logits`' shape and dtype.
    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        grad_losses: &Tensor,
        ignore_index: i64,
        grad_logits: &Tensor,
    ) -> Result<()> {
        composite::cross_entropy_backward(
            self.as_dyn(),
            logits,
            targets,
            lse,
            grad_losses,
            ignore_index,
            grad_logits,
        )
    }
    /// `out = x * rsqrt(mean(x², last dim) + eps) * weight`; `rstd` (f32, `x` without its
    /// last dim) keeps the reciprocal RMS for backward.
    fn rms_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        eps: f32,
        out: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        composite::rms_norm(self.as_dyn(), x, weight, eps, out, rstd)
    }
    /// Gradients of [`Backend::rms_norm`] for `x` and `weight`.
    fn rms_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        rstd: &Tensor,
        grad_out: &Tensor,
        grad_x: &Tensor,
        grad_weight: &Tensor,
    ) -> Result<()> {
        composite::rms_norm_backward(
            self.as_dyn(),
            x,
            weight,
            rstd,
            grad_out,
            grad_x,
            grad_weight,
        )
    }
    /// `out = (x - mean) * rstd * weight + bias` over the last dim; `mean` and `rstd` (f32)
    /// are kept for backward.
    fn layer_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        out: &Tensor,
        stats: NormStats<'_>,
    ) -> Result<()> {
        composite::layer_norm(self.as_dyn(), x, weight, bias, eps, out, stats)
    }
    /// Gradients of [`Backend::layer_norm`] for `x`, `weight` and `bias`.
    fn layer_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        stats: NormStats<'_>,
        grad_out: &Tensor,
        grads: LayerNormGrads<'_>,
    ) -> Result<()> {
        composite::layer_norm_backward(self.as_dyn(), x, weight, stats, grad_out, grads)
    }
    /// Rotary embedding of `x [batch, seq, heads, head_dim]` in the rotate-half convention:
    /// for `i < d/2`, `out[i] = x[i]·cos - x[i+d/2]·sin` and
    /// `out[i+d/2] = x[i+d/2]·cos + x[i]·sin`, with `cos`, `sin` of shape `[seq, d/2]` (f32).
    /// `inverse` rotates the other way, which is the backward of the forward rotation.
    fn rope(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        inverse: bool,
        out: &Tensor,
    ) -> Result<()> {
        composite::rope(self.as_dyn(), x, cos, sin, inverse, out)
    }
    /// `out = silu(gate) * up`.
    fn swiglu(&self, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
        composite::swiglu(self.as_dyn(), gate, up, out)
    }
    /// Gradients of [`Backend::swiglu`] for `gate` and `up`.
    fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad_out: &Tensor,
        grad_gate: &Tensor,
        grad_up: &Tensor,
    ) -> Result<()> {
        composite::swiglu_backward(self.as_dyn(), gate, up, grad_out, grad_gate, grad_up)
    }
    /// Scaled dot-product attention of `inputs`: `q [b, hq, sq, d]`, `k [b, hkv, sk, d]`,
    /// `v [b, hkv, sk, dv]` with `hq % hkv == 0` (grouped-query: query head `h` reads kv head
    /// `h / (hq / hkv)`); `out [b, hq, sq, dv]`; `lse [b, hq, sq]` (f32) is the log-sum-exp
    /// of each score row, kept for backward. Inputs may be any strided views whose last
    /// dimension is contiguous. A fully masked row gives zeros and `lse = -inf`.
    ///
    /// `segments` (packed rows): contiguous `i64` document ids, non-decreasing along each
    /// row, either `[b, sk]`, the keys' ids, with the queries at the last `sq` key positions
    /// (aligned at the end like the causal mask, so `sq < sk` is a chunk of queries against
    /// every earlier key), or `[b, sk + sq]`, the keys' ids followed by the queries' ids (a
    /// context-parallel ring pairs a chunk of queries with an earlier, non-adjacent chunk
    /// of keys). Queries see only keys of their own document (block-diagonal, and causal
    /// within the document when `opts.causal`, the mask still aligned at the end of the
    /// keys). A kernel returns an error for ids that decrease.
    fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        composite::attention(self.as_dyn(), inputs, opts, out, lse)
    }
    /// Gradients of [`Backend::attention`] for `q`, `k` and `v` (into `grads`, with their
    /// inputs' shapes) from `output_grads`: the forward's `out` and `lse`, the gradient of
    /// `out` and, when the loss also depends on `lse` (the log-sum-exp merge of partial
    /// attentions), `grad_lse` (contiguous f32, `lse`'s dims).
    fn attention_backward(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
        grads: AttentionGrads<'_>,
    ) -> Result<()> {
        composite::attention_backward(self.as_dyn(), inputs, opts, output_grads, grads)
    }
    /// One AdamW step **in place** on `param`, `m` and `v` (all contiguous f32, same shape;
    /// `grad` any float dtype of that shape):
    /// `m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;`
    /// `param -= lr (m̂ / (sqrt(v̂) + eps) + wd · param)` with bias-corrected `m̂`, `v̂`.
    fn adamw(
        &self,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamW,
    ) -> Result<()> {
        composite::adamw(self.as_dyn(), param, grad, m, v, hp)
    }
    /// Sum of squares of all elements of all tensors (in f64), for global-norm clipping.
    fn sum_squares(&self, tensors: &[&Tensor]) -> Result<f64> {
        composite::sum_squares(self.as_dyn(), tensors)
    }
    /// `out = program(inputs)` element by element, in one pass over memory. `Ops` has
    /// checked the program (see `ElementwiseProgram::register_dtypes`); the inputs have the
    /// program's input dtypes and are already broadcast to `out`'s shape (by views); `out`
    /// has the program's output dtype and may be the same region as a contiguous input of
    /// that dtype.
    fn fused_elementwise(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
        out: &Tensor,
    ) -> Result<()> {
        composite::fused_elementwise(self.as_dyn(), program, inputs, out)
    }
}
