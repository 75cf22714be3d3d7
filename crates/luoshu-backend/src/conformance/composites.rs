//! Cases for the row-wise composite ops: softmax, cross-entropy, the norms, SwiGLU and
//! rotary embedding, each forward against the oracle's decomposition and each backward
//! also against finite differences of the oracle's forward.
use super::cases::{label, Dist, View};
use super::checker::Checker;
use super::compare::Class;
use super::gradcheck::{check_vjp, dot, oracle_verdict};
use super::primitives::FLOATS;
use crate::ops::CompositeOp;
use crate::ops::ElementwiseProgram;
use crate::{Ops, Result};
use luoshu_tensor::{DType, Tensor};

pub fn check_all(c: &mut Checker<'_>) {
    c.composite(CompositeOp::Softmax, |c| softmax(c, false));
    c.composite(CompositeOp::LogSoftmax, |c| softmax(c, true));
    c.composite(CompositeOp::CrossEntropy, cross_entropy);
    c.composite(CompositeOp::CrossEntropyBackward, cross_entropy_backward);
    c.composite(CompositeOp::RmsNorm, rms_norm);
    c.composite(CompositeOp::RmsNormBackward, rms_norm_backward);
    c.composite(CompositeOp::LayerNorm, layer_norm);
    c.composite(CompositeOp::LayerNormBackward, layer_norm_backward);
    c.composite(CompositeOp::Rope, rope);
    c.composite(CompositeOp::Swiglu, swiglu);
    c.composite(CompositeOp::SwigluBackward, swiglu_backward);
    c.composite(CompositeOp::FusedElementwise, fused_elementwise);
    super::training::check_all(c);
}

/// Row-wise shapes (the op works over the last dim): single rows, empty, odd, long rows.
const ROW_SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[3, 5],
    &[2, 3, 17],
    &[0, 5],
    &[4, 1],
    &[3, 0],
    &[6, 1000],
];
const LARGE_ROW_SHAPES: &[&[usize]] = &[&[32, 4096]];

fn row_layouts(c: &Checker<'_>) -> Vec<(Vec<usize>, View)> {
    let mut shapes = c.layouts(ROW_SHAPES);
    if !c.quick {
        shapes.extend(c.layouts(LARGE_ROW_SHAPES));
    }
    shapes
}

const EPS: f32 = 1e-5;
const IGNORE: i64 = -100;
/// Inputs of every gradient check: small, so finite differences stay cheap.
const GRAD_ROWS: [usize; 2] = [3, 6];

fn softmax(c: &mut Checker<'_>, log: bool) -> Result<()> {
    let run = move |ops: &Ops<'_>, x: &Tensor| -> Result<Tensor> {
        if log {
            ops.log_softmax(x)
        } else {
            ops.softmax(x)
        }
    };
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let x = c.gen.view(dtype, &dims, Dist::Uniform(-4.0, 4.0), view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&x],
                |ops| Ok(vec![run(ops, &x)?]),
            );
        }
        // Large logits: only a max-subtracting implementation stays finite.
        let x = c
            .gen
            .tensor(dtype, &[5, 33], Dist::Uniform(-100.0, 100.0))?;
        c.case(
            &format!("{dtype}[5, 33] large logits"),
            dtype,
            Class::Fused,
            &[&x],
            |ops| Ok(vec![run(ops, &x)?]),
        );
    }
    Ok(())
}

/// Targets in `0..vocab` with every fourth one ignored.
fn targets(c: &mut Checker<'_>, n: usize, vocab: usize) -> Result<Tensor> {
    let mut values = c.gen.values(n, Dist::Ints(0, vocab.max(1) as i64));
    for v in values.iter_mut().skip(1).step_by(4) {
        *v = IGNORE as f64;
    }
    Ok(Tensor::from_f64(&values, DType::I64, [n])?)
}

/// (rows, vocab) of the cross-entropy cases.
fn ce_shapes(c: &Checker<'_>) -> Vec<(usize, usize)> {
    let mut shapes = vec![(1, 1), (5, 7), (0, 7), (13, 300), (2, 5000)];
    if !c.quick {
        shapes.push((8, 32000));
    }
    shapes
}

