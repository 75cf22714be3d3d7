//! Which keys each query row sees: a window `lo..hi` of key positions per (batch, query).
//! The causal mask ends a window at the query (aligned at the end); packed segments start
//! it at the query's document start and end it at the document's end (queries sit at the
//! last `seq_q` positions of the ids: the keys' own when there are `seq_k` ids, their own
//! after the keys' when there are `seq_k + seq_q`). Along a row both
//! bounds only grow, so the keys a tile of queries sees, and the queries a tile of keys is
//! seen by, are contiguous ranges found from the tile's corners: every tile outside them is
//! skipped, which makes packed attention cost Σ len² instead of row_len².

use crate::cpu::rows::Acc;
use crate::{Error, Result};
use luoshu_tensor::{Borrows, DType, Tensor};
use std::ops::Range;

pub(super) struct Visibility {
    causal: bool,
    seq_q: usize,
    seq_k: usize,
    /// Ids per batch row: `seq_k`, or `seq_k + seq_q` when the queries have their own.
    ids_per_row: usize,
    /// Packed rows: `[b · ids_per_row]` first position and one past the last position of
    /// each id's document (a query sits at position `row + ids_per_row - seq_q`).
    documents: Option<(Vec<usize>, Vec<usize>)>,
}

impl Visibility {
    /// `segments` (contiguous `i64 [b, seq_k]` with `seq_q <= seq_k`, or `[b, seq_k +
    /// seq_q]`) must be non-decreasing along each row; a decrease is an error, since windows
    /// could not express it.
    pub fn new(
        op: &'static str,
        causal: bool,
        (seq_q, seq_k): (usize, usize),
        segments: Option<&Tensor>,
    ) -> Result<Visibility> {
        let documents = segments.map(|t| document_bounds(op, t)).transpose()?;
        Ok(Visibility {
            causal,
            seq_q,
            seq_k,
            ids_per_row: segments.map_or(seq_k, |t| t.dims()[1]),
            documents,
        })
    }

    /// Keys query `row` of batch row `b` sees.
    pub fn window(&self, b: usize, row: usize) -> Range<usize> {
        let (mut lo, mut hi) = (0, self.seq_k);
        if let Some((starts, ends)) = &self.documents {
            let n = self.ids_per_row;
            let at = b * n + row + (n - self.seq_q);
            // Positions past the keys are the queries' own ids: no key sits there.
            (lo, hi) = (starts[at].min(self.seq_k), ends[at].min(self.seq_k));
        }
        if self.causal {
            hi = hi.min((row + 1 + self.seq_k).saturating_sub(self.seq_q));
        }
        lo..hi.max(lo)
    }

    /// Keys any of the (non-empty) query rows `rows` sees.
    pub fn keys_of(&self, b: usize, rows: Range<usize>) -> Range<usize> {
        let (first, last) = (self.window(b, rows.start), self.window(b, rows.end - 1));
        first.start..last.end.max(first.start)
    }

    /// Query rows that see any of the (non-empty) keys `keys`.
    pub fn queries_of(&self, b: usize, keys: Range<usize>) -> Range<usize> {
        let begin = first_failing(self.seq_q, |r| self.window(b, r).end <= keys.start);
        let end = first_failing(self.seq_q, |r| self.window(b, r).start < keys.end);
        begin..end.max(begin)
    }

    /// Columns of the key tile starting at `col0`, `cols` wide, that query `row` sees.
    pub fn live_columns(&self, b: usize, row: usize, col0: usize, cols: usize) -> Range<usize> {
        let w = self.window(b, row);
        let lo = w.start.saturating_sub(col0).min(cols);
        lo..w.end.saturating_sub(col0).clamp(lo, cols)
    }
}

/// Part of a (query tile, key tile) pair: query rows `rows` and key columns `cols`, both as
/// offsets within their tiles, and `col0`, the key tile's first key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RowBlock {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub col0: usize,
}

/// Rows per block where a key tile is only partly visible (the causal diagonal, document
/// borders): each such block computes only the columns its rows see, so the diagonal tile
/// costs little more than its visible half instead of all of it.
pub(super) const RAGGED_ROWS: usize = 32;

impl Visibility {
    /// The blocks to compute for query rows `row0..row0 + rows` of batch row `b` against
    /// keys `col0..col0 + cols`: the rows that see the whole key tile as one block, the
    /// others in blocks of [`RAGGED_ROWS`] rows with their columns cut to what they see
    /// (blocks that see nothing are left out). Together they cover every visible pair.
    pub fn row_blocks(
        &self,
        b: usize,
        (row0, rows): (usize, usize),
        (col0, cols): (usize, usize),
        ragged_rows: usize,
    ) -> Vec<RowBlock> {
        let tile_end = col0 + cols;
        // Both window bounds grow along the rows, so the rows seeing the whole tile are a
        // contiguous range.
        let full_begin = first_failing(rows, |i| self.window(b, row0 + i).end < tile_end);
        let full_end = first_failing(rows, |i| self.window(b, row0 + i).start <= col0);
        let full = full_begin..full_end.max(full_begin);
        let block = |rows: Range<usize>| {
            let keys = self.keys_of(b, row0 + rows.start..row0 + rows.end);
            let (lo, hi) = (keys.start.max(col0), keys.end.min(tile_end));
            (lo < hi).then(|| RowBlock {
                rows,
                cols: lo - col0..hi - col0,
                col0,
            })
        };
        let ragged = |range: Range<usize>| {
            (range.start..range.end)
                .step_by(ragged_rows.max(1))
                .filter_map(move |r| block(r..(r + ragged_rows.max(1)).min(range.end)))
        };
        if full.len() < ragged_rows {
            return ragged(0..rows).collect();
        }
        ragged(0..full.start)
            .chain(block(full.clone()))
            .chain(ragged(full.end..rows))
            .collect()
    }
}

