use super::rule::{one, require_float, InferResult};
use super::InferError;
use crate::{Dim, Op, TensorType};
use luoshu_tensor::DType;

fn same(a: &TensorType, b: &TensorType, what: &str) -> Result<(), InferError> {
    if a == b {
        Ok(())
    } else {
        Err(InferError::Shape(format!("{what} must be {a}, got {b}")))
    }
}

fn rows(x: &TensorType) -> Result<Vec<Dim>, InferError> {
    if x.rank() == 0 {
        return Err(InferError::Shape("needs rank >= 1".into()));
    }
    Ok(x.shape[..x.rank() - 1].to_vec())
}

fn vector_of(x: &TensorType, p: &TensorType, what: &str) -> Result<(), InferError> {
    require_float(p)?;
    let d = x
        .shape
        .last()
        .ok_or_else(|| InferError::Shape("needs rank >= 1".into()))?;
    if p.shape != [d.clone()] {
        return Err(InferError::Shape(format!(
            "{what} must have shape [{d}], got {:?}",
            p.shape
        )));
    }
    Ok(())
}

fn stats(x: &TensorType) -> Result<TensorType, InferError> {
    Ok(TensorType::new(rows(x)?, DType::F32))
}

pub(super) fn infer(op: &Op, i: &[&TensorType]) -> InferResult {
    match op {
        Op::Softmax | Op::LogSoftmax => {
            require_float(i[0])?;
            rows(i[0])?;
            one(i[0].shape.clone(), i[0].dtype)
        }
        Op::CrossEntropy { .. } => {
            let (logits, targets) = (i[0], i[1]);
            require_float(logits)?;
            if logits.rank() != 2
                || targets.shape != [logits.shape[0].clone()]
                || targets.dtype != DType::I64
            {
                return Err(InferError::Shape(format!(
                    "expects logits [n, vocab] and i64 targets [n], got {logits} and {targets}"
                )));
            }
            let n = TensorType::new(vec![logits.shape[0].clone()], DType::F32);
            Ok(vec![n.clone(), n])
        }
        Op::CrossEntropyBackward { .. } => {
            let (logits, targets, lse, g) = (i[0], i[1], i[2], i[3]);
            require_float(logits)?;
            let n = TensorType::new(
                vec![logits
                    .shape
                    .first()
                    .cloned()
                    .ok_or_else(|| InferError::Shape("logits need rank 2".into()))?],
                DType::F32,
            );
            same(&n, lse, "lse")?;
            same(&n, g, "grad_losses")?;
            if targets.dtype != DType::I64 || targets.shape != n.shape {
                return Err(InferError::Shape(format!(
                    "targets must be i64{:?}, got {targets}",
                    n.shape
                )));
            }
            one(logits.shape.clone(), logits.dtype)
        }
        Op::RmsNorm { .. } => {
            require_float(i[0])?;
            vector_of(i[0], i[1], "weight")?;
            Ok(vec![i[0].clone(), stats(i[0])?])
        }
        Op::RmsNormBackward => {
            let (x, w, rstd, g) = (i[0], i[1], i[2], i[3]);
            require_float(x)?;
            vector_of(x, w, "weight")?;
            same(&stats(x)?, rstd, "rstd")?;
            same(x, g, "grad_out")?;
            Ok(vec![x.clone(), w.clone()])
        }
        Op::LayerNorm { .. } => {
            require_float(i[0])?;
            vector_of(i[0], i[1], "weight")?;
            vector_of(i[0], i[2], "bias")?;
            Ok(vec![i[0].clone(), stats(i[0])?, stats(i[0])?])
        }
        Op::LayerNormBackward => {
            let (x, w, mean, rstd, g) = (i[0], i[1], i[2], i[3], i[4]);
            require_float(x)?;
            vector_of(x, w, "weight")?;
            same(&stats(x)?, mean, "mean")?;
            same(&stats(x)?, rstd, "rstd")?;
            same(x, g, "grad_out")?;
            Ok(vec![x.clone(), w.clone(), w.clone()])
        }
        Op::Rope { .. } => {
            let (x, cos, sin) = (i[0], i[1], i[2]);
            require_float(x)?;
            let half = x
                .shape
                .get(3)
                .filter(|_| x.rank() == 4)
                .and_then(|d| d.as_fixed())
                .filter(|d| d % 2 == 0)
                .ok_or_else(|| {
                    InferError::Shape(format!(
                        "expects x [batch, seq, heads, even head_dim], got {x}"
                    ))
                })?
                / 2;
            let table = TensorType::new(vec![x.shape[1].clone(), Dim::fixed(half)], DType::F32);
            same(&table, cos, "cos")?;
            same(&table, sin, "sin")?;
            one(x.shape.clone(), x.dtype)
        }
        Op::Swiglu => {
            require_float(i[0])?;
            same(i[0], i[1], "up")?;
            one(i[0].shape.clone(), i[0].dtype)
        }
        Op::SwigluBackward => {
            require_float(i[0])?;
            same(i[0], i[1], "up")?;
            same(i[0], i[2], "grad_out")?;
            Ok(vec![i[0].clone(), i[0].clone()])
        }
        Op::Attention { segmented, .. } => {
            let (out, lse) = attention_types(i[0], i[1], i[2])?;
            if *segmented {
                segment_types(i[0], i[1], i[3])?;
            }
            Ok(vec![out, lse])
        }
        Op::AttentionBackward {
            segmented,
            lse_grad,
            ..
        } => {
            let (out, lse) = attention_types(i[0], i[1], i[2])?;
            if *segmented {
                segment_types(i[0], i[1], i[6])?;
            }
            same(&out, i[3], "out")?;
            same(&lse, i[4], "lse")?;
            same(&out, i[5], "grad_out")?;
            if *lse_grad {
                same(&lse, i[6 + usize::from(*segmented)], "grad_lse")?;
            }
            Ok(vec![i[0].clone(), i[1].clone(), i[2].clone()])
        }
        _ => Err(InferError::WrongFamily {
            op: op.name(),
            family: "an op with an inference rule",
        }),
    }
}