fn cross_entropy(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (i, (n, vocab)) in ce_shapes(c).into_iter().enumerate() {
            let view = View::ALL[i % 5];
            let logits = c
                .gen
                .view(dtype, &[n, vocab], Dist::Uniform(-4.0, 4.0), view)?;
            let t = targets(c, n, vocab)?;
            c.case(
                &label(dtype, &[n, vocab], view),
                dtype,
                Class::Fused,
                &[&logits, &t],
                |ops| {
                    let (losses, lse) = ops.cross_entropy(&logits, &t, IGNORE)?;
                    Ok(vec![losses, lse])
                },
            );
        }
    }
    Ok(())
}

fn cross_entropy_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (i, (n, vocab)) in ce_shapes(c).into_iter().enumerate() {
            let view = View::ALL[i % 5];
            let logits = c
                .gen
                .view(dtype, &[n, vocab], Dist::Uniform(-4.0, 4.0), view)?;
            let t = targets(c, n, vocab)?;
            let (_, lse) = c.oracle.cross_entropy(&logits, &t, IGNORE)?;
            let g = c.gen.tensor(DType::F32, &[n], Dist::Uniform(-1.0, 1.0))?;
            let inputs = [&logits, &t, &lse, &g];
            c.case(
                &label(dtype, &[n, vocab], view),
                dtype,
                Class::Fused,
                &inputs,
                |ops| {
                    Ok(vec![
                        ops.cross_entropy_backward(&logits, &t, &lse, &g, IGNORE)?
                    ])
                },
            );
        }
    }
    let [n, vocab] = GRAD_ROWS;
    let logits = c
        .gen
        .tensor(DType::F64, &[n, vocab], Dist::Uniform(-2.0, 2.0))?;
    let t = targets(c, n, vocab)?;
    let g = c.gen.tensor(DType::F32, &[n], Dist::Uniform(-1.0, 1.0))?;
    let oracle = c.oracle;
    let verdict = (|| {
        let (_, lse) = oracle.cross_entropy(&logits, &t, IGNORE)?;
        let grad = oracle.cross_entropy_backward(&logits, &t, &lse, &g, IGNORE)?;
        Ok(check_vjp(
            std::slice::from_ref(&logits),
            &[0],
            &[grad],
            |x| Ok(dot(&oracle.cross_entropy(&x[0], &t, IGNORE)?.0, &g)),
        ))
    })();
    c.verdict(
        "reference gradient vs finite differences (f64)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

fn norm_inputs(
    c: &mut Checker<'_>,
    dtype: DType,
    dims: &[usize],
    view: View,
) -> Result<[Tensor; 4]> {
    let d = dims[dims.len() - 1];
    let x = c.gen.view(dtype, dims, Dist::Uniform(-2.0, 2.0), view)?;
    let weight = c.gen.tensor(dtype, &[d], Dist::Uniform(0.5, 1.5))?;
    let bias = c.gen.tensor(dtype, &[d], Dist::Uniform(-0.5, 0.5))?;
    let grad_out = c.gen.tensor(dtype, dims, Dist::Uniform(-1.0, 1.0))?;
    Ok([x, weight, bias, grad_out])
}

fn rms_norm(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [x, w, ..] = norm_inputs(c, dtype, &dims, view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&x, &w],
                |ops| {
                    let (out, rstd) = ops.rms_norm(&x, &w, EPS)?;
                    Ok(vec![out, rstd])
                },
            );
        }
    }
    Ok(())
}

