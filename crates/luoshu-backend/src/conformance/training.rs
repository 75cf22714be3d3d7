//! Cases for attention (forward, backward, grouped-query, causal with a KV cache, packed
//! rows of segments), the AdamW step and the sum of squares used for gradient clipping.
use super::cases::{fresh, label, Dist, View};
use super::checker::Checker;
use super::compare::Class;
use super::gradcheck::{check_vjp, dot, oracle_verdict};
use super::primitives::FLOATS;
use crate::ops::{AdamW, AttentionInputs, AttentionOpts, AttentionOutputGrads, CompositeOp};
use crate::Result;
use luoshu_tensor::{DType, Tensor};

pub fn check_all(c: &mut Checker<'_>) {
    c.composite(CompositeOp::Attention, attention);
    c.composite(CompositeOp::AttentionBackward, attention_backward);
    c.composite(CompositeOp::AdamW, adamw);
    c.composite(CompositeOp::SumSquares, sum_squares);
}

/// One attention problem: `q [b, hq, sq, d]`, `k [b, hkv, sk, d]`, `v [b, hkv, sk, dv]`,
/// and for packed rows the document lengths of each row (empty: unpacked), summing to
/// `sk` (the queries sit at the last key positions) or to `sk + sq` (the keys are the
/// first `sk` positions of the row and the queries its last `sq`, with ids of their own,
/// as a context-parallel ring pairs a chunk of queries with an earlier chunk of keys).
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
    documents: &'static [usize],
}

/// `[b, hq, hkv, sq, sk, d, dv]` and whether the mask is causal.
const fn shape(dims: [usize; 7], causal: bool) -> Shape {
    packed(dims, causal, &[])
}

/// [`shape`] with rows packed from documents of these lengths (summing to `sk` or
/// `sk + sq`).
const fn packed(dims: [usize; 7], causal: bool, documents: &'static [usize]) -> Shape {
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
        documents,
    }
}

/// Single positions, GQA, a KV cache (sq < sk), fully masked rows (causal with sq > sk, and
/// no keys at all), distinct value width; packed rows of one, two and many documents
/// (length-1 ones included), causal and not.
const SHAPES: &[Shape] = &[
    shape([1, 1, 1, 1, 1, 4, 4], false),
    shape([2, 4, 2, 5, 5, 8, 8], true),
    shape([1, 4, 1, 3, 7, 8, 6], true),
    shape([2, 2, 2, 6, 6, 16, 16], false),
    shape([1, 2, 1, 5, 3, 4, 4], true),
    shape([1, 2, 2, 3, 0, 4, 4], false),
    shape([1, 3, 1, 0, 4, 4, 4], true),
    packed([2, 4, 2, 6, 6, 8, 8], true, &[6]),
    packed([2, 2, 1, 7, 7, 8, 6], true, &[3, 4]),
    packed([1, 2, 2, 9, 9, 4, 4], true, &[1, 2, 1, 1, 3, 1]),
    packed([2, 2, 2, 6, 6, 16, 16], false, &[1, 5]),
    packed([2, 2, 1, 4, 5, 8, 8], false, &[3, 4, 2]),
    packed([1, 2, 2, 4, 4, 4, 6], true, &[2, 3, 3]),
];
/// Packed rows whose documents start and end inside and across 128-wide tiles.
const LARGE_SHAPES: &[Shape] = &[
    shape([1, 8, 2, 64, 64, 32, 32], true),
    shape([2, 4, 4, 33, 65, 16, 16], true),
    packed([1, 4, 2, 300, 300, 16, 16], true, &[130, 1, 40, 129]),
    packed([2, 2, 1, 257, 257, 8, 8], true, &[1, 256]),
    packed([1, 2, 2, 200, 200, 8, 8], false, &[150, 50]),
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
            "{dtype} b{} hq{} hkv{} sq{} sk{} d{} dv{}{}{}",
            s.b,
            s.hq,
            s.hkv,
            s.sq,
            s.sk,
            s.d,
            s.dv,
            if s.causal { " causal" } else { "" },
            if s.documents.is_empty() {
                String::new()
            } else {
                format!(" documents {:?}", s.documents)
            }
        )
    }

    /// Segment ids `i64 [b, Σ documents]` of packed rows (`None` unpacked): batch row `r`
    /// takes the document lengths rotated by `r`, ids increase by two per document and
    /// start at `r`.
    fn segments(&self) -> Result<Option<Tensor>> {
        if self.documents.is_empty() {
            return Ok(None);
        }
        let row: usize = self.documents.iter().sum();
        let mut ids = Vec::with_capacity(self.b * row);
        for r in 0..self.b {
            let n = self.documents.len();
            for doc in 0..n {
                let len = self.documents[(doc + r) % n];
                ids.extend(std::iter::repeat_n((2 * doc + r) as i64, len));
            }
        }
        Ok(Some(Tensor::from_vec(ids, [self.b, row].as_slice())?))
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
            let segments = s.segments()?;
            let seg = segments.as_ref();
            let attn = AttentionInputs::new(&q, &k, &v).with_segments(seg);
            let inputs = [&[&q, &k, &v][..], seg.as_slice()].concat();
            c.case(&s.name(dtype), dtype, Class::Attention, &inputs, |ops| {
                let (out, lse) = ops.attention(attn, s.opts())?;
                Ok(vec![out, lse])
            });
        }
    }
    Ok(())
}

