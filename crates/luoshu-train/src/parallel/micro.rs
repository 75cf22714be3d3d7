//! A micro-batch as a rank feeds it: padded so tensor parallelism can split its rows, with
//! the bindings of the symbolic dims.

use crate::{Error, Result};
use luoshu_data::{MicroBatch, IGNORE_INDEX};
use luoshu_graph::Bindings;
use luoshu_model::llama::{BATCH, LOSS_SCALE, ROPE_COS, ROPE_SIN, SEQ, SEQ_CHUNK, TARGETS, TOKENS};
use luoshu_model::ParamStore;
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// `micro` with every row padded at its end to a multiple of `tp` positions (padding
/// tokens are 0 with ignored targets; causal attention keeps them from affecting earlier
/// positions, and ignored targets never count in the loss, so the result is exact).
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
    })
}

/// Values of the symbolic dims for a (padded) micro-batch of `rows × seq`.
pub fn bindings(rows: usize, seq: usize, tp: usize) -> Bindings {
    let seq_binding = match tp {
        1 => (SEQ.to_string(), seq),
        _ => (SEQ_CHUNK.to_string(), seq / tp),
    };
    [(BATCH.to_string(), rows), seq_binding].into()
}

/// The feeds of a training or loss plan for `micro`: the parameters by name, tokens and
/// targets, the first `seq` rows of the rope tables and the loss scale.
pub(crate) fn micro_feeds(
    params: &ParamStore,
    micro: &MicroBatch,
    (rope_cos, rope_sin): (&Tensor, &Tensor),
    scale: f32,
) -> Result<HashMap<String, Tensor>> {
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
    feeds.insert(ROPE_COS.into(), rope_cos.narrow(0, 0, seq)?);
    feeds.insert(ROPE_SIN.into(), rope_sin.narrow(0, 0, seq)?);
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(scale));
    Ok(feeds)
}
