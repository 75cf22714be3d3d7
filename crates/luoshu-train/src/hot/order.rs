//! The order of a step's phases: the one whose gradient-accumulator switches move the
//! fewest planned bytes, found by trying every order (at most 6 phases, 720 orders, over a
//! table of pairwise costs).

use crate::{Error, Result};

/// Phases beyond this make the exact search too slow to run every step.
pub const MAX_PHASES: usize = 6;

/// The order of `phases` (indices into a cost table) minimizing
/// `Σ between[a][b]` over consecutive phases plus `to_update[last]`, with `last_fixed`
/// (the update strategy's own phase, which needs no final switch) kept last when given.
/// Ties keep the given order (the first minimal permutation in lexicographic order).
pub fn best_order(
    phases: &[usize],
    between: &[Vec<usize>],
    to_update: &[usize],
    last_fixed: Option<usize>,
) -> Result<Vec<usize>> {
    let free: Vec<usize> = phases
        .iter()
        .copied()
        .filter(|&p| Some(p) != last_fixed)
        .collect();
    if free.len() > MAX_PHASES {
        return Err(Error::Config(format!(
            "{} strategies in one step: hot switching orders at most {MAX_PHASES}; merge \
             buckets so fewer strategies are used",
            free.len()
        )));
    }
    let cost = |order: &[usize]| -> usize {
        let mut total: usize = order.windows(2).map(|w| between[w[0]][w[1]]).sum();
        match (order.last(), last_fixed) {
            (Some(&last), Some(fixed)) => total += between[last][fixed],
            (Some(&last), None) => total += to_update[last],
            (None, _) => {}
        }
        total
    };
    let mut best = free.clone();
    let mut best_cost = cost(&free);
    let mut current = free.clone();
    permute(&mut current, 0, &mut |order| {
        let c = cost(order);
        if c < best_cost {
            best_cost = c;
            best = order.to_vec();
        }
    });
    best.extend(last_fixed);
    Ok(best)
}

/// Calls `visit` with every permutation of `items[k..]` (prefix fixed).
fn permute(items: &mut Vec<usize>, k: usize, visit: &mut dyn FnMut(&[usize])) {
    if k == items.len() {
        visit(items);
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permute(items, k + 1, visit);
        items.swap(k, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheapest_chain_wins_and_the_update_phase_stays_last() {
        // Costs between phases 0, 1, 2; switching 0 → 2 is free.
        let between = vec![vec![0, 9, 0], vec![1, 0, 9], vec![9, 1, 0]];
        let order = best_order(&[0, 1, 2], &between, &[5, 0, 5], None).unwrap();
        assert_eq!(order, vec![0, 2, 1]);
        let fixed = best_order(&[0, 1, 2], &between, &[0, 0, 0], Some(0)).unwrap();
        assert_eq!(*fixed.last().unwrap(), 0);
        assert_eq!(fixed.len(), 3);
        assert!(best_order(
            &(0..8).collect::<Vec<_>>(),
            &vec![vec![0; 8]; 8],
            &[0; 8],
            None
        )
        .is_err());
    }
}
