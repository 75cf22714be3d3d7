//! Packing: first-fit-decreasing bins, per-token document ids and positions, and the
//! packed loader (same documents and targets as unpacked, none crossing a document, less
//! padding).
use luoshu_data::{
    first_fit_decreasing, LengthBucketLoader, LoaderConfig, MicroBatch, RowDocuments, IGNORE_INDEX,
};
use proptest::prelude::*;

proptest! {
    /// Every item lands in exactly one bin, no bin overflows, and (first fit) no two bins
    /// are both at most half full.
    #[test]
    fn first_fit_decreasing_fills_bins(
        lengths in prop::collection::vec(1usize..=16, 0..40),
        capacity in 16usize..40,
    ) {
        let bins = first_fit_decreasing(&lengths, capacity);
        let mut seen: Vec<usize> = bins.iter().flatten().copied().collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        let fills: Vec<usize> = bins.iter().map(|b| b.iter().map(|&i| lengths[i]).sum()).collect();
        prop_assert!(fills.iter().all(|&f| f <= capacity), "{:?}", fills);
        prop_assert!(fills.iter().filter(|&&f| 2 * f <= capacity).count() <= 1, "{:?}", fills);
    }

    /// Ids never decrease along a row and positions restart at 0 wherever the id changes.
    #[test]
    fn segment_ids_and_positions_follow_documents(
        rows in prop::collection::vec(prop::collection::vec(1usize..6, 0..5), 1..4),
        extra in 0usize..4,
    ) {
        let seq_len = rows.iter().map(|r| r.iter().sum::<usize>()).max().unwrap_or(0) + extra;
        let documents = RowDocuments { rows };
        let (ids, positions) = (documents.segment_ids(seq_len), documents.positions(seq_len));
        prop_assert_eq!(ids.len(), documents.rows.len() * seq_len);
        for (row, (ids, positions)) in ids.chunks(seq_len.max(1)).zip(positions.chunks(seq_len.max(1))).enumerate() {
            for t in 0..ids.len() {
                let new_document = t == 0 || ids[t] != ids[t - 1];
                prop_assert!(t == 0 || ids[t] >= ids[t - 1]);
                prop_assert_eq!(positions[t] == 0, new_document, "row {} token {}", row, t);
            }
        }
    }
}

#[test]
fn ids_and_positions_of_a_row_with_padding() {
    let documents = RowDocuments {
        rows: vec![vec![2, 1, 3], vec![6]],
    };
    assert_eq!(
        documents.segment_ids(8),
        [0, 0, 1, 2, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 1, 1]
    );
    assert_eq!(
        documents.positions(8),
        [0, 1, 0, 0, 1, 2, 0, 1, 0, 1, 2, 3, 4, 5, 0, 1]
    );
}

/// Document `i` holds tokens `1000·i + j`, so a token names its document.
fn documents() -> Vec<Vec<u32>> {
    let lengths = [3, 9, 17, 2, 33, 5, 12, 40, 7, 2, 25, 16, 8, 31, 4];
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| 1000 * i as u32 + j).collect())
        .collect()
}

fn loader(packing: bool) -> LengthBucketLoader {
    let config = LoaderConfig {
        max_len: 32,
        bucket_edges: vec![8, 32],
        tokens_per_micro_batch: 64,
        global_batch_tokens: 10_000,
        seed: 5,
        packing,
    };
    LengthBucketLoader::new(config, &documents(), 0).unwrap()
}

/// `(input, target)` pairs of the real tokens.
fn pairs(micro: &MicroBatch) -> Vec<(i64, i64)> {
    let zip = micro.inputs.iter().zip(&micro.targets);
    zip.filter(|(_, &t)| t != IGNORE_INDEX)
        .map(|(&i, &t)| (i, t))
        .collect()
}

#[test]
fn packed_batches_hold_the_same_tokens_without_crossing_documents() {
    let (mut unpacked, mut packed) = (loader(false), loader(true));
    let (a, b) = (unpacked.next_batch(), packed.next_batch());
    assert_eq!(a.target_tokens, b.target_tokens);
    assert_eq!(a.buckets.len(), b.buckets.len());
    for (a, b) in a.buckets.iter().zip(&b.buckets) {
        assert_eq!(a.seq_len, b.seq_len);
        let micro = |bucket: &luoshu_data::BucketBatch| {
            let mut all: Vec<(i64, i64)> = bucket.micro_batches.iter().flat_map(pairs).collect();
            all.sort_unstable();
            all
        };
        assert_eq!(micro(a), micro(b));
        let rows = |bucket: &luoshu_data::BucketBatch| -> usize {
            bucket.micro_batches.iter().map(|m| m.rows).sum()
        };
        assert!(rows(b) < rows(a), "packing uses fewer rows");
        for m in &b.micro_batches {
            assert!(m.rows * m.seq_len <= 64 || m.rows == 1);
            let documents = m.documents.as_ref().unwrap();
            let ids = documents.segment_ids(m.seq_len);
            for (t, (&input, &target)) in m.inputs.iter().zip(&m.targets).enumerate() {
                if target != IGNORE_INDEX {
                    assert_eq!(input / 1000, target / 1000, "token {t} predicts across");
                    assert_eq!(target, input + 1);
                }
                let same_document_before = t % m.seq_len > 0 && ids[t - 1] == ids[t];
                if same_document_before && m.targets[t - 1] != IGNORE_INDEX {
                    assert_eq!(m.targets[t - 1], input, "document continues at token {t}");
                }
            }
        }
    }
    assert!(a
        .buckets
        .iter()
        .flat_map(|b| &b.micro_batches)
        .all(|m| m.documents.is_none()));
}

#[test]
fn packing_lowers_the_padding_of_every_bucket() {
    let (unpacked, packed) = (
        loader(false).padding_by_bucket(),
        loader(true).padding_by_bucket(),
    );
    assert_eq!(unpacked.len(), 2);
    for (u, p) in unpacked.iter().zip(&packed) {
        assert_eq!(u.seq_len, p.seq_len);
        assert!(p.padding_fraction < u.padding_fraction, "{u:?} vs {p:?}");
        assert!(
            p.rows < u.rows && p.padding_fraction >= 0.0,
            "{u:?} vs {p:?}"
        );
    }
    // Unpacked, the 8-long bucket holds one sequence of at most 8 targets per row.
    let short: Vec<usize> = loader(false)
        .sequence_lengths()
        .filter(|&l| l <= 8)
        .collect();
    let expected = 1.0 - short.iter().sum::<usize>() as f64 / (8 * short.len()) as f64;
    assert_eq!(unpacked[0].rows, short.len());
    assert!(
        (unpacked[0].padding_fraction - expected).abs() < 1e-12,
        "{unpacked:?}"
    );
}
