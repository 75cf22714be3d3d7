//! Sequence packing: several documents share one row of a micro-batch, so no compute is
//! spent on padding. Rows are filled first-fit-decreasing; [`RowDocuments`] records where
//! each document lies, from which the model takes per-token document ids (attention stays
//! inside a document) and positions (RoPE restarts at every document).

/// The documents of each row of a packed micro-batch: their lengths, in order from
/// position 0; whatever follows the last document is padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDocuments {
    /// Per row, the lengths of its documents in order.
    pub rows: Vec<Vec<usize>>,
}

impl RowDocuments {
    /// Document id of every token (`[rows × seq_len]`, row-major): documents of a row are
    /// numbered from 0 and the padding after them is one more segment, so ids never
    /// decrease along a row.
    pub fn segment_ids(&self, seq_len: usize) -> Vec<i64> {
        self.per_token(seq_len, |document, _| document as i64)
    }

    /// Position of every token inside its document (the padding segment counts from 0 too).
    pub fn positions(&self, seq_len: usize) -> Vec<usize> {
        self.per_token(seq_len, |_, position| position)
    }

    /// `f(document index, position in document)` for every token of every row.
    fn per_token<T>(&self, seq_len: usize, f: impl Fn(usize, usize) -> T) -> Vec<T> {
        let mut out = Vec::with_capacity(self.rows.len() * seq_len);
        for documents in &self.rows {
            let used: usize = documents.iter().sum();
            let padding = seq_len.saturating_sub(used);
            for (document, &len) in documents.iter().chain([&padding]).enumerate() {
                out.extend((0..len).map(|position| f(document, position)));
            }
        }
        out
    }
}

/// Bins (indices into `lengths`, in placement order) that hold every item once, none
/// holding more than `capacity`: items longest first (ties by index, so the result is
/// deterministic), each into the first bin with room, else a new bin. Items longer than
/// `capacity` get a bin of their own.
pub fn first_fit_decreasing(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    let mut bins: Vec<Vec<usize>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for i in order {
        let len = lengths[i];
        match free.iter().position(|&room| room >= len) {
            Some(bin) => {
                bins[bin].push(i);
                free[bin] -= len;
            }
            None => {
                bins.push(vec![i]);
                free.push(capacity.saturating_sub(len));
            }
        }
    }
    bins
}