fn rms_norm_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [x, w, _, g] = norm_inputs(c, dtype, &dims, view)?;
            let (_, rstd) = c.oracle.rms_norm(&x, &w, EPS)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&x, &w, &rstd, &g],
                |ops| {
                    let (gx, gw) = ops.rms_norm_backward(&x, &w, &rstd, &g)?;
                    Ok(vec![gx, gw])
                },
            );
        }
    }
    let [x, w, _, g] = norm_inputs(c, DType::F64, &GRAD_ROWS, View::Contiguous)?;
    let oracle = c.oracle;
    let verdict = (|| {
        let (_, rstd) = oracle.rms_norm(&x, &w, EPS)?;
        let (gx, gw) = oracle.rms_norm_backward(&x, &w, &rstd, &g)?;
        Ok(check_vjp(
            &[x.clone(), w.clone()],
            &[0, 1],
            &[gx, gw],
            |v| Ok(dot(&oracle.rms_norm(&v[0], &v[1], EPS)?.0, &g)),
        ))
    })();
    c.verdict(
        "reference gradient vs finite differences (f64)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

fn layer_norm(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [x, w, b, _] = norm_inputs(c, dtype, &dims, view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&x, &w, &b],
                |ops| {
                    let (out, mean, rstd) = ops.layer_norm(&x, &w, &b, EPS)?;
                    Ok(vec![out, mean, rstd])
                },
            );
        }
    }
    Ok(())
}

fn layer_norm_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [x, w, b, g] = norm_inputs(c, dtype, &dims, view)?;
            let (_, mean, rstd) = c.oracle.layer_norm(&x, &w, &b, EPS)?;
            let inputs = [&x, &w, &mean, &rstd, &g];
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &inputs,
                |ops| {
                    let (gx, gw, gb) = ops.layer_norm_backward(&x, &w, &mean, &rstd, &g)?;
                    Ok(vec![gx, gw, gb])
                },
            );
        }
    }
    let [x, w, b, g] = norm_inputs(c, DType::F64, &GRAD_ROWS, View::Contiguous)?;
    let oracle = c.oracle;
    let verdict = (|| {
        let (_, mean, rstd) = oracle.layer_norm(&x, &w, &b, EPS)?;
        let (gx, gw, gb) = oracle.layer_norm_backward(&x, &w, &mean, &rstd, &g)?;
        let inputs = [x.clone(), w.clone(), b.clone()];
        Ok(check_vjp(&inputs, &[0, 1, 2], &[gx, gw, gb], |v| {
            Ok(dot(&oracle.layer_norm(&v[0], &v[1], &v[2], EPS)?.0, &g))
        }))
    })();
    c.verdict(
        "reference gradient vs finite differences (f64)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

/// `cos` and `sin` tables `[seq, d/2]` of the usual rotary frequencies.
fn rope_tables(seq: usize, head_dim: usize) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let angle = |p: usize, i: usize| p as f64 * 10000f64.powf(-2.0 * i as f64 / head_dim as f64);
    let angles: Vec<f64> = (0..seq * half)
        .map(|j| angle(j / half.max(1), j % half.max(1)))
        .collect();
    let cos: Vec<f64> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f64> = angles.iter().map(|a| a.sin()).collect();
    Ok((
        Tensor::from_f64(&cos, DType::F32, [seq, half])?,
        Tensor::from_f64(&sin, DType::F32, [seq, half])?,
    ))
}

fn rope(c: &mut Checker<'_>) -> Result<()> {
    let shapes: &[&[usize]] = &[
        &[1, 1, 1, 2],
        &[2, 5, 3, 8],
        &[1, 0, 2, 4],
        &[2, 7, 4, 16],
        &[3, 9, 1, 6],
    ];
    for dtype in FLOATS {
        for (dims, view) in c.layouts(shapes) {
            let x = c.gen.view(dtype, &dims, Dist::Uniform(-2.0, 2.0), view)?;
            let (cos, sin) = rope_tables(dims[1], dims[3])?;
            for inverse in [false, true] {
                let name = format!("{} inverse {inverse}", label(dtype, &dims, view));
                c.case(&name, dtype, Class::Fused, &[&x, &cos, &sin], |ops| {
                    Ok(vec![ops.rope(&x, &cos, &sin, inverse)?])
                });
            }
        }
    }
    // The backward of rope is its inverse: <rope(x), y> = <x, rope_inverse(y)>.
    let dims = [2, 5, 3, 8];
    let x = c.gen.tensor(DType::F64, &dims, Dist::Uniform(-1.0, 1.0))?;
    let y = c.gen.tensor(DType::F64, &dims, Dist::Uniform(-1.0, 1.0))?;
    let (cos, sin) = rope_tables(dims[1], dims[3])?;
    let oracle = c.oracle;
    let verdict = (|| {
        let forward = dot(&oracle.rope(&x, &cos, &sin, false)?, &y);
        let adjoint = dot(&x, &oracle.rope(&y, &cos, &sin, true)?);
        Ok(
            if (forward - adjoint).abs() <= 1e-9 * forward.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!(
                    "<rope(x), y> = {forward} but <x, rope_inverse(y)> = {adjoint}"
                ))
            },
        )
    })();
    c.verdict(
        "reference inverse is the adjoint (f64)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

fn swiglu_inputs(
    c: &mut Checker<'_>,
    dtype: DType,
    dims: &[usize],
    view: View,
) -> Result<[Tensor; 3]> {
    let gate = c.gen.view(dtype, dims, Dist::Uniform(-4.0, 4.0), view)?;
    let up = c.gen.tensor(dtype, dims, Dist::Uniform(-2.0, 2.0))?;
    let grad_out = c.gen.tensor(dtype, dims, Dist::Uniform(-1.0, 1.0))?;
    Ok([gate, up, grad_out])
}

fn swiglu(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [gate, up, _] = swiglu_inputs(c, dtype, &dims, view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&gate, &up],
                |ops| Ok(vec![ops.swiglu(&gate, &up)?]),
            );
        }
    }
    Ok(())
}

