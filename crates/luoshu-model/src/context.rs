//! Context-parallel attention as a ring. Every sequence is cut into `2 · cp` equal chunks
//! and rank `r` of the context-parallel group holds chunks `r` and `2 · cp − 1 − r` (equal
//! causal work on every rank). Queries stay local; the keys and values of the rank's two
//! chunks (a block) travel around the ring: at step `s` a rank holds the block of rank
//! `(r − s) mod cp`, received by a ring shift from its predecessor, so it never holds more
//! than one peer's block (memory O(sequence / cp) per rank instead of the whole sequence's
//! keys and values an all-gather would hold). Each local query chunk `c` attends to each
//! key chunk `c' < c` in full, to `c' = c` causally, and skips `c' > c`; the partial
//! outputs merge by their log-sum-exp, which autodiff differentiates through attention's
//! lse gradient. Packed rows pass the whole rows' segment ids, of which a pair of chunks
//! uses the keys' then the queries' (documents may span chunk borders).

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

/// An attention output with its log-sum-exp: `out [b, hq, s, dv]`, `lse [b, hq, s]`.
type Partial = (Value, Value);

/// How a local query chunk sees the keys of one block (its holder's two chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockPart {
    /// Both key chunks precede the queries: attend to the whole block.
    Whole,
    /// One key chunk (slot 0 or 1 of the block) precedes the queries.
    Full(usize),
    /// One key chunk is the queries' own chunk: causal attention.
    Diagonal(usize),
}

/// What query chunk `c` computes in full against the block of key chunks `keys`
/// (ascending): the chunks before `c`, as one call when both are.
fn earlier_parts(keys: [usize; 2], c: usize) -> Vec<BlockPart> {
    if keys[1] < c {
        return vec![BlockPart::Whole];
    }
    (0..2)
        .filter(|&j| keys[j] < c)
        .map(BlockPart::Full)
        .collect()
}

