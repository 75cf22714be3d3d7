//! Scaled dot-product attention with grouped-query heads, an end-aligned causal mask and
//! optional segment ids (packed documents see only themselves), forward and backward. The score matrix of every (batch, query head) is materialised:
//! this is the plain oracle the tiled fused kernels are checked against.
use super::{row_exp, scalar, stat_column, upcast, write};
use crate::ops::{
    AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, CompareOp, ReduceOp,
    UnaryOp,
};
use crate::{Backend, Ops, Result};
use luoshu_tensor::{DType, Tensor};

/// `t [b, hkv, s, x]` with every kv head repeated for its `group` query heads:
/// `[b, hkv · group, s, x]` (query head `h` reads kv head `h / group`).
fn expand_kv(ops: &Ops, t: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(t.clone());
    }
    let (b, hkv, s, x) = (t.dims()[0], t.dims()[1], t.dims()[2], t.dims()[3]);
    let repeated = t.unsqueeze(2)?.broadcast_to([b, hkv, group, s, x])?;
    ops.reshape(&repeated, &[b, hkv * group, s, x])
}

/// The inverse of [`expand_kv`] for gradients: sums the query heads of each group.
fn sum_groups(ops: &Ops, t: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(t.clone());
    }
    let (b, hq, s, x) = (t.dims()[0], t.dims()[1], t.dims()[2], t.dims()[3]);
    let grouped = ops.reshape(t, &[b, hq / group, group, s, x])?;
    ops.reduce(ReduceOp::Sum, &grouped, &[2], false)
}

/// `Bool [sq, sk]`, true where query `i` may see key `j`: `j <= i + sk - sq`.
fn causal_mask(ops: &Ops, sq: usize, sk: usize) -> Result<Tensor> {
    let last_visible = ops.arange(sk as f64 - sq as f64, 1.0, sq, DType::I64)?;
    let keys = ops.arange(0.0, 1.0, sk, DType::I64)?.reshape([1, sk])?;
    ops.compare(CompareOp::Le, &keys, &last_visible.reshape([sq, 1])?)
}

/// `Bool [b, 1, sq, sk]`, true where query `i` and key `j` of a row share a segment id:
/// the keys' ids are the first `sk` of `segments [b, n]`, the queries' the last `sq`
/// (`n = sk`: the queries sit at the last key positions; `n = sk + sq`: their own ids).
fn same_segment(ops: &Ops, segments: &Tensor, (sq, sk): (usize, usize)) -> Result<Tensor> {
    let (b, n) = (segments.dims()[0], segments.dims()[1]);
    let queries = ops.reshape(&segments.narrow(1, n - sq, sq)?, &[b, 1, sq, 1])?;
    let keys = ops.reshape(&segments.narrow(1, 0, sk)?, &[b, 1, 1, sk])?;
    ops.compare(CompareOp::Eq, &queries, &keys)
}

/// The visibility mask of one call: causal, same-segment, both (causal where the segments
/// agree), or `None` when every key is visible.
fn visibility(
    ops: &Ops,
    (sq, sk): (usize, usize),
    segments: Option<&Tensor>,
    causal: bool,
) -> Result<Option<Tensor>> {
    let causal = causal.then(|| causal_mask(ops, sq, sk)).transpose()?;
    let same = segments
        .map(|s| same_segment(ops, s, (sq, sk)))
        .transpose()?;
    match (causal, same) {
        (Some(causal), Some(same)) => {
            let hidden = scalar(ops, 0.0, DType::Bool)?;
            Ok(Some(ops.select(&causal, &same, &hidden)?))
        }
        (causal, same) => Ok(causal.or(same)),
    }
}

/// The operands of one attention call in the compute dtype, kv heads expanded.
struct Operands {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    group: usize,
    scale: Tensor,
    /// The causal and/or segment visibility mask, `None` when every key is visible.
    visible: Option<Tensor>,
}

impl Operands {
    fn new(ops: &Ops, inputs: AttentionInputs<'_>, opts: AttentionOpts) -> Result<Self> {
        let AttentionInputs { q, k, v, segments } = inputs;
        let group = q.dims()[1] / k.dims()[1];
        let q = upcast(ops, q)?;
        let (sq, sk) = (q.dims()[2], k.dims()[2]);
        Ok(Operands {
            k: expand_kv(ops, &upcast(ops, k)?, group)?,
            v: expand_kv(ops, &upcast(ops, v)?, group)?,
            scale: scalar(ops, opts.scale as f64, q.dtype())?,
            visible: visibility(ops, (sq, sk), segments, opts.causal)?,
            group,
            q,
        })
    }

