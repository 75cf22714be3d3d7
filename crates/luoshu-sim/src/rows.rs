//! From document lengths to micro-batches: packed rows (first-fit decreasing, attention
//! per document) or one padded row per document.

use crate::ops::{causal_pairs, Work};

/// Documents (by length, each at most `capacity`) packed into rows of `capacity` tokens:
/// longest first, each into the first row it fits. Returns the lengths in each row.
pub fn first_fit_decreasing(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for len in sorted {
        match rows.iter_mut().find(|(used, _)| used + len <= capacity) {
            Some((used, docs)) => {
                *used += len;
                docs.push(len);
            }
            None => rows.push((len, vec![len])),
        }
    }
    rows.into_iter().map(|(_, docs)| docs).collect()
}

/// Packed rows of `capacity` tokens (padded to it), attention per document.
pub fn packed(lengths: &[usize], capacity: usize) -> Vec<Work> {
    first_fit_decreasing(lengths, capacity)
        .iter()
        .map(|docs| Work::packed(capacity, docs))
        .collect()
}

/// One row of `context` tokens per document, attention over the whole padded row.
pub fn padded(lengths: &[usize], context: usize) -> Vec<Work> {
    lengths
        .iter()
        .map(|_| Work {
            tokens: context as f64,
            pairs: causal_pairs(context),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packing_by_hand() {
        let rows = first_fit_decreasing(&[3, 5, 2, 6, 4], 8);
        assert_eq!(rows, vec![vec![6, 2], vec![5, 3], vec![4]]);
        let work = packed(&[3, 5], 8);
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].pairs, 6.0 + 15.0);
    }

    proptest! {
        #[test]
        fn every_document_is_packed_once_and_rows_fit(
            lengths in prop::collection::vec(1usize..64, 0..40),
        ) {
            let rows = first_fit_decreasing(&lengths, 64);
            let mut packed: Vec<usize> = rows.iter().flatten().copied().collect();
            let mut given = lengths.clone();
            packed.sort_unstable();
            given.sort_unstable();
            prop_assert_eq!(packed, given);
            prop_assert!(rows.iter().all(|r| r.iter().sum::<usize>() <= 64));
        }
    }
}
