//! Cases for attention (forward, backward, grouped-query, causal with a KV cache), the
//! AdamW step and the sum of squares used for gradient clipping.
use super::cases::{fresh, label, Dist, View};
use super::checker::Checker;
use super::compare::Class;
use super::gradcheck::{check_vjp, dot, oracle_verdict};
use super::primitives::FLOATS;
use crate::ops::{AdamW, AttentionOpts, CompositeOp};
use crate::Result;
use luoshu_tensor::{DType, Tensor};

pub fn check_all(c: &mut Checker<'_>) {
    c.composite(CompositeOp::Attention, attention);
    c.composite(CompositeOp::AttentionBackward, attention_backward);
    c.composite(CompositeOp::AdamW, adamw);
    c.composite(CompositeOp::SumSquares, sum_squares);
}

/// One attention problem: `q [b, hq, sq, d]`, `k [b, hkv, sk, d]`, `v [b, hkv, sk, dv]`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    b: usize,
    hq: usize,
    hkv: usize,
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
    causal: bool,
}

/// `[b, hq, hkv, sq, sk, d, dv]` and whether the mask is causal.
const fn shape(dims: [usize; 7], causal: bool) -> Shape {
    let [b, hq, hkv, sq, sk, d, dv] = dims;
    Shape {
        b,
        hq,
        hkv,
        sq,
        sk,
        d,
        dv,
        causal,
    }
}

/// Single positions, GQA, a KV cache (sq < sk), fully masked rows (causal with sq > sk, and
/// no keys at all), distinct value width.
const SHAPES: &[Shape] = &[
    shape([1, 1, 1, 1, 1, 4, 4], false),
    shape([2, 4, 2, 5, 5, 8, 8], true),
    shape([1, 4, 1, 3, 7, 8, 6], true),
    shape([2, 2, 2, 6, 6, 16, 16], false),
    shape([1, 2, 1, 5, 3, 4, 4], true),
    shape([1, 2, 2, 3, 0, 4, 4], false),
    shape([1, 3, 1, 0, 4, 4, 4], true),
];
const LARGE_SHAPES: &[Shape] = &[
    shape([1, 8, 2, 64, 64, 32, 32], true),
    shape([2, 4, 4, 33, 65, 16, 16], true),
];

impl Shape {
    fn opts(&self) -> AttentionOpts {
        AttentionOpts {
            scale: 1.0 / (self.d.max(1) as f32).sqrt(),
            causal: self.causal,
        }
    }

    fn name(&self, dtype: DType) -> String {
        let s = self;
        format!(
            "{dtype} b{} hq{} hkv{} sq{} sk{} d{} dv{}{}",
            s.b,
            s.hq,
            s.hkv,
            s.sq,
            s.sk,
            s.d,
            s.dv,
            if s.causal { " causal" } else { "" }
        )
    }

    /// `q` (a head-major view of a `[b, sq, hq, d]` buffer, as a model produces it), `k`
    /// (contiguous), `v` (at an offset) and an upstream gradient of the output.
    fn inputs(&self, c: &mut Checker<'_>, dtype: DType) -> Result<[Tensor; 4]> {
        let s = self;
        let dist = Dist::Uniform(-1.5, 1.5);
        let q = c
            .gen
            .tensor(dtype, &[s.b, s.sq, s.hq, s.d], dist)?
            .permute(&[0, 2, 1, 3])?;
        let k = c.gen.tensor(dtype, &[s.b, s.hkv, s.sk, s.d], dist)?;
        let v = c
            .gen
            .view(dtype, &[s.b, s.hkv, s.sk, s.dv], dist, View::Offset)?;
        let g = c
            .gen
            .tensor(dtype, &[s.b, s.hq, s.sq, s.dv], Dist::Uniform(-1.0, 1.0))?;
        Ok([q, k, v, g])
    }
}

fn shapes(c: &Checker<'_>) -> Vec<Shape> {
    let mut shapes = SHAPES.to_vec();
    if !c.quick {
        shapes.extend(LARGE_SHAPES);
    }
    shapes
}