    /// Unmasked scores `q · kᵀ · scale`, `[b, hq, sq, sk]`.
    fn scores(&self, ops: &Ops) -> Result<Tensor> {
        ops.mul(&ops.matmul(&self.q, &self.k.transpose(2, 3)?)?, &self.scale)
    }

    /// `values` where the mask shows the key, `hidden` elsewhere.
    fn mask(&self, ops: &Ops, values: Tensor, hidden: f64) -> Result<Tensor> {
        match &self.visible {
            Some(visible) => ops.select(visible, &values, &scalar(ops, hidden, values.dtype())?),
            None => Ok(values),
        }
    }
}

/// The decomposition of [`Backend::attention`] into primitives.
pub fn attention(
    b: &dyn Backend,
    inputs: AttentionInputs<'_>,
    opts: AttentionOpts,
    out: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = Operands::new(&ops, inputs, opts)?;
    let scores = x.mask(&ops, x.scores(&ops)?, f64::NEG_INFINITY)?;
    let rows = row_exp(&ops, &scores)?;
    write(&ops, &rows.lse, lse)?;
    // A fully masked row has sum 0 and all-zero exponentials: dividing by 1 instead
    // gives the zero output the contract asks for.
    let zero = scalar(&ops, 0.0, scores.dtype())?;
    let empty_row = ops.compare(CompareOp::Eq, &rows.sums, &zero)?;
    let sums = ops.select(&empty_row, &scalar(&ops, 1.0, scores.dtype())?, &rows.sums)?;
    let probs = ops.div(&rows.exps, &sums)?;
    write(&ops, &ops.matmul(&probs, &x.v)?, out)
}

/// `P = exp(S - lse)` (0 where masked), `dV = Pᵀ·dO`, `dP = dO·vᵀ`,
/// `D = rowsum(dO ∘ O) − dlse` (`∂lse/∂S = P`, so a gradient of `lse` only shifts `D`),
/// `dS = P ∘ (dP - D)`, `dQ = dS·k·scale`, `dK = dSᵀ·q·scale`; kv gradients are summed
/// over the query heads of each group.
pub fn attention_backward(
    b: &dyn Backend,
    inputs: AttentionInputs<'_>,
    opts: AttentionOpts,
    output_grads: AttentionOutputGrads<'_>,
    grads: AttentionGrads<'_>,
) -> Result<()> {
    let ops = Ops::new(b);
    let x = Operands::new(&ops, inputs, opts)?;
    let (o, d_o) = (
        upcast(&ops, output_grads.out)?,
        upcast(&ops, output_grads.grad_out)?,
    );
    let scores = x.scores(&ops)?;
    let lse = stat_column(&ops, output_grads.lse, &scores)?;
    // Masked entries (including whole rows with lse = -inf, where the exponent is NaN or
    // inf) are replaced by exact zeros.
    let exps = ops.unary(UnaryOp::Exp, &ops.sub(&scores, &lse)?)?;
    let probs = x.mask(&ops, exps, 0.0)?;

    let dv = ops.matmul(&probs.transpose(2, 3)?, &d_o)?;
    write(&ops, &sum_groups(&ops, &dv, x.group)?, grads.v)?;
    let dp = ops.matmul(&d_o, &x.v.transpose(2, 3)?)?;
    let mut row_dot = ops.reduce(ReduceOp::Sum, &ops.mul(&d_o, &o)?, &[3], true)?;
    if let Some(grad_lse) = output_grads.grad_lse {
        row_dot = ops.sub(&row_dot, &stat_column(&ops, grad_lse, &scores)?)?;
    }
    let ds = ops.mul(&ops.mul(&probs, &ops.sub(&dp, &row_dot)?)?, &x.scale)?;
    write(&ops, &ops.matmul(&ds, &x.k)?, grads.q)?;
    let dk = ops.matmul(&ds.transpose(2, 3)?, &x.q)?;
    write(&ops, &sum_groups(&ops, &dk, x.group)?, grads.k)
}