fn swiglu_backward(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        for (dims, view) in row_layouts(c) {
            let [gate, up, g] = swiglu_inputs(c, dtype, &dims, view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&gate, &up, &g],
                |ops| {
                    let (gg, gu) = ops.swiglu_backward(&gate, &up, &g)?;
                    Ok(vec![gg, gu])
                },
            );
        }
    }
    let [gate, up, g] = swiglu_inputs(c, DType::F64, &GRAD_ROWS, View::Contiguous)?;
    let oracle = c.oracle;
    let verdict = (|| {
        let (gg, gu) = oracle.swiglu_backward(&gate, &up, &g)?;
        Ok(check_vjp(
            &[gate.clone(), up.clone()],
            &[0, 1],
            &[gg, gu],
            |v| Ok(dot(&oracle.swiglu(&v[0], &v[1])?, &g)),
        ))
    })();
    c.verdict(
        "reference gradient vs finite differences (f64)",
        DType::F64,
        oracle_verdict(verdict),
    );
    Ok(())
}

/// `x > 0 ? silu(x) * y : exp(x) - 0.5 * y`, with `y` a row vector broadcast over the rows
/// and a round trip through f32: every instruction kind once.
fn fused_program(dtype: DType) -> ElementwiseProgram {
    use crate::ops::{BinaryOp as B, CompareOp, FusedInstr as I, UnaryOp as U};
    ElementwiseProgram {
        inputs: vec![dtype, dtype],
        instrs: vec![
            I::Load(0),                      // 0: x
            I::Load(1),                      // 1: y
            I::constant(0.0, dtype),         // 2
            I::Compare(CompareOp::Gt, 0, 2), // 3: x > 0
            I::Unary(U::Silu, 0),            // 4
            I::Binary(B::Mul, 4, 1),         // 5: silu(x) * y
            I::Unary(U::Exp, 0),             // 6
            I::constant(0.5, dtype),         // 7
            I::Binary(B::Mul, 7, 1),         // 8: 0.5 y
            I::Binary(B::Sub, 6, 8),         // 9
            I::Select(3, 5, 9),              // 10
            I::Cast(10, DType::F32),         // 11
            I::Cast(11, dtype),              // 12
        ],
        output: 12,
    }
}

fn fused_elementwise(c: &mut Checker<'_>) -> Result<()> {
    for dtype in FLOATS {
        let program = fused_program(dtype);
        for (dims, view) in row_layouts(c) {
            let x = c.gen.view(dtype, &dims, Dist::Uniform(-3.0, 3.0), view)?;
            let last = dims.last().copied().unwrap_or(1);
            let y = c.gen.tensor(dtype, &[last], Dist::Uniform(-2.0, 2.0))?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Fused,
                &[&x, &y],
                |ops| Ok(vec![ops.fused_elementwise(&program, &[&x, &y])?]),
            );
        }
    }
    Ok(())
}
