//! Dealing a global batch's micro-batches to data-parallel ranks balanced by tokens, not
//! by count: long-tailed buckets make micro-batches of very different sizes.

/// The rank of each item: largest first (ties by index), each to the rank with the fewest
/// tokens so far (ties to the lowest rank). Deterministic, so every rank computes the same
/// dealing; the heaviest rank carries at most the lightest's load plus one item.
pub(crate) fn deal_by_tokens(tokens: &[usize], ranks: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(tokens[i]), i));
    let mut load = vec![0usize; ranks.max(1)];
    let mut owner = vec![0; tokens.len()];
    for i in order {
        let rank = (0..load.len())
            .min_by_key(|&r| (load[r], r))
            .expect("at least one rank");
        load[rank] += tokens[i];
        owner[i] = rank;
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_long_micro_batch_is_balanced_by_short_ones() {
        // Round robin would give rank 0 the two long ones (1024 + 1024 vs 64 + 64).
        assert_eq!(deal_by_tokens(&[1024, 64, 1024, 64], 2), vec![0, 0, 1, 1]);
    }

    proptest! {
        #[test]
        fn loads_differ_by_at_most_one_item(
            tokens in prop::collection::vec(1usize..5000, 0..40),
            ranks in 1usize..6,
        ) {
            let owner = deal_by_tokens(&tokens, ranks);
            let mut load = vec![0usize; ranks];
            for (i, &r) in owner.iter().enumerate() {
                prop_assert!(r < ranks);
                load[r] += tokens[i];
            }
            let biggest = tokens.iter().copied().max().unwrap_or(0);
            let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            prop_assert!(hi - lo <= biggest);
        }
    }
}
