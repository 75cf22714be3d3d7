//! Context-parallel attention. Every sequence is cut into `2 · cp` equal chunks and rank `r`
//! of the context-parallel group holds chunks `r` and `2 · cp − 1 − r` (equal causal work on
//! every rank). Queries stay local; keys and values of every rank are all-gathered (their
//! gradients reduce-scattered back by autodiff), put in sequence order, and each local chunk
//! `c` attends to the first `c + 1` chunks of keys with the causal mask aligned at the end,
//! which places the chunk's queries at their global positions. Packed rows pass the whole
//! rows' segment ids, of which a chunk uses those of its keys.

use crate::{context_chunks, Result};
use luoshu_graph::{Dim, Graph, Value};

/// The context-parallel group named by collective nodes.
pub const CP_GROUP: &str = "cp";

/// How this rank's rows split a sequence: `cp` ranks, this one `rank`, chunks of `chunk`
/// positions.
pub(crate) struct ContextSplit {
    pub cp: usize,
    pub rank: usize,
    pub chunk: Dim,
}

impl ContextSplit {
    /// Causal attention of this rank's queries `q [b, hq, 2 · chunk, d]` over the keys and
    /// values of the whole sequence (`k`, `v [b, hkv, 2 · chunk, ·]` are this rank's); with
    /// `segments` (`i64 [b, 2 · cp · chunk]`, the whole rows) packed documents see only
    /// themselves. Returns `[b, hq, 2 · chunk, dv]`.
    pub fn attention(
        &self,
        g: &mut Graph,
        (q, k, v): (Value, Value, Value),
        segments: Option<Value>,
        scale: f64,
    ) -> Result<Value> {
        let keys = self.gather_in_order(g, k)?;
        let values = self.gather_in_order(g, v)?;
        let local = self.split_chunks(g, q, 2, 2)?;
        let mut outs = Vec::new();
        for (slot, c) in context_chunks(self.cp, self.rank).into_iter().enumerate() {
            let q_c = self.one_chunk(g, local, slot)?;
            let k_c = self.first_chunks(g, keys, c + 1)?;
            let v_c = self.first_chunks(g, values, c + 1)?;
            let (out, _) = match segments {
                Some(ids) => {
                    let ids = self.first_segment_chunks(g, ids, c + 1)?;
                    g.segmented_attention((q_c, k_c, v_c), ids, scale, true)?
                }
                None => g.attention(q_c, k_c, v_c, scale, true)?,
            };
            let shape = g.shape_of(out);
            let one = [
                shape[0].clone(),
                shape[1].clone(),
                Dim::fixed(1),
                self.chunk.clone(),
                shape[3].clone(),
            ];
            outs.push(g.reshape(out, &one)?);
        }
        let both = g.concat(&outs, 2)?;
        let shape = g.shape_of(q);
        let dv = g.shape_of(v)[3].clone();
        let rows = [shape[0].clone(), shape[1].clone(), shape[2].clone(), dv];
        Ok(g.reshape(both, &rows)?)
    }

    /// `x [b, h, n · chunk, d]` viewed as `[b, h, n, chunk, d]`, split along `dim` = 2.
    fn split_chunks(&self, g: &mut Graph, x: Value, dim: usize, n: usize) -> Result<Value> {
        let shape = g.shape_of(x);
        let mut split = shape[..dim].to_vec();
        split.extend([Dim::fixed(n), self.chunk.clone()]);
        split.extend(shape[dim + 1..].iter().cloned());
        Ok(g.reshape(x, &split)?)
    }

    /// Chunk `slot` of `x [b, h, n, chunk, d]`: `[b, h, chunk, d]`.
    fn one_chunk(&self, g: &mut Graph, x: Value, slot: usize) -> Result<Value> {
        let piece = g.slice(x, 2, slot, slot + 1, 1)?;
        self.merge_chunks(g, piece)
    }

    /// The first `count` chunks of `x [b, h, n, chunk, d]`: `[b, h, count · chunk, d]`.
    fn first_chunks(&self, g: &mut Graph, x: Value, count: usize) -> Result<Value> {
        let piece = g.slice(x, 2, 0, count, 1)?;
        self.merge_chunks(g, piece)
    }

    /// `[b, h, n, chunk, d]` as `[b, h, n · chunk, d]`.
    fn merge_chunks(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let shape = g.shape_of(x);
        let len = shape[2].mul(&shape[3]);
        let merged = [shape[0].clone(), shape[1].clone(), len, shape[4].clone()];
        Ok(g.reshape(x, &merged)?)
    }

    /// The segment ids of the first `count` chunks of the whole rows `ids [b, 2 · cp · chunk]`.
    fn first_segment_chunks(&self, g: &mut Graph, ids: Value, count: usize) -> Result<Value> {
        let chunks = self.split_chunks(g, ids, 1, 2 * self.cp)?;
        let first = g.slice(chunks, 1, 0, count, 1)?;
        let b = g.shape_of(ids)[0].clone();
        let len = self.chunk.mul(&Dim::fixed(count));
        Ok(g.reshape(first, &[b, len])?)
    }

    /// Every rank's `x [b, h, 2 · chunk, d]` gathered and put in sequence order:
    /// `[b, h, 2 · cp, chunk, d]`.
    fn gather_in_order(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let all = g.all_gather(x, CP_GROUP, self.cp, 2)?;
        // Rank r's rows hold chunks r and 2·cp − 1 − r, so they land at slots 2r and 2r + 1.
        let slots = self.split_chunks(g, all, 2, 2 * self.cp)?;
        let ordered = (0..2 * self.cp)
            .map(|c| {
                let slot = gathered_slot(self.cp, c);
                Ok(g.slice(slots, 2, slot, slot + 1, 1)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(g.concat(&ordered, 2)?)
    }
}

/// Where chunk `c` of a sequence sits among the `2 · cp` gathered chunks (rank order, each
/// rank's two chunks in its own order).
fn gathered_slot(cp: usize, c: usize) -> usize {
    let rank = c.min(2 * cp - 1 - c);
    2 * rank + usize::from(c >= cp)
}
