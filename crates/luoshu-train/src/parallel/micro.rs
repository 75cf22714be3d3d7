//! A micro-batch as a rank feeds it: padded so tensor and context parallelism can split its
//! rows, cut to this rank's sequence chunks under context parallelism, with the bindings of
//! the symbolic dims.

use crate::{Error, Result};
use luoshu_data::{MicroBatch, IGNORE_INDEX};
use luoshu_graph::Bindings;
use luoshu_model::llama::{
    RowLayout, BATCH, LOSS_SCALE, ROPE_COS, ROPE_SIN, SEGMENTS, SEQ, SEQ_CHUNK, TARGETS, TOKENS,
};
use luoshu_model::{context_positions, ParamStore};
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// `micro` with every row padded at its end to a multiple of `tp` positions (`2 · cp · tp`
/// under context parallelism: see [`pad_multiple`]; padding tokens are 0 with ignored
/// targets; causal attention keeps them from affecting earlier positions, and ignored
/// targets never count in the loss, so the result is exact; packed rows keep their
/// documents, the padding after them only grows).
pub fn pad_for_tp(micro: &MicroBatch, tp: usize) -> Result<MicroBatch> {
    let (rows, seq) = (micro.rows, micro.seq_len);
    if micro.inputs.len() != rows * seq || micro.targets.len() != rows * seq {
        return Err(Error::Config(format!(
            "micro-batch of {rows}×{seq} holds {} inputs and {} targets",
            micro.inputs.len(),
            micro.targets.len()
        )));
    }
    let padded = seq.div_ceil(tp) * tp;
    if padded == seq {
        return Ok(micro.clone());
    }
    let mut inputs = Vec::with_capacity(rows * padded);
    let mut targets = Vec::with_capacity(rows * padded);
    for r in 0..rows {
        inputs.extend_from_slice(&micro.inputs[r * seq..(r + 1) * seq]);
        inputs.resize((r + 1) * padded, 0);
        targets.extend_from_slice(&micro.targets[r * seq..(r + 1) * seq]);
        targets.resize((r + 1) * padded, IGNORE_INDEX);
    }
    Ok(MicroBatch {
        rows,
        seq_len: padded,
        inputs,
        targets,
        target_tokens: micro.target_tokens,
        documents: micro.documents.clone(),
    })
}

/// The row layout of the graph that runs `micro`.
pub(crate) fn row_layout(micro: &MicroBatch) -> RowLayout {
    match micro.documents {
        Some(_) => RowLayout::Packed,
        None => RowLayout::OneDocument,
    }
}

/// Values of the symbolic dims for a (padded) micro-batch of `rows × seq`.
pub fn bindings(rows: usize, seq: usize, tp: usize) -> Bindings {
    context_bindings(rows, seq, tp, 1)
}

/// The multiple of positions rows are padded to: `tp`, or `2 · cp · tp` so that each of the
/// `2 · cp` context-parallel chunks splits over the tensor-parallel ranks.
pub fn pad_multiple(tp: usize, cp: usize) -> usize {
    match cp {
        1 => tp,
        cp => 2 * cp * tp,
    }
}

/// [`bindings`] for a rank of a `cp`-way context-parallel group, whose graph holds two of
/// the `2 · cp` chunks of each (padded) row of `seq` positions.
pub fn context_bindings(rows: usize, seq: usize, tp: usize, cp: usize) -> Bindings {
    let seq_binding = match (tp, cp) {
        (1, 1) => (SEQ.to_string(), seq),
        _ => (SEQ_CHUNK.to_string(), seq / pad_multiple(tp, cp)),
    };
    [(BATCH.to_string(), rows), seq_binding].into()
}

/// Cuts the feeds of a (padded) micro-batch down to context-parallel rank `rank`'s two
/// chunks of every row ([`context_positions`]): tokens, targets and the rope rows of those
/// tokens' positions. Packed rows keep the whole rows' segment ids, which the graph needs
/// for the keys of earlier chunks.
pub(crate) fn keep_context_chunks(
    feeds: &mut HashMap<String, Tensor>,
    micro: &MicroBatch,
    (rope_cos, rope_sin): (&Tensor, &Tensor),
    (cp, rank): (usize, usize),
) -> Result<()> {
    let (rows, seq) = (micro.rows, micro.seq_len);
    let local = context_positions(seq, cp, rank);
    let pick = |values: &[i64]| pick_positions(values, seq, &local);
    let shape = [rows, local.len()];
    feeds.insert(
        TOKENS.into(),
        Tensor::from_slice(&pick(&micro.inputs), shape.as_slice())?,
    );
    feeds.insert(
        TARGETS.into(),
        Tensor::from_slice(&pick(&micro.targets), shape.as_slice())?,
    );
    let positions = match &micro.documents {
        None => local.clone(),
        Some(documents) => pick_positions(&documents.positions(seq), seq, &local),
    };
    feeds.insert(ROPE_COS.into(), table_rows(rope_cos, &positions)?);
    feeds.insert(ROPE_SIN.into(), table_rows(rope_sin, &positions)?);
    Ok(())
}