fn attention_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for s in shapes(c) {
            let [q, k, v, g] = s.inputs(c, dtype)?;
            let segments = s.segments()?;
            let seg = segments.as_ref();
            let attn = AttentionInputs::new(&q, &k, &v).with_segments(seg);
            let (out, lse) = c.oracle.attention(attn, s.opts())?;
            let inputs = [&[&q, &k, &v, &out, &lse, &g][..], seg.as_slice()].concat();
            c.case(&s.name(dtype), dtype, Class::Attention, &inputs, |ops| {
                let output_grads = AttentionOutputGrads::new(&out, &lse, &g);
                let (gq, gk, gv) = ops.attention_backward(attn, s.opts(), output_grads)?;
                Ok(vec![gq, gk, gv])
            });
        }
        // With a gradient of the log-sum-exp too (the ring's merge of partial attentions).
        for s in SHAPES {
            let [q, k, v, g] = s.inputs(c, dtype)?;
            let segments = s.segments()?;
            let seg = segments.as_ref();
            let attn = AttentionInputs::new(&q, &k, &v).with_segments(seg);
            let (out, lse) = c.oracle.attention(attn, s.opts())?;
            let g_lse = c
                .gen
                .tensor(DType::F32, lse.dims(), Dist::Uniform(-1.0, 1.0))?;
            let inputs = [&[&q, &k, &v, &out, &lse, &g, &g_lse][..], seg.as_slice()].concat();
            let name = format!("{} with lse gradient", s.name(dtype));
            c.case(&name, dtype, Class::Attention, &inputs, |ops| {
                let output_grads =
                    AttentionOutputGrads::new(&out, &lse, &g).with_grad_lse(Some(&g_lse));
                let (gq, gk, gv) = ops.attention_backward(attn, s.opts(), output_grads)?;
                Ok(vec![gq, gk, gv])
            });
        }
    }
    // Grouped-query and causal with a KV cache, then packed rows of one, two and many
    // documents, so every branch of the gradient is covered.
    let gradient_cases = [
        ("GQA, causal", shape([1, 4, 2, 3, 4, 3, 2], true)),
        ("one document", packed([1, 2, 1, 5, 5, 3, 2], true, &[5])),
        (
            "two documents",
            packed([2, 2, 1, 5, 5, 3, 2], true, &[2, 3]),
        ),
        (
            "many documents",
            packed([1, 2, 2, 6, 6, 3, 2], true, &[1, 2, 1, 1, 1]),
        ),
        (
            "queries with their own ids",
            packed([1, 2, 1, 3, 4, 3, 2], false, &[3, 4]),
        ),
    ];
    for (what, s) in gradient_cases {
        let [q, k, v, g] = s.inputs(c, DType::F64)?;
        let (opts, oracle, segments) = (s.opts(), c.oracle, s.segments()?);
        let seg = segments.as_ref();
        // Without and with a gradient of lse: loss = <out, g> (+ <lse, g_lse>). No row of
        // these cases is fully masked, so lse is finite everywhere.
        let g_lse = c
            .gen
            .tensor(DType::F32, &[s.b, s.hq, s.sq], Dist::Uniform(-1.0, 1.0))?;
        for g_lse in [None, Some(&g_lse)] {
            let verdict = (|| {
                let attn = AttentionInputs::new(&q, &k, &v).with_segments(seg);
                let (out, lse) = oracle.attention(attn, opts)?;
                let output_grads = AttentionOutputGrads::new(&out, &lse, &g).with_grad_lse(g_lse);
                let (gq, gk, gv) = oracle.attention_backward(attn, opts, output_grads)?;
                let inputs = [q.clone(), k.clone(), v.clone()];
                Ok(check_vjp(&inputs, &[0, 1, 2], &[gq, gk, gv], |x| {
                    let perturbed = AttentionInputs::new(&x[0], &x[1], &x[2]).with_segments(seg);
                    let (out, lse) = oracle.attention(perturbed, opts)?;
                    Ok(dot(&out, &g) + g_lse.map_or(0.0, |g_lse| dot(&lse, g_lse)))
                }))
            })();
            let with = if g_lse.is_some() {
                ", lse gradient"
            } else {
                ""
            };
            c.verdict(
                &format!("reference gradient vs finite differences (f64, {what}{with})"),
                DType::F64,
                oracle_verdict(verdict),
            );
        }
    }
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
