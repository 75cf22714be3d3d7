//! Validation for the composite ops. Inputs that are not contiguous are copied first
//! (attention only needs a contiguous last dimension), so fused kernels can assume
//! row-major rows.
use super::{
    check_contiguous, check_dims, check_dtype, check_float, check_no_overlap, check_out, Ops,
};
use crate::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, LayerNormGrads,
    NormStats,
};
use crate::{Error, Result};
use luoshu_tensor::{DType, Tensor};

fn last_dim(op: &'static str, x: &Tensor) -> Result<usize> {
    x.dims()
        .last()
        .copied()
        .ok_or_else(|| Error::invalid(op, "needs a tensor of rank >= 1, got a scalar"))
}

fn rows_dims(x: &Tensor) -> Vec<usize> {
    x.dims()[..x.rank() - 1].to_vec()
}

/// Attention inputs copied where the kernels need it (see `Ops::attention_kernel_inputs`).
struct KernelInputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    segments: Option<Tensor>,
}

impl KernelInputs {
    fn view(&self) -> AttentionInputs<'_> {
        AttentionInputs::new(&self.q, &self.k, &self.v).with_segments(self.segments.as_ref())
    }
}

impl Ops<'_> {
    /// Softmax over the last dimension of float `x` into `out` (contiguous, `x`'s shape and
    /// dtype, not overlapping `x`).
    pub fn softmax_into(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        check_float("softmax", x)?;
        last_dim("softmax", x)?;
        check_out("softmax", "out", out, x.dtype(), x.dims())?;
        check_no_overlap("softmax", "out", out, &[x])?;
        self.backend.softmax(&self.contiguous(x)?, out)
    }

    /// Softmax over the last dimension in a new tensor.
    pub fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.alloc(x.dtype(), x.dims())?;
        self.softmax_into(x, &out)?;
        Ok(out)
    }

    /// Log-softmax over the last dimension of float `x` into `out` (contiguous, `x`'s shape and
    /// dtype, not overlapping `x`).
    pub fn log_softmax_into(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        check_float("log_softmax", x)?;
        last_dim("log_softmax", x)?;
        check_out("log_softmax", "out", out, x.dtype(), x.dims())?;
        check_no_overlap("log_softmax", "out", out, &[x])?;
        self.backend.log_softmax(&self.contiguous(x)?, out)
    }

    /// Log-softmax over the last dimension in a new tensor.
    pub fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.alloc(x.dtype(), x.dims())?;
        self.log_softmax_into(x, &out)?;
        Ok(out)
    }

    fn check_cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
    ) -> Result<()> {
        check_float("cross_entropy", logits)?;
        check_dtype("cross_entropy", targets, DType::I64)?;
        if logits.rank() != 2 || targets.dims() != [logits.dims()[0]] {
            return Err(Error::invalid(
                "cross_entropy",
                format!(
                    "expects logits [n, vocab] and targets [n], got {:?} and {:?}",
                    logits.dims(),
                    targets.dims()
                ),
            ));
        }
        let vocab = logits.dims()[1] as i64;
        if let Some(&bad) = targets
            .to_vec::<i64>()?
            .iter()
            .find(|&&t| t != ignore_index && !(0..vocab).contains(&t))
        {
            return Err(luoshu_tensor::Error::IndexOutOfRange {
                op: "cross_entropy",
                index: bad,
                dim: 1,
                size: vocab as usize,
            }
            .into());
        }
        Ok(())
    }

    /// Per-row losses and log-sum-exps (both f32 `[n]`).
    pub fn cross_entropy_into(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        losses: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        self.check_cross_entropy(logits, targets, ignore_index)?;
        let n = [logits.dims()[0]];
        check_out("cross_entropy", "losses", losses, DType::F32, &n)?;
        check_out("cross_entropy", "lse", lse, DType::F32, &n)?;
        check_no_overlap("cross_entropy", "losses", losses, &[logits, targets, lse])?;
        check_no_overlap("cross_entropy", "lse", lse, &[logits, targets])?;
        self.backend.cross_entropy(
            &self.contiguous(logits)?,
            &self.contiguous(targets)?,
            ignore_index,
            losses,
            lse,
        )
    }

    /// Per-row cross-entropy of `logits [n, vocab]` against `I64` `targets [n]`: `(losses, lse)`,
    /// both f32 `[n]`; rows whose target is `ignore_index` lose 0. A target outside
    /// `0..vocab` (other than `ignore_index`) is an error.
    pub fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
    ) -> Result<(Tensor, Tensor)> {
        self.check_cross_entropy(logits, targets, ignore_index)?;
        let n = [logits.dims()[0]];
        let (losses, lse) = (self.alloc(DType::F32, &n)?, self.alloc(DType::F32, &n)?);
        self.cross_entropy_into(logits, targets, ignore_index, &losses, &lse)?;
        Ok((losses, lse))
    }

    /// Writes `grad_logits` (`logits`' shape and dtype) from the f32 `lse` and `grad_losses`
    /// (`[n]`) of [`Ops::cross_entropy`]; ignored rows get zero gradient.
    pub fn cross_entropy_backward_into(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        grad_losses: &Tensor,
        ignore_index: i64,
        grad_logits: &Tensor,
    ) -> Result<()> {
        self.check_cross_entropy(logits, targets, ignore_index)?;
        let n = [logits.dims()[0]];
        for (t, _) in [(lse, "lse"), (grad_losses, "grad_losses")] {
            check_dtype("cross_entropy_backward", t, DType::F32)?;
            check_dims("cross_entropy_backward", t, &n)?;
        }
        check_out(
            "cross_entropy_backward",
            "grad_logits",
            grad_logits,
            logits.dtype(),
            logits.dims(),
        )?;
        check_no_overlap(
            "cross_entropy_backward",
            "grad_logits",
            grad_logits,
            &[logits, targets, lse, grad_losses],
        )?;
        self.backend.cross_entropy_backward(
            &self.contiguous(logits)?,
            &self.contiguous(targets)?,
            &self.contiguous(lse)?,
            &self.contiguous(grad_losses)?,
            ignore_index,
            grad_logits,
        )
    }

    /// [`Ops::cross_entropy_backward_into`] into a new tensor.
    pub fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        grad_losses: &Tensor,
        ignore_index: i64,
    ) -> Result<Tensor> {
        let g = self.alloc(logits.dtype(), logits.dims())?;
        self.cross_entropy_backward_into(logits, targets, lse, grad_losses, ignore_index, &g)?;
        Ok(g)
    }

    fn check_norm(&self, op: &'static str, x: &Tensor, params: &[&Tensor]) -> Result<usize> {
        check_float(op, x)?;
        let d = last_dim(op, x)?;
        for p in params {
            check_float(op, p)?;
            check_dims(op, p, &[d])?;
        }
        Ok(d)
    }

    /// RMS norm over the last dimension (see [`crate::Backend::rms_norm`]): writes `out` (`x`'s
    /// shape and dtype) and `rstd` (f32, `x`'s dims without the last); `weight` is `[d]`.
    pub fn rms_norm_into(
        &self,
        x: &Tensor,
        weight: &Tensor,
        eps: f32,
        out: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        self.check_norm("rms_norm", x, &[weight])?;
        check_out("rms_norm", "out", out, x.dtype(), x.dims())?;
        check_out("rms_norm", "rstd", rstd, DType::F32, &rows_dims(x))?;
        check_no_overlap("rms_norm", "out", out, &[x, weight, rstd])?;
        check_no_overlap("rms_norm", "rstd", rstd, &[x, weight])?;
        self.backend.rms_norm(
            &self.contiguous(x)?,
            &self.contiguous(weight)?,
            eps,
            out,
            rstd,
        )
    }

    /// `(out, rstd)`.
    pub fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
        self.check_norm("rms_norm", x, &[weight])?;
        let out = self.alloc(x.dtype(), x.dims())?;
        let rstd = self.alloc(DType::F32, &rows_dims(x))?;
        self.rms_norm_into(x, weight, eps, &out, &rstd)?;
        Ok((out, rstd))
    }

    /// Writes `grad_x` and `grad_weight`.
    pub fn rms_norm_backward_into(
        &self,
        x: &Tensor,
        weight: &Tensor,
        rstd: &Tensor,
        grad_out: &Tensor,
        grad_x: &Tensor,
        grad_weight: &Tensor,
    ) -> Result<()> {
        const OP: &str = "rms_norm_backward";
        self.check_norm(OP, x, &[weight])?;
        check_dtype(OP, rstd, DType::F32)?;
        check_dims(OP, rstd, &rows_dims(x))?;
        check_dtype(OP, grad_out, x.dtype())?;
        check_dims(OP, grad_out, x.dims())?;
        check_out(OP, "grad_x", grad_x, x.dtype(), x.dims())?;
        check_out(
            OP,
            "grad_weight",
            grad_weight,
            weight.dtype(),
            weight.dims(),
        )?;
        let inputs = [x, weight, rstd, grad_out];
        check_no_overlap(
            OP,
            "grad_x",
            grad_x,
            &[&inputs[..], &[grad_weight]].concat(),
        )?;
        check_no_overlap(OP, "grad_weight", grad_weight, &inputs)?;
        self.backend.rms_norm_backward(
            &self.contiguous(x)?,
            &self.contiguous(weight)?,
            &self.contiguous(rstd)?,
            &self.contiguous(grad_out)?,
            grad_x,
            grad_weight,
        )
    }

    /// `(grad_x, grad_weight)`.
    pub fn rms_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        rstd: &Tensor,
        grad_out: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.check_norm("rms_norm_backward", x, &[weight])?;
        let gx = self.alloc(x.dtype(), x.dims())?;
        let gw = self.alloc(weight.dtype(), weight.dims())?;
        self.rms_norm_backward_into(x, weight, rstd, grad_out, &gx, &gw)?;
        Ok((gx, gw))
    }

    /// Writes `out` and the statistics `mean` and `rstd`.
    pub fn layer_norm_into(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        out: &Tensor,
        stats: NormStats<'_>,
    ) -> Result<()> {
        const OP: &str = "layer_norm";
        let NormStats { mean, rstd } = stats;
        self.check_norm(OP, x, &[weight, bias])?;
        check_out(OP, "out", out, x.dtype(), x.dims())?;
        check_out(OP, "mean", mean, DType::F32, &rows_dims(x))?;
        check_out(OP, "rstd", rstd, DType::F32, &rows_dims(x))?;
        check_no_overlap(OP, "out", out, &[x, weight, bias, mean, rstd])?;
        check_no_overlap(OP, "mean", mean, &[x, weight, bias, rstd])?;
        check_no_overlap(OP, "rstd", rstd, &[x, weight, bias])?;
        self.backend.layer_norm(
            &self.contiguous(x)?,
            &self.contiguous(weight)?,
            &self.contiguous(bias)?,
            eps,
            out,
            stats,
        )
    }

    /// `(out, mean, rstd)`.
    pub fn layer_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.check_norm("layer_norm", x, &[weight, bias])?;
        let out = self.alloc(x.dtype(), x.dims())?;
        let mean = self.alloc(DType::F32, &rows_dims(x))?;
        let rstd = self.alloc(DType::F32, &rows_dims(x))?;
        let stats = NormStats {
            mean: &mean,
            rstd: &rstd,
        };
        self.layer_norm_into(x, weight, bias, eps, &out, stats)?;
        Ok((out, mean, rstd))
    }

    /// Writes the gradients for `x`, `weight` and `bias`.
    pub fn layer_norm_backward_into(
        &self,
        x: &Tensor,
        weight: &Tensor,
        stats: NormStats<'_>,
        grad_out: &Tensor,
        grads: LayerNormGrads<'_>,
    ) -> Result<()> {
        const OP: &str = "layer_norm_backward";
        let NormStats { mean, rstd } = stats;
        let LayerNormGrads {
            x: grad_x,
            weight: grad_weight,
            bias: grad_bias,
        } = grads;
        self.check_norm(OP, x, &[weight])?;
        for s in [mean, rstd] {
            check_dtype(OP, s, DType::F32)?;
            check_dims(OP, s, &rows_dims(x))?;
        }
        check_dtype(OP, grad_out, x.dtype())?;
        check_dims(OP, grad_out, x.dims())?;
        check_out(OP, "grad_x", grad_x, x.dtype(), x.dims())?;
        check_out(
            OP,
            "grad_weight",
            grad_weight,
            weight.dtype(),
            weight.dims(),
        )?;
        check_out(OP, "grad_bias", grad_bias, weight.dtype(), weight.dims())?;
        let inputs = [x, weight, mean, rstd, grad_out];
        check_no_overlap(
            OP,
            "grad_x",
            grad_x,
            &[&inputs[..], &[grad_weight, grad_bias]].concat(),
        )?;
        check_no_overlap(
            OP,
            "grad_weight",
            grad_weight,
            &[&inputs[..], &[grad_bias]].concat(),
        )?;
        check_no_overlap(OP, "grad_bias", grad_bias, &inputs)?;
        let (mean, rstd) = (self.contiguous(mean)?, self.contiguous(rstd)?);
        self.backend.layer_norm_backward(
            &self.contiguous(x)?,
            &self.contiguous(weight)?,
            NormStats {
                mean: &mean,
                rstd: &rstd,
            },
            &self.contiguous(grad_out)?,
            grads,
        )
    }

    /// `(grad_x, grad_weight, grad_bias)`.
    pub fn layer_norm_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        grad_out: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.check_norm("layer_norm_backward", x, &[weight])?;
        let gx = self.alloc(x.dtype(), x.dims())?;
        let gw = self.alloc(weight.dtype(), weight.dims())?;
        let gb = self.alloc(weight.dtype(), weight.dims())?;
        let grads = LayerNormGrads {
            x: &gx,
            weight: &gw,
            bias: &gb,
        };
        self.layer_norm_backward_into(x, weight, NormStats { mean, rstd }, grad_out, grads)?;
        Ok((gx, gw, gb))
    }

    /// Rotary embedding of `x [batch, seq, heads, head_dim]` (even `head_dim`) with f32 tables
    /// `cos`, `sin` of shape `[seq, head_dim / 2]` (see [`crate::Backend::rope`]); `inverse`
    /// rotates back, which is the backward.
    pub fn rope_into(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        inverse: bool,
        out: &Tensor,
    ) -> Result<()> {
        check_float("rope", x)?;
        if x.rank() != 4 || !x.dims()[3].is_multiple_of(2) {
            return Err(Error::invalid(
                "rope",
                format!(
                    "expects x [batch, seq, heads, even head_dim], got {:?}",
                    x.dims()
                ),
            ));
        }
        let table = [x.dims()[1], x.dims()[3] / 2];
        for t in [cos, sin] {
            check_dtype("rope", t, DType::F32)?;
            check_dims("rope", t, &table)?;
        }
        check_out("rope", "out", out, x.dtype(), x.dims())?;
        check_no_overlap("rope", "out", out, &[x, cos, sin])?;
        self.backend.rope(
            &self.contiguous(x)?,
            &self.contiguous(cos)?,
            &self.contiguous(sin)?,
            inverse,
            out,
        )
    }

    /// [`Ops::rope_into`] into a new tensor.
    pub fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, inverse: bool) -> Result<Tensor> {
        let out = self.alloc(x.dtype(), x.dims())?;
        self.rope_into(x, cos, sin, inverse, &out)?;
        Ok(out)
    }

    /// `out = silu(gate) * up`; `gate`, `up` and `out` share one float dtype and shape.
    pub fn swiglu_into(&self, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
        check_float("swiglu", gate)?;
        check_dtype("swiglu", up, gate.dtype())?;
        check_dims("swiglu", up, gate.dims())?;
        check_out("swiglu", "out", out, gate.dtype(), gate.dims())?;
        check_no_overlap("swiglu", "out", out, &[gate, up])?;
        self.backend
            .swiglu(&self.contiguous(gate)?, &self.contiguous(up)?, out)
    }

    /// `silu(gate) * up` in a new tensor.
    pub fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        let out = self.alloc(gate.dtype(), gate.dims())?;
        self.swiglu_into(gate, up, &out)?;
        Ok(out)
    }

    /// Writes `grad_gate` and `grad_up`.
    pub fn swiglu_backward_into(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad_out: &Tensor,
        grad_gate: &Tensor,
        grad_up: &Tensor,
    ) -> Result<()> {
        const OP: &str = "swiglu_backward";
        check_float(OP, gate)?;
        for t in [up, grad_out] {
            check_dtype(OP, t, gate.dtype())?;
            check_dims(OP, t, gate.dims())?;
        }
        check_out(OP, "grad_gate", grad_gate, gate.dtype(), gate.dims())?;
        check_out(OP, "grad_up", grad_up, gate.dtype(), gate.dims())?;
        check_no_overlap(OP, "grad_gate", grad_gate, &[gate, up, grad_out, grad_up])?;
        check_no_overlap(OP, "grad_up", grad_up, &[gate, up, grad_out])?;
        self.backend.swiglu_backward(
            &self.contiguous(gate)?,
            &self.contiguous(up)?,
            &self.contiguous(grad_out)?,
            grad_gate,
            grad_up,
        )
    }

    /// `(grad_gate, grad_up)`.
    pub fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad_out: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        check_float("swiglu_backward", gate)?;
        let gg = self.alloc(gate.dtype(), gate.dims())?;
        let gu = self.alloc(gate.dtype(), gate.dims())?;
        self.swiglu_backward_into(gate, up, grad_out, &gg, &gu)?;
        Ok((gg, gu))
    }

    /// Shape checks for attention; returns `(out dims, lse dims)`.
    fn check_attention(&self, inputs: AttentionInputs<'_>) -> Result<(Vec<usize>, Vec<usize>)> {
        let AttentionInputs { q, k, v, segments } = inputs;
        check_float("attention", q)?;
        check_dtype("attention", k, q.dtype())?;
        check_dtype("attention", v, q.dtype())?;
        let bad = || {
            Error::invalid(
                "attention",
                format!(
                    "expects q [b, hq, sq, d], k [b, hkv, sk, d], v [b, hkv, sk, dv] with hq % hkv == 0; got {:?}, {:?}, {:?}",
                    q.dims(),
                    k.dims(),
                    v.dims()
                ),
            )
        };
        if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
            return Err(bad());
        }
        let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
        let ok = qd[0] == kd[0]
            && kd[0] == vd[0]
            && kd[1] == vd[1]
            && kd[2] == vd[2]
            && qd[3] == kd[3]
            && kd[1] > 0
            && qd[1].is_multiple_of(kd[1]);
        if !ok {
            return Err(bad());
        }
        if let Some(segments) = segments {
            check_dtype("attention", segments, DType::I64)?;
            let keys_only = qd[2] <= kd[2] && segments.dims() == [qd[0], kd[2]];
            if !keys_only && segments.dims() != [qd[0], kd[2] + qd[2]] {
                return Err(Error::invalid(
                    "attention",
                    format!(
                        "segments need dims [b, sk] (with sq <= sk) or [b, sk + sq]; got segments {:?} for q {:?}, k {:?}",
                        segments.dims(),
                        qd,
                        kd
                    ),
                ));
            }
        }
        Ok((vec![qd[0], qd[1], qd[2], vd[3]], qd[..3].to_vec()))
    }

    /// `inputs` in the form the kernels take: rows of `q`, `k`, `v` contiguous, segments
    /// contiguous.
    fn attention_kernel_inputs(&self, inputs: AttentionInputs<'_>) -> Result<KernelInputs> {
        Ok(KernelInputs {
            q: self.rows_contiguous(inputs.q)?,
            k: self.rows_contiguous(inputs.k)?,
            v: self.rows_contiguous(inputs.v)?,
            segments: inputs.segments.map(|s| self.contiguous(s)).transpose()?,
        })
    }

    /// A view whose last dimension is contiguous (copied if it is not).
    fn rows_contiguous(&self, x: &Tensor) -> Result<Tensor> {
        if x.layout().strides().last().is_none_or(|&s| s == 1) {
            Ok(x.clone())
        } else {
            self.contiguous(x)
        }
    }

    /// Scaled dot-product attention into `out` and `lse` (see [`crate::Backend::attention`]).
    pub fn attention_into(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        let (out_dims, lse_dims) = self.check_attention(inputs)?;
        let AttentionInputs { q, k, v, segments } = inputs;
        check_out("attention", "out", out, q.dtype(), &out_dims)?;
        check_out("attention", "lse", lse, DType::F32, &lse_dims)?;
        let read = [&[q, k, v][..], segments.as_slice()].concat();
        check_no_overlap("attention", "out", out, &[&read[..], &[lse]].concat())?;
        check_no_overlap("attention", "lse", lse, &read)?;
        let kernel_inputs = self.attention_kernel_inputs(inputs)?;
        self.backend.attention(kernel_inputs.view(), opts, out, lse)
    }

    /// `(out, lse)`.
    pub fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
    ) -> Result<(Tensor, Tensor)> {
        let (out_dims, lse_dims) = self.check_attention(inputs)?;
        let out = self.alloc(inputs.q.dtype(), &out_dims)?;
        let lse = self.alloc(DType::F32, &lse_dims)?;
        self.attention_into(inputs, opts, &out, &lse)?;
        Ok((out, lse))
    }

    /// Writes `grads` (each with its input's shape) from the gradients of `out` and, when the
    /// loss depends on it, of `lse`.
    pub fn attention_backward_into(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
        grads: AttentionGrads<'_>,
    ) -> Result<()> {
        const OP: &str = "attention_backward";
        let (out_dims, lse_dims) = self.check_attention(inputs)?;
        let AttentionInputs { q, k, v, segments } = inputs;
        let AttentionOutputGrads {
            out,
            lse,
            grad_out,
            grad_lse,
        } = output_grads;
        let AttentionGrads {
            q: grad_q,
            k: grad_k,
            v: grad_v,
        } = grads;
        for t in [out, grad_out] {
            check_dtype(OP, t, q.dtype())?;
            check_dims(OP, t, &out_dims)?;
        }
        for t in [lse].into_iter().chain(grad_lse) {
            check_dtype(OP, t, DType::F32)?;
            check_dims(OP, t, &lse_dims)?;
        }
        check_out(OP, "grad_q", grad_q, q.dtype(), q.dims())?;
        check_out(OP, "grad_k", grad_k, k.dtype(), k.dims())?;
        check_out(OP, "grad_v", grad_v, v.dtype(), v.dims())?;
        let read = [
            &[q, k, v, out, lse, grad_out][..],
            segments.as_slice(),
            grad_lse.as_slice(),
        ]
        .concat();
        check_no_overlap(
            OP,
            "grad_q",
            grad_q,
            &[&read[..], &[grad_k, grad_v]].concat(),
        )?;
        check_no_overlap(OP, "grad_k", grad_k, &[&read[..], &[grad_v]].concat())?;
        check_no_overlap(OP, "grad_v", grad_v, &read)?;
        let kernel_inputs = self.attention_kernel_inputs(inputs)?;
        let (out, lse, grad_out) = (
            self.rows_contiguous(out)?,
            self.contiguous(lse)?,
            self.rows_contiguous(grad_out)?,
        );
        let grad_lse = grad_lse.map(|g| self.contiguous(g)).transpose()?;
        self.backend.attention_backward(
            kernel_inputs.view(),
            opts,
            AttentionOutputGrads::new(&out, &lse, &grad_out).with_grad_lse(grad_lse.as_ref()),
            grads,
        )
    }

    /// `(grad_q, grad_k, grad_v)`.
    pub fn attention_backward(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.check_attention(inputs)?;
        let AttentionInputs { q, k, v, .. } = inputs;
        let gq = self.alloc(q.dtype(), q.dims())?;
        let gk = self.alloc(k.dtype(), k.dims())?;
        let gv = self.alloc(v.dtype(), v.dims())?;
        let grads = AttentionGrads {
            q: &gq,
            k: &gk,
            v: &gv,
        };
        self.attention_backward_into(inputs, opts, output_grads, grads)?;
        Ok((gq, gk, gv))
    }

    /// One AdamW step in place on `param`, `m`, `v`.
    pub fn adamw(
        &self,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamW,
    ) -> Result<()> {
        for (t, name) in [(param, "param"), (m, "m"), (v, "v")] {
            check_contiguous("adamw", name, t)?;
            check_dtype("adamw", t, DType::F32)?;
            check_dims("adamw", t, param.dims())?;
        }
        check_float("adamw", grad)?;
        check_dims("adamw", grad, param.dims())?;
        if param.overlaps(m) || param.overlaps(v) || m.overlaps(v) {
            return Err(Error::Aliasing {
                op: "adamw",
                arg: "param/m/v",
            });
        }
        check_no_overlap("adamw", "param", param, &[grad])?;
        check_no_overlap("adamw", "m", m, &[grad])?;
        check_no_overlap("adamw", "v", v, &[grad])?;
        if hp.step == 0 {
            return Err(Error::invalid("adamw", "step numbers start at 1"));
        }
        self.backend.adamw(param, &self.contiguous(grad)?, m, v, hp)
    }

    /// Sum of squares of every element of every tensor (for the global gradient norm).
    pub fn sum_squares(&self, tensors: &[&Tensor]) -> Result<f64> {
        for t in tensors {
            check_float("sum_squares", t)?;
        }
        let contiguous = tensors
            .iter()
            .map(|t| self.contiguous(t))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = contiguous.iter().collect();
        self.backend.sum_squares(&refs)
    }
}
