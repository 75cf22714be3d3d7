//! Composites written from primitives with the `Graph` builder, the way a model builder
//! that does not use the fused ops would write them: the shapes `fuse_patterns` matches.
//! Shared by `tests/passes.rs` and `examples/graph_stats.rs`.
#![allow(dead_code)] // each user needs a different part

use luoshu_backend::ops::CompareOp;
use luoshu_graph::{Dim, Graph, Result, Value};
use luoshu_tensor::DType;

fn last(g: &Graph, x: Value) -> usize {
    g.shape_of(x).len() - 1
}

/// `exp(x - max) / sum(exp(x - max))` over the last dim.
pub fn softmax(g: &mut Graph, x: Value) -> Result<Value> {
    let ax = last(g, x);
    let m = g.max(x, &[ax], true)?;
    let s = g.sub(x, m)?;
    let e = g.exp(s)?;
    let z = g.sum(e, &[ax], true)?;
    g.div(e, z)
}

/// `(x - max) - log(sum(exp(x - max)))` over the last dim.
pub fn log_softmax(g: &mut Graph, x: Value) -> Result<Value> {
    let ax = last(g, x);
    let m = g.max(x, &[ax], true)?;
    let s = g.sub(x, m)?;
    let e = g.exp(s)?;
    let z = g.sum(e, &[ax], true)?;
    let l = g.log(z)?;
    g.sub(s, l)
}

/// `x * rsqrt(mean(x²) + eps) * w` over the last dim.
pub fn rms_norm(g: &mut Graph, x: Value, w: Value, eps: f64) -> Result<Value> {
    let ax = last(g, x);
    let sq = g.mul(x, x)?;
    let ms = g.mean(sq, &[ax], true)?;
    let a = g.add_scalar(ms, eps)?;
    let r = g.rsqrt(a)?;
    let n = g.mul(x, r)?;
    g.mul(n, w)
}

/// Per-row losses `-log_softmax(logits)[i, targets[i]]` of `logits [n, v]`, `targets [n]`.
pub fn cross_entropy(g: &mut Graph, logits: Value, targets: Value) -> Result<Value> {
    let n = g.shape_of(targets)[0].clone();
    let ls = log_softmax(g, logits)?;
    let t2 = g.reshape(targets, &[n.clone(), Dim::fixed(1)])?;
    let picked = g.gather(ls, 1, t2)?;
    let flat = g.reshape(picked, &[n])?;
    g.neg(flat)
}

/// `where(rows >= cols, 0, -inf)` for `seq` positions (f32 `[seq, seq]`).
pub fn causal_mask(g: &mut Graph, seq: usize) -> Result<Value> {
    let cols = g.arange(0.0, 1.0, Dim::fixed(seq), DType::I64)?;
    let rows = g.reshape(cols, &[Dim::fixed(seq), Dim::fixed(1)])?;
    let keep = g.compare(CompareOp::Ge, rows, cols)?;
    let zero = g.scalar(0.0, DType::F32)?;
    let ninf = g.scalar(f64::NEG_INFINITY, DType::F32)?;
    g.select(keep, zero, ninf)
}

/// `softmax(q · kᵀ · scale [+ causal mask]) · v` for `[b, h, s, d]` operands.
pub fn attention(g: &mut Graph, q: Value, k: Value, v: Value, causal: bool) -> Result<Value> {
    let shape = g.shape_of(q);
    let d = shape[3].as_fixed().unwrap_or(1);
    let seq = shape[2].as_fixed().unwrap_or(1);
    let kt = g.transpose_last(k)?;
    let s = g.matmul(q, kt)?;
    let mut scores = g.mul_scalar(s, 1.0 / (d as f64).sqrt())?;
    if causal {
        let mask = causal_mask(g, seq)?;
        scores = g.plus(scores, mask)?;
    }
    let p = softmax(g, scores)?;
    g.matmul(p, v)
}
