//! Dealing a global batch's micro-batches to data-parallel ranks balanced by their
//! training work, not by count: long-tailed buckets make micro-batches of very different
//! sizes, and a packed row of short documents costs less attention than one long
//! document of the same length.

use luoshu_data::MicroBatch;
use luoshu_model::ModelConfig;

/// Training FLOPs of `micro` under `model` (the estimate of
/// [`ModelConfig::flops_per_token_at`]): every token slot, padding included, through the
/// matmuls, plus attention over each row's segments — `len²` (token, key) pairs per
/// document, the padding after a packed row's documents being one more segment, and an
/// unpacked row one segment of its whole length.
pub(crate) fn micro_batch_work(model: &ModelConfig, micro: &MicroBatch) -> f64 {
    let per_token = model.flops_per_token_at(0);
    let per_pair = model.flops_per_token_at(1) - per_token;
    let seq = micro.seq_len;
    let pairs: usize = match &micro.documents {
        None => micro.rows * seq * seq,
        Some(documents) => documents
            .rows
            .iter()
            .map(|row| {
                let padding = seq.saturating_sub(row.iter().sum::<usize>());
                row.iter().map(|len| len * len).sum::<usize>() + padding * padding
            })
            .sum(),
    };
    (micro.rows * seq) as f64 * per_token + pairs as f64 * per_pair
}

/// The rank of each item: the heaviest first (ties by index), each to the rank with the
/// least work so far (ties to the lowest rank). Deterministic, so every rank computes the
/// same dealing; the busiest rank carries at most the idlest's load plus one item.
pub(crate) fn deal_by_work(work: &[f64], ranks: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by(|&a, &b| work[b].total_cmp(&work[a]).then(a.cmp(&b)));
    let mut load = vec![0f64; ranks.max(1)];
    let mut owner = vec![0; work.len()];
    for i in order {
        let rank = (0..load.len())
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one rank");
        load[rank] += work[i];
        owner[i] = rank;
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_data::RowDocuments;
    use proptest::prelude::*;

    #[test]
    fn a_long_micro_batch_is_balanced_by_short_ones() {
        // Round robin would give rank 0 the two long ones (1024 + 1024 vs 64 + 64).
        assert_eq!(
            deal_by_work(&[1024.0, 64.0, 1024.0, 64.0], 2),
            vec![0, 0, 1, 1]
        );
    }

    fn micro(rows: usize, seq_len: usize, documents: Option<Vec<Vec<usize>>>) -> MicroBatch {
        MicroBatch {
            rows,
            seq_len,
            inputs: vec![0; rows * seq_len],
            targets: vec![0; rows * seq_len],
            target_tokens: rows * seq_len,
            documents: documents.map(|rows| RowDocuments { rows }),
        }
    }

    #[test]
    fn packed_short_documents_cost_less_attention_than_one_long_document() {
        let model = ModelConfig::preset("tiny").unwrap();
        let per_token = model.flops_per_token_at(0);
        let per_pair = model.flops_per_token_at(1) - per_token;
        let whole = micro_batch_work(&model, &micro(1, 256, None));
        assert_eq!(whole, 256.0 * per_token + 256.0 * 256.0 * per_pair);
        // Four documents of 60 and 16 padding slots: the same matmuls, far fewer pairs.
        let packed = micro_batch_work(&model, &micro(1, 256, Some(vec![vec![60; 4]])));
        assert_eq!(
            packed,
            256.0 * per_token + (4.0 * 3600.0 + 256.0) * per_pair
        );
        // Token counts would deal the three rows 2 : 1; by work the packed ones pair up
        // against the long one.
        assert!(packed < whole);
        assert_eq!(deal_by_work(&[whole, packed, packed], 2), vec![0, 1, 1]);
    }

    proptest! {
        #[test]
        fn loads_differ_by_at_most_one_item(
            work in prop::collection::vec(1usize..5000, 0..40),
            ranks in 1usize..6,
        ) {
            let work: Vec<f64> = work.into_iter().map(|w| w as f64).collect();
            let owner = deal_by_work(&work, ranks);
            let mut load = vec![0f64; ranks];
            for (i, &r) in owner.iter().enumerate() {
                prop_assert!(r < ranks);
                load[r] += work[i];
            }
            let biggest = work.iter().copied().fold(0.0, f64::max);
            let lo = load.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = load.iter().copied().fold(0.0, f64::max);
            prop_assert!(hi - lo <= biggest);
        }
    }
}
