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