/// One block of keys and values (`[b, hkv, 2 · chunk, ·]`) and the chunks it holds.
#[derive(Clone, Copy)]
struct Block {
    k: Value,
    v: Value,
    chunks: [usize; 2],
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
        let blocks = self.ring(g, k, v)?;
        let local = self.split_chunks(g, q, 2, 2)?;
        let own = context_chunks(self.cp, self.rank);
        let mut outs = Vec::with_capacity(2);
        for (slot, c) in own.into_iter().enumerate() {
            let queries = (self.one_chunk(g, local, slot)?, c);
            // Step 0's block is this rank's own: slot `slot` of it is the diagonal, where
            // every query sees at least itself, so the running lse starts finite.
            let diagonal = BlockPart::Diagonal(slot);
            let mut running = self.partial(g, queries, blocks[0], diagonal, segments, scale)?;
            for &block in &blocks {
                for part in earlier_parts(block.chunks, c) {
                    let partial = self.partial(g, queries, block, part, segments, scale)?;
                    running = merge(g, running, partial)?;
                }
            }
            // `[b, hq, 1, chunk, dv]`: chunks join along a fixed dim (a symbolic one
            // cannot be concatenated).
            let shape = g.shape_of(running.0);
            let one = [
                shape[0].clone(),
                shape[1].clone(),
                Dim::fixed(1),
                shape[2].clone(),
                shape[3].clone(),
            ];
            outs.push(g.reshape(running.0, &one)?);
        }
        let both = g.concat(&outs, 2)?;
        let shape = g.shape_of(both);
        let len = shape[2].mul(&shape[3]);
        let rows = [shape[0].clone(), shape[1].clone(), len, shape[4].clone()];
        Ok(g.reshape(both, &rows)?)
    }

    /// The block of every step: step `s` holds rank `(rank − s) mod cp`'s, shifted on from
    /// step `s − 1`'s by one place around the ring.
    fn ring(&self, g: &mut Graph, k: Value, v: Value) -> Result<Vec<Block>> {
        let mut block = Block {
            k,
            v,
            chunks: context_chunks(self.cp, self.rank),
        };
        let mut blocks = vec![block];
        for step in 1..self.cp {
            block = Block {
                k: g.ring_shift(block.k, CP_GROUP, self.cp, 1)?,
                v: g.ring_shift(block.v, CP_GROUP, self.cp, 1)?,
                chunks: context_chunks(self.cp, (self.rank + self.cp - step) % self.cp),
            };
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Attention of query chunk `c` (`q [b, hq, chunk, d]`) over `part` of `block`.
    fn partial(
        &self,
        g: &mut Graph,
        (q, c): (Value, usize),
        block: Block,
        part: BlockPart,
        segments: Option<Value>,
        scale: f64,
    ) -> Result<Partial> {
        let (k, v, key_chunks, causal) = match part {
            BlockPart::Whole => (block.k, block.v, block.chunks.to_vec(), false),
            BlockPart::Full(j) | BlockPart::Diagonal(j) => {
                let ks = self.split_chunks(g, block.k, 2, 2)?;
                let vs = self.split_chunks(g, block.v, 2, 2)?;
                let (k, v) = (self.one_chunk(g, ks, j)?, self.one_chunk(g, vs, j)?);
                let causal = matches!(part, BlockPart::Diagonal(_));
                (k, v, vec![block.chunks[j]], causal)
            }
        };
        Ok(match segments {
            // The diagonal's queries are its keys: their ids alone. Otherwise the keys'
            // ids, then the queries' own.
            Some(ids) => {
                let mut chunks = key_chunks;
                if !causal {
                    chunks.push(c);
                }
                let ids = self.segment_chunks(g, ids, &chunks)?;
                g.segmented_attention((q, k, v), ids, scale, causal)?
            }
            None => g.attention(q, k, v, scale, causal)?,
        })
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
        let shape = g.shape_of(piece);
        let merged = [
            shape[0].clone(),
            shape[1].clone(),
            shape[3].clone(),
            shape[4].clone(),
        ];
        Ok(g.reshape(piece, &merged)?)
    }

    /// The segment ids of `chunks` (in that order) of the whole rows
    /// `ids [b, 2 · cp · chunk]`: `[b, chunks.len() · chunk]`.
    fn segment_chunks(&self, g: &mut Graph, ids: Value, chunks: &[usize]) -> Result<Value> {
        let all = self.split_chunks(g, ids, 1, 2 * self.cp)?;
        let pieces = chunks
            .iter()
            .map(|&c| Ok(g.slice(all, 1, c, c + 1, 1)?))
            .collect::<Result<Vec<_>>>()?;
        let picked = g.concat(&pieces, 1)?;
        let b = g.shape_of(ids)[0].clone();
        let len = self.chunk.mul(&Dim::fixed(chunks.len()));
        Ok(g.reshape(picked, &[b, len])?)
    }
}

/// The log-sum-exp merge of two partial attentions of the same queries over disjoint keys:
/// `lse = log(e^lse₁ + e^lse₂)` (shifted by the larger for stability) and
/// `out = e^(lse₁ − lse)·out₁ + e^(lse₂ − lse)·out₂`. A row that saw no keys in one part
/// (`lse = −inf`, out 0) gets weight 0 there; `running` always saw some.
fn merge(g: &mut Graph, running: Partial, part: Partial) -> Result<Partial> {
    let (lse1, lse2) = (running.1, part.1);
    let top = g.maximum(lse1, lse2)?;
    let shifted1 = g.sub(lse1, top)?;
    let shifted2 = g.sub(lse2, top)?;
    let e1 = g.exp(shifted1)?;
    let e2 = g.exp(shifted2)?;
    let total = g.plus(e1, e2)?;
    let log_total = g.log(total)?;
    let lse = g.plus(top, log_total)?;
    let weighted1 = weighted(g, running, lse)?;
    let weighted2 = weighted(g, part, lse)?;
    Ok((g.plus(weighted1, weighted2)?, lse))
}

/// `out · e^(lse_part − lse)`, the weight broadcast over each row's features in `out`'s
/// dtype.
fn weighted(g: &mut Graph, (out, lse_part): Partial, lse: Value) -> Result<Value> {
    let shift = g.sub(lse_part, lse)?;
    let weight = g.exp(shift)?;
    let mut column = g.shape_of(lse);
    column.push(Dim::fixed(1));
    let weight = g.reshape(weight, &column)?;
    let weight = g.cast(weight, g.dtype_of(out))?;
    Ok(g.mul(out, weight)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over the ring's steps each local query chunk `c` attends to every key chunk
        /// `c' < c` exactly once in full and to its own chunk once causally, never to a later
        /// chunk, and every rank attends to the same number of key chunks (equal work).
        #[test]
        fn the_ring_covers_every_earlier_chunk_once_with_equal_work(cp in 1usize..9) {
            for rank in 0..cp {
                let mut work = 0;
                for c in context_chunks(cp, rank) {
                    let mut seen = vec![0; 2 * cp];
                    seen[c] += 1;
                    for step in 0..cp {
                        let keys = context_chunks(cp, (rank + cp - step) % cp);
                        for part in earlier_parts(keys, c) {
                            let chunks = match part {
                                BlockPart::Whole => keys.to_vec(),
                                BlockPart::Full(j) => vec![keys[j]],
                                BlockPart::Diagonal(_) => {
                                    return Err(TestCaseError::fail("a diagonal past step 0"))
                                }
                            };
                            for k in chunks {
                                seen[k] += 1;
                            }
                        }
                    }
                    let want: Vec<usize> = (0..2 * cp).map(|k| usize::from(k <= c)).collect();
                    prop_assert_eq!(&seen, &want, "rank {} chunk {}", rank, c);
                    work += seen.iter().sum::<usize>();
                }
                prop_assert_eq!(work, 2 * cp + 1, "rank {}", rank);
            }
        }
    }
}