/// The feeds of a training or loss plan built for `layout` for `micro`: the parameters by
/// name, tokens and targets, the rope tables (the first `seq` rows, or for packed rows the
/// row of every token's position in its document, with the segment ids) and the loss
/// scale.
pub(crate) fn micro_feeds(
    params: &ParamStore,
    micro: &MicroBatch,
    (rope_cos, rope_sin): (&Tensor, &Tensor),
    scale: f32,
    layout: RowLayout,
) -> Result<HashMap<String, Tensor>> {
    if row_layout(micro) != layout {
        return Err(Error::Config(format!(
            "a micro-batch with {:?} rows cannot run a graph built for {layout:?} rows",
            row_layout(micro)
        )));
    }
    let (rows, seq) = (micro.rows, micro.seq_len);
    let mut feeds: HashMap<String, Tensor> = params
        .iter()
        .map(|(name, t)| (name.to_string(), t.clone()))
        .collect();
    let shape = [rows, seq];
    feeds.insert(
        TOKENS.into(),
        Tensor::from_slice(&micro.inputs, shape.as_slice())?,
    );
    feeds.insert(
        TARGETS.into(),
        Tensor::from_slice(&micro.targets, shape.as_slice())?,
    );
    match &micro.documents {
        None => {
            feeds.insert(ROPE_COS.into(), rope_cos.narrow(0, 0, seq)?);
            feeds.insert(ROPE_SIN.into(), rope_sin.narrow(0, 0, seq)?);
        }
        Some(documents) => {
            let ids = documents.segment_ids(seq);
            feeds.insert(SEGMENTS.into(), Tensor::from_slice(&ids, shape.as_slice())?);
            let positions = documents.positions(seq);
            feeds.insert(ROPE_COS.into(), table_rows(rope_cos, &positions)?);
            feeds.insert(ROPE_SIN.into(), table_rows(rope_sin, &positions)?);
        }
    }
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(scale));
    Ok(feeds)
}

/// The values at positions `local` of every row of `values` (rows of `seq`), row by row.
fn pick_positions<T: Copy>(values: &[T], seq: usize, local: &[usize]) -> Vec<T> {
    values
        .chunks_exact(seq.max(1))
        .flat_map(|row| local.iter().map(|&p| row[p]))
        .collect()
}

/// Rows `positions` of a `[len, half]` rope table, `[positions.len(), half]`.
fn table_rows(table: &Tensor, positions: &[usize]) -> Result<Tensor> {
    let (len, half) = (table.dims()[0], table.dims()[1]);
    if let Some(&p) = positions.iter().find(|&&p| p >= len) {
        return Err(Error::Config(format!(
            "token position {p} is beyond the {len} positions of the rope tables"
        )));
    }
    let values: Vec<f32> = table.to_vec()?;
    let rows: Vec<f32> = positions
        .iter()
        .flat_map(|&p| values[p * half..(p + 1) * half].iter().copied())
        .collect();
    Ok(Tensor::from_vec(rows, [positions.len(), half].as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_data::RowDocuments;

    fn packed_micro() -> MicroBatch {
        MicroBatch {
            rows: 1,
            seq_len: 4,
            inputs: vec![5, 6, 7, 0],
            targets: vec![6, 8, 9, IGNORE_INDEX],
            target_tokens: 3,
            documents: Some(RowDocuments {
                rows: vec![vec![2, 1]],
            }),
        }
    }

    fn tables() -> (Tensor, Tensor) {
        let cos: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let sin: Vec<f32> = (0..8).map(|i| -(i as f32)).collect();
        let table = |v: Vec<f32>| Tensor::from_vec(v, [4, 2].as_slice()).unwrap();
        (table(cos), table(sin))
    }

    /// Packed rows get segment ids and the rope row of each token's position in its
    /// document; a graph of the other layout refuses them.
    #[test]
    fn packed_feeds_restart_positions_and_need_a_packed_graph() {
        let (cos, sin) = tables();
        let micro = packed_micro();
        let params = ParamStore::new();
        let feeds = micro_feeds(&params, &micro, (&cos, &sin), 0.5, RowLayout::Packed).unwrap();
        assert_eq!(feeds[SEGMENTS].to_vec::<i64>().unwrap(), [0, 0, 1, 2]);
        let rope = feeds[ROPE_COS].to_vec::<f32>().unwrap();
        assert_eq!(rope, [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 1.0]);
        let err = micro_feeds(&params, &micro, (&cos, &sin), 0.5, RowLayout::OneDocument);
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("graph built for OneDocument"));
        let unpacked = MicroBatch {
            documents: None,
            ..micro
        };
        assert!(micro_feeds(&params, &unpacked, (&cos, &sin), 0.5, RowLayout::Packed).is_err());
    }
}
