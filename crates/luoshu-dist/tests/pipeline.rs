//! Pipeline schedule and stage balancing.

use luoshu_dist::pipeline::simulate;
use luoshu_dist::{
    balance_stages, one_f_one_b, shard_range, simulate_schedule, Error, OrderProblem,
    PipelineAction,
};
use proptest::prelude::*;
use std::ops::Range;

use PipelineAction::{Backward as B, Forward as F};

#[test]
fn one_f_one_b_matches_megatron_order() {
    assert_eq!(
        one_f_one_b(4, 0, 5),
        [F(0), F(1), F(2), F(3), B(0), F(4), B(1), B(2), B(3), B(4)]
    );
    assert_eq!(
        one_f_one_b(4, 2, 5),
        [F(0), F(1), B(0), F(2), B(1), F(3), B(2), F(4), B(3), B(4)]
    );
    assert_eq!(one_f_one_b(4, 3, 2), [F(0), B(0), F(1), B(1)]);
    // Fewer micro-batches than warm-up slots: all forwards, then all backwards.
    assert_eq!(one_f_one_b(4, 0, 2), [F(0), F(1), B(0), B(1)]);
    assert!(one_f_one_b(2, 2, 3).is_empty());
}

#[test]
fn every_stage_runs_each_forward_then_backward_once_within_its_memory_bound() {
    for stages in 1..=8 {
        for micro_batches in 1..=16 {
            for stage in 0..stages {
                let order = one_f_one_b(stages, stage, micro_batches);
                assert_eq!(order.len(), 2 * micro_batches);
                let mut in_flight = 0usize;
                let mut peak = 0;
                for (i, &action) in order.iter().enumerate() {
                    match action {
                        F(m) => {
                            assert_eq!(order.iter().filter(|&&a| a == F(m)).count(), 1);
                            in_flight += 1;
                        }
                        B(m) => {
                            assert_eq!(order.iter().filter(|&&a| a == B(m)).count(), 1);
                            assert!(order[..i].contains(&F(m)), "{order:?}");
                            in_flight -= 1;
                        }
                    }
                    peak = peak.max(in_flight);
                }
                assert!(
                    peak <= stages - stage,
                    "stage {stage}/{stages}: peak {peak}"
                );
            }
        }
    }
}

#[test]
fn one_f_one_b_never_deadlocks_and_has_the_textbook_bubble() {
    let (fwd, bwd) = (1.0, 2.0);
    for stages in 1..=8 {
        for micro_batches in 1..=16 {
            let makespan = simulate_schedule(stages, micro_batches, fwd, bwd)
                .unwrap_or_else(|e| panic!("{stages} stages, {micro_batches} micro-batches: {e}"));
            // Ideal M·(f+b) plus the (S-1)·(f+b) bubble of a non-interleaved schedule.
            let expected = (micro_batches + stages - 1) as f64 * (fwd + bwd);
            assert_eq!(
                makespan, expected,
                "{stages} stages, {micro_batches} micro-batches"
            );
        }
    }
}

#[test]
fn simulation_detects_deadlock_and_malformed_orders() {
    // Stage 0 waits for gradient 0 before sending activation 1, which stage 1 needs
    // before it computes gradient 0.
    let deadlock = vec![vec![F(0), B(0), F(1), B(1)], vec![F(0), F(1), B(0), B(1)]];
    let err = simulate(&deadlock, 2, 1.0, 1.0).unwrap_err();
    assert!(
        matches!(&err, Error::PipelineDeadlock { waiting } if waiting.len() == 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("deadlock"), "{err}");
    let backward_first = vec![vec![B(0), F(0)]];
    let err = simulate(&backward_first, 1, 1.0, 1.0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PipelineOrder {
                stage: 0,
                problem: OrderProblem::BackwardBeforeForward(0),
                ..
            }
        ),
        "{err:?}"
    );
    let missing = vec![vec![F(0), B(0)]];
    let err = simulate(&missing, 2, 1.0, 1.0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PipelineOrder {
                problem: OrderProblem::Incomplete(1),
                ..
            }
        ),
        "{err:?}"
    );
    let err = simulate(&[], 1, 1.0, 1.0).unwrap_err();
    assert!(matches!(err, Error::NoPipelineStages), "{err:?}");
}

#[test]
fn balance_rejects_bad_stage_counts_and_costs() {
    for stages in [0, 3] {
        let err = balance_stages(&[1.0, 2.0], stages).unwrap_err();
        assert!(
            matches!(err, Error::StageCount { layers: 2, stages: s } if s == stages),
            "{err:?}"
        );
    }
    for bad in [-2.0, f64::NAN] {
        let err = balance_stages(&[1.0, bad], 1).unwrap_err();
        assert!(matches!(err, Error::LayerCost { layer: 1, .. }), "{err:?}");
    }
}

#[test]
fn balance_finds_the_optimum_of_a_known_case() {
    let ranges = balance_stages(&[4.0, 1.0, 1.0, 1.0, 1.0, 4.0], 3).unwrap();
    assert_eq!(ranges, [0..1, 1..5, 5..6]);
}

fn max_cost(costs: &[f64], ranges: &[Range<usize>]) -> f64 {
    ranges
        .iter()
        .map(|r| costs[r.clone()].iter().sum::<f64>())
        .fold(0.0, f64::max)
}

/// Costs and a stage count with `1 <= stages <= layers`, and random cut points for a
/// contiguous partition into that many stages.
fn costs_and_cuts() -> impl Strategy<Value = (Vec<f64>, usize, Vec<usize>)> {
    // Integer-valued costs keep sums exact whatever the summation order.
    prop::collection::vec(0u16..100, 1..24).prop_flat_map(|costs| {
        let layers = costs.len();
        let costs: Vec<f64> = costs.into_iter().map(f64::from).collect();
        (1..=layers).prop_flat_map(move |stages| {
            let cuts = prop::sample::subsequence((1..layers).collect::<Vec<_>>(), stages - 1);
            (Just(costs.clone()), Just(stages), cuts)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn balance_is_a_contiguous_partition_no_worse_than_others(
        (costs, stages, cuts) in costs_and_cuts()
    ) {
        let ranges = balance_stages(&costs, stages).unwrap();
        prop_assert_eq!(ranges.len(), stages);
        prop_assert_eq!(ranges[0].start, 0);
        prop_assert_eq!(ranges[stages - 1].end, costs.len());
        for pair in ranges.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        prop_assert!(ranges.iter().all(|r| !r.is_empty()));
        let best = max_cost(&costs, &ranges);

        let even: Vec<_> = (0..stages).map(|i| shard_range(costs.len(), stages, i)).collect();
        prop_assert!(best <= max_cost(&costs, &even));

        let bounds: Vec<usize> = std::iter::once(0)
            .chain(cuts)
            .chain(std::iter::once(costs.len()))
            .collect();
        let random: Vec<_> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
        prop_assert!(best <= max_cost(&costs, &random));
    }
}