/// Segment ids of packed rows: `i64 [b, sk]`, one per key, the queries at the last `sq`
/// keys' positions (end-aligned, as a chunk of queries sees every earlier key), or
/// `i64 [b, sk + sq]`, the keys' ids followed by the queries' own.
fn segment_types(q: &TensorType, k: &TensorType, segments: &TensorType) -> Result<(), InferError> {
    let (b, sq, sk) = (&q.shape[0], &q.shape[2], &k.shape[2]);
    let fits = |n: &Dim| segments.shape == [b.clone(), n.clone()];
    let keys_then_queries = sk.add(sq);
    if segments.dtype != DType::I64 || !(fits(sk) || keys_then_queries.as_ref().is_some_and(fits)) {
        return Err(InferError::Shape(format!(
            "segment ids must be i64 [{b}, {sk}] (one per key; queries {sq}) or [{b}, {sk} + \
             {sq}] (the keys' then the queries'), got {segments}"
        )));
    }
    Ok(())
}

/// `q [b, hq, sq, d]`, `k [b, hkv, sk, d]`, `v [b, hkv, sk, dv]` -> `out [b, hq, sq, dv]`,
/// `lse [b, hq, sq]`.
fn attention_types(
    q: &TensorType,
    k: &TensorType,
    v: &TensorType,
) -> Result<(TensorType, TensorType), InferError> {
    require_float(q)?;
    let bad = || {
        InferError::Shape(format!("expects q [b, hq, sq, d], k [b, hkv, sk, d], v [b, hkv, sk, dv] with hq % hkv == 0, got {q}, {k}, {v}"))
    };
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 || k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(bad());
    }
    let (qs, ks, vs) = (&q.shape, &k.shape, &v.shape);
    let groups_ok = qs[1].div_exact(&ks[1]).is_some();
    if qs[0] != ks[0]
        || ks[0] != vs[0]
        || ks[1] != vs[1]
        || ks[2] != vs[2]
        || qs[3] != ks[3]
        || !groups_ok
    {
        return Err(bad());
    }
    Ok((
        TensorType::new(
            vec![qs[0].clone(), qs[1].clone(), qs[2].clone(), vs[3].clone()],
            q.dtype,
        ),
        TensorType::new(qs[..3].to_vec(), DType::F32),
    ))
}