/// The first `i` in `0..n` where `holds(i)` is false, for a `holds` that is true on a
/// prefix and false after it.
fn first_failing(n: usize, holds: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Per token of `segments [b, s]`: where its document starts and ends.
fn document_bounds(op: &'static str, segments: &Tensor) -> Result<(Vec<usize>, Vec<usize>)> {
    let (b, s) = (segments.dims()[0], segments.dims()[1]);
    let borrows = Borrows::new();
    let start = segments.layout().offset();
    let ids: &[i64] = borrows.read(op, segments.storage(), DType::I64, start..start + b * s)?;
    let mut starts = vec![0; b * s];
    let mut ends = vec![0; b * s];
    for (row, (ids, (starts, ends))) in ids
        .chunks_exact(s.max(1))
        .zip(
            starts
                .chunks_exact_mut(s.max(1))
                .zip(ends.chunks_exact_mut(s.max(1))),
        )
        .enumerate()
    {
        for i in 1..s {
            if ids[i] < ids[i - 1] {
                return Err(Error::invalid(
                    op,
                    format!(
                        "segment ids must not decrease along a row; row {row} has {} then {} at position {i}",
                        ids[i - 1],
                        ids[i]
                    ),
                ));
            }
            starts[i] = if ids[i] == ids[i - 1] {
                starts[i - 1]
            } else {
                i
            };
        }
        let mut end = s;
        for i in (0..s).rev() {
            ends[i] = end;
            if starts[i] == i {
                end = i;
            }
        }
    }
    Ok((starts, ends))
}

/// Sets the scores of `row` outside `live` to `-inf` and returns the live ones.
pub(super) fn mask_outside<A: Acc>(row: &mut [A], live: Range<usize>) -> &mut [A] {
    let (hidden_before, rest) = row.split_at_mut(live.start);
    hidden_before.fill(A::NEG_INFINITY);
    let (live, hidden_after) = rest.split_at_mut(live.len());
    hidden_after.fill(A::NEG_INFINITY);
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Non-decreasing segment ids for `rows` rows of `len` tokens, from document lengths.
    fn segments(rows: usize, len: usize, doc_lengths: &[usize]) -> Tensor {
        let mut ids = Vec::with_capacity(rows * len);
        for _ in 0..rows {
            let (mut id, mut left, mut docs) = (0i64, 0usize, doc_lengths.iter().cycle());
            for _ in 0..len {
                if left == 0 {
                    id += 1;
                    left = *docs.next().unwrap_or(&1);
                }
                ids.push(id);
                left -= 1;
            }
        }
        Tensor::from_vec(ids, vec![rows, len]).expect("ids fit their shape")
    }

    proptest! {
        /// Every visible (query, key) pair of a tile pair lies in exactly one block, blocks
        /// never share a row range, and each block's columns stay inside the key tile.
        #[test]
        fn row_blocks_cover_every_visible_pair_exactly_once(
            causal in any::<bool>(),
            packed in any::<bool>(),
            seq_k in 1usize..200,
            extra_keys in 0usize..40,
            doc_lengths in proptest::collection::vec(1usize..60, 1..6),
            tile in (0usize..200, 1usize..140, 0usize..200, 1usize..140),
            ragged_rows in 1usize..48,
        ) {
            let seq_q = seq_k.saturating_sub(extra_keys).max(1);
            let ids = segments(1, seq_k, &doc_lengths);
            let vis = Visibility::new("test", causal, (seq_q, seq_k), packed.then_some(&ids))
                .expect("ids never decrease");
            let (row0, rows) = (tile.0 % seq_q, tile.1.min(seq_q - tile.0 % seq_q));
            let (col0, cols) = (tile.2 % seq_k, tile.3.min(seq_k - tile.2 % seq_k));
            let blocks = vis.row_blocks(0, (row0, rows), (col0, cols), ragged_rows);
            for pair in blocks.windows(2) {
                prop_assert!(pair[0].rows.end <= pair[1].rows.start, "{blocks:?}");
            }
            for block in &blocks {
                prop_assert!(!block.cols.is_empty() && block.cols.end <= cols && block.col0 == col0);
                prop_assert!(!block.rows.is_empty() && block.rows.end <= rows);
            }
            for r in 0..rows {
                let window = vis.window(0, row0 + r);
                for c in 0..cols {
                    let covering = blocks
                        .iter()
                        .filter(|b| b.rows.contains(&r) && b.cols.contains(&c))
                        .count();
                    if window.contains(&(col0 + c)) {
                        prop_assert_eq!(covering, 1, "row {} key {} in {:?}", r, c, blocks);
                    }
                }
            }
        }
    }

    #[test]
    fn the_causal_diagonal_tile_is_cut_into_ragged_blocks_and_a_full_one_stays_whole() {
        let vis = Visibility::new("test", true, (256, 256), None).expect("no segments");
        let full = vis.row_blocks(0, (128, 128), (0, 128), 32);
        assert_eq!(
            full,
            vec![RowBlock {
                rows: 0..128,
                cols: 0..128,
                col0: 0
            }]
        );
        let diagonal = vis.row_blocks(0, (128, 128), (128, 128), 32);
        let widths: Vec<_> = diagonal
            .iter()
            .map(|b| (b.rows.clone(), b.cols.clone()))
            .collect();
        assert_eq!(
            widths,
            vec![
                (0..32, 0..32),
                (32..64, 0..64),
                (64..96, 0..96),
                (96..128, 0..128)
            ]
        );
    }
}
