//! Composite nn ops and their backwards: row-wise ops keep splits of their row dims but
//! not of the normalized (last) dim; attention keeps batch and head splits, and a sequence
//! split of the queries against whole keys and values when no mask needs positions. A backward
//! mirrors its forward, with weight gradients summed over the rows (partial when the rows
//! are split) and outputs linear in an upstream partial gradient.

use super::rule::{divisible, per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_graph::{Op, TensorType};

/// How an output of a row-wise op depends on the rows.
#[derive(Clone, Copy)]
enum Out {
    /// Shaped like the input's rows (the output, statistics, input gradients).
    Rows,
    /// Summed over the rows (weight and bias gradients).
    OverRows,
}

/// Which inputs share the row dims of input 0 (`true`) and which are per-feature vectors.
const X_W: [bool; 2] = [true, false];

pub(super) fn deduce(op: &Op, inputs: &[(&TensorType, &DState)]) -> RuleResult {
    let states: Vec<&DState> = inputs.iter().map(|&(_, s)| s).collect();
    let last = inputs[0].0.rank().saturating_sub(1);
    let rows = |is_row: &'static [bool], linear_in: Option<usize>, outs: &'static [Out]| {
        per_axis(&states, outs.len(), move |_, roles| {
            row_rule(roles, is_row, last, linear_in, outs)
        })
    };
    match op {
        Op::Softmax | Op::LogSoftmax => rows(&[true], None, &[Out::Rows]),
        Op::CrossEntropy { .. } => {
            reject_vocab_split(&states)?;
            rows(&[true, true], None, &[Out::Rows, Out::Rows])
        }
        Op::CrossEntropyBackward { .. } => {
            reject_vocab_split(&states)?;
            rows(&[true; 4], Some(3), &[Out::Rows])
        }
        Op::RmsNorm { .. } => rows(&X_W, None, &[Out::Rows, Out::Rows]),
        Op::RmsNormBackward => rows(
            &[true, false, true, true],
            Some(3),
            &[Out::Rows, Out::OverRows],
        ),
        Op::LayerNorm { .. } => rows(&[true, false, false], None, &[Out::Rows; 3]),
        Op::LayerNormBackward => rows(
            &[true, false, true, true, true],
            Some(4),
            &[Out::Rows, Out::OverRows, Out::OverRows],
        ),
        Op::Rope { .. } => per_axis(&states, 1, |_, roles| match roles {
            [Axis::Split(1), ..] => Err(
                "rope on a sequence split would need each piece's positions of the cos/sin tables"
                    .into(),
            ),
            [Axis::Split(3), ..] => Err("rope rotates pairs across the split head dim 3".into()),
            [x, Axis::Duplicate, Axis::Duplicate] => Ok(vec![*x]),
            _ => Err("rope needs duplicated cos/sin tables".into()),
        }),
        Op::Swiglu => per_axis(&states, 1, |_, roles| match roles {
            [Axis::Partial, _] | [_, Axis::Partial] => {
                Err("swiglu is not linear: all-reduce its partial inputs first".into())
            }
            [gate, up] if gate == up => Ok(vec![*gate]),
            _ => Err("gate and up must have the same state".into()),
        }),
        Op::SwigluBackward => per_axis(&states, 2, |_, roles| match roles {
            [Axis::Duplicate, Axis::Duplicate, Axis::Partial] => Ok(vec![Axis::Partial; 2]),
            [Axis::Partial, ..] | [_, Axis::Partial, _] => {
                Err("swiglu is not linear: all-reduce its partial inputs first".into())
            }
            [gate, up, grad] if gate == up && up == grad => Ok(vec![*gate; 2]),
            _ => Err("gate, up and grad_out must have the same state".into()),
        }),
        Op::Attention {
            segmented, causal, ..
        } => attention(inputs, 2, *segmented, *causal),
        Op::AttentionBackward {
            segmented, causal, ..
        } => attention(inputs, 3, *segmented, *causal),
        other => Err(format!("{} is not a composite nn op", other.name())),
    }
}

/// One device axis of a row-wise op over the last dim of input 0: the row inputs split
/// the same row dim (or are duplicated, or only `linear_in` is partial) and the
/// per-feature inputs are duplicated.
fn row_rule(
    roles: &[Axis],
    is_row: &[bool],
    last: usize,
    linear_in: Option<usize>,
    outs: &[Out],
) -> Result<Vec<Axis>, String> {
    let vectors_duplicated = roles
        .iter()
        .zip(is_row)
        .all(|(&r, &row)| row || r == Axis::Duplicate);
    let all_duplicated = roles.iter().all(|&r| r == Axis::Duplicate);
    let all_duplicated_but = |k: usize| {
        roles
            .iter()
            .enumerate()
            .all(|(i, &r)| i == k || r == Axis::Duplicate)
    };
    match roles[0] {
        Axis::Split(d) if d == last => Err(format!(
            "the op works along the split last dim {d}: all-gather it first"
        )),
        Axis::Split(d)
            if vectors_duplicated
                && roles
                    .iter()
                    .zip(is_row)
                    .all(|(&r, &row)| !row || r == Axis::Split(d)) =>
        {
            Ok(outs
                .iter()
                .map(|out| match out {
                    Out::Rows => Axis::Split(d),
                    Out::OverRows => Axis::Partial,
                })
                .collect())
        }
        Axis::Duplicate if all_duplicated => Ok(vec![Axis::Duplicate; outs.len()]),
        _ if linear_in.is_some_and(|k| roles[k] == Axis::Partial && all_duplicated_but(k)) => {
            Ok(vec![Axis::Partial; outs.len()])
        }
        _ => Err(
            "the row inputs must split the same row dim with duplicated weights, or all be duplicated"
                .into(),
        ),
    }
}

/// The logits `[n, vocab]` (input 0) must not be split along the vocabulary.
fn reject_vocab_split(states: &[&DState]) -> Result<(), String> {
    if states[0].extent(Axis::Split(1)) > 1 {
        return Err(
            "the logits are split along the vocabulary: vocabulary-parallel cross-entropy is built from max, sum-exp and target-logit all-reduces by the builder".into(),
        );
    }
    Ok(())
}

/// `q [b, hq, sq, d]`, `k`, `v [b, hkv, sk, _]` (and for the backward out, lse, grad_out)
/// all split the batch, or all split the heads evenly by groups, or are all duplicated.
/// Segment ids `[b, s]` (the last input when `segmented`) follow the batch like tokens:
/// split where the batch is, duplicated over head splits and replicas.
fn attention(
    inputs: &[(&TensorType, &DState)],
    outputs: usize,
    segmented: bool,
    causal: bool,
) -> RuleResult {
    let states: Vec<&DState> = inputs.iter().map(|&(_, s)| s).collect();
    let (q_heads, kv_heads) = (&inputs[0].0.shape[1], &inputs[1].0.shape[1]);
    // The segment ids follow q, k, v (forward) or q, k, v, out, lse, grad_out (backward);
    // a backward's lse gradient, after them, is a row input like lse.
    let segment_at = segmented.then_some(if outputs == 2 { 3 } else { 6 });
    per_axis(&states, outputs, |extent, all_roles| {
        let (mut roles, mut segments) = (Vec::new(), Vec::new());
        for (i, &role) in all_roles.iter().enumerate() {
            match Some(i) == segment_at {
                true => segments.push(role),
                false => roles.push(role),
            }
        }
        let roles = roles.as_slice();
        if let Some(split) = query_sequence_split(roles, outputs, causal || segmented) {
            return split;
        }
        let first = roles[0];
        if roles.iter().any(|&r| r != first) {
            return Err("q, k, v (and the gradients' inputs) must have the same state".into());
        }
        let batch_split = first == Axis::Split(0);
        let segments_follow = |&s: &Axis| s == if batch_split { first } else { Axis::Duplicate };
        if !segments.iter().all(segments_follow) {
            return Err(format!(
                "segment ids {segments:?} must be split like the batch of q, k, v ({first:?}) or duplicated"
            ));
        }
        match first {
            Axis::Split(0) | Axis::Duplicate => Ok(vec![first; outputs]),
            // Piece i of the query heads must use piece i of the key/value heads.
            Axis::Split(1) if q_heads == kv_heads || divisible(kv_heads, extent) => {
                Ok(vec![first; outputs])
            }
            Axis::Split(1) => Err(format!(
                "{kv_heads} key/value heads do not split evenly into {extent} pieces of whole query groups"
            )),
            Axis::Split(2) => Err(
                "a sequence split of attention needs the whole keys and values: split the \
                 queries only (k, v duplicated)"
                    .into(),
            ),
            Axis::Split(d) => Err(format!("attention contracts or mixes the split dim {d}")),
            Axis::Partial => Err("attention is not linear: all-reduce its inputs first".into()),
        }
    })
}

/// A sequence split of the queries against whole (duplicated) keys and values: every query
/// sees every key, so each piece of the queries' rows is exact on its own; the backward's
/// key and value gradients are each piece's summand (partial). Causal or segmented
/// attention needs each piece's global query positions, which a state does not carry:
/// context parallelism builds that per chunk (`luoshu-model`'s `context.rs`).
fn query_sequence_split(
    roles: &[Axis],
    outputs: usize,
    positional: bool,
) -> Option<Result<Vec<Axis>, String>> {
    // Forward: q, k, v. Backward: q, k, v, out, lse, grad_out.
    let keys_whole = roles[1] == Axis::Duplicate && roles[2] == Axis::Duplicate;
    let rows_split = roles[0] == Axis::Split(2) && roles[3..].iter().all(|&r| r == Axis::Split(2));
    if !(keys_whole && rows_split) {
        return None;
    }
    if positional {
        return Some(Err(
            "causal or segmented attention cannot split its queries' sequence by state alone \
             (each piece needs its global positions): context parallelism builds it per chunk"
                .into(),
        ));
    }
    Some(Ok(match outputs {
        // out, lse.
        2 => vec![Axis::Split(2); 2],
        // grad_q, grad_k, grad_v.
        _ => vec![Axis::Split(2), Axis::Partial, Axis::Partial],
    }))
}