fn attention(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for s in shapes(c) {
            let [q, k, v, _] = s.inputs(c, dtype)?;
            c.case(
                &s.name(dtype),
                dtype,
                Class::Attention,
                &[&q, &k, &v],
                |ops| {
                    let (out, lse) = ops.attention(&q, &k, &v, s.opts())?;
                    Ok(vec![out, lse])
                },
            );
        }
    }
    Ok(())
}

fn attention_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for s in shapes(c) {
            let [q, k, v, g] = s.inputs(c, dtype)?;
            let (out, lse) = c.oracle.attention(&q, &k, &v, s.opts())?;
            let inputs = [&q, &k, &v, &out, &lse, &g];
            c.case(&s.name(dtype), dtype, Class::Attention, &inputs, |ops| {
                let (gq, gk, gv) = ops.attention_backward(&q, &k, &v, &out, &lse, &g, s.opts())?;
                Ok(vec![gq, gk, gv])
            });
        }
    }
    // Grouped-query and causal with a KV cache, so every branch of the gradient is covered.
    let s = shape([1, 4, 2, 3, 4, 3, 2], true);
    let [q, k, v, g] = s.inputs(c, DType::F64)?;
    let (opts, oracle) = (s.opts(), c.oracle);
    let verdict = (|| {
        let (out, lse) = oracle.attention(&q, &k, &v, opts)?;
        let (gq, gk, gv) = oracle.attention_backward(&q, &k, &v, &out, &lse, &g, opts)?;
        let inputs = [q.clone(), k.clone(), v.clone()];
        Ok(check_vjp(&inputs, &[0, 1, 2], &[gq, gk, gv], |x| {
            Ok(dot(&oracle.attention(&x[0], &x[1], &x[2], opts)?.0, &g))
        }))
    })();
    c.verdict(
        "reference gradient vs finite differences (f64, GQA, causal)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

const HYPER: AdamW = AdamW {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.1,
    step: 1,
};

/// Two AdamW steps in place from random state; the gradient in every float dtype and layout.
fn adamw(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in c.layouts(&[&[1], &[7], &[3, 5], &[0], &[33, 17]]) {
            let param = c.gen.tensor(DType::F32, &dims, Dist::Uniform(-1.0, 1.0))?;
            let m = c.gen.tensor(DType::F32, &dims, Dist::Uniform(-0.1, 0.1))?;
            let v = c.gen.tensor(DType::F32, &dims, Dist::Uniform(0.0, 0.01))?;
            let g1 = c.gen.view(dtype, &dims, Dist::Uniform(-1.0, 1.0), view)?;
            let g2 = c.gen.view(dtype, &dims, Dist::Uniform(-1.0, 1.0), view)?;
            let name = format!("grad {} two steps", label(dtype, &dims, view));
            c.case(
                &name,
                dtype,
                Class::Fused,
                &[&param, &m, &v, &g1, &g2],
                |ops| {
                    let (p, m, v) = (fresh(&param)?, fresh(&m)?, fresh(&v)?);
                    ops.adamw(&p, &g1, &m, &v, HYPER)?;
                    ops.adamw(&p, &g2, &m, &v, AdamW { step: 2, ..HYPER })?;
                    Ok(vec![p, m, v])
                },
            );
        }
    }
    Ok(())
}

fn sum_squares(c: &mut Checker<'_>) -> Result<()> {
    let groups: &[&[&[usize]]] = &[
        &[&[7]],
        &[&[3, 5], &[0], &[], &[2, 3, 4]],
        &[],
        &[&[64, 100], &[1]],
    ];
    for dtype in FLOATS {
        for (i, dims_list) in groups.iter().enumerate() {
            let mut tensors = Vec::new();
            for (j, dims) in dims_list.iter().enumerate() {
                let view = View::ALL[(i + j) % 5];
                tensors.push(c.gen.view(dtype, dims, Dist::Uniform(-2.0, 2.0), view)?);
            }
            let refs: Vec<&Tensor> = tensors.iter().collect();
            let name = format!("{dtype} tensors {dims_list:?}");
            c.case(&name, dtype, Class::Accumulate, &refs, |ops| {
                let total = ops.sum_squares(&refs)?;
                Ok(vec![Tensor::from_f64(&[total], DType::F64, [1])?])
            });
        }
    }
    Ok(())
}
