//! Hot switching trains exactly like one device: each length bucket runs under its own
//! strategy, parameters and the gradient accumulator switch between layouts, and one
//! update per step gives the single-device results. Checked as every static strategy is
//! (`tests/parallel.rs`): after each of 5 steps, on every rank, the loss, the gradient
//! norm before clipping, every parameter element and both AdamW moments in the update
//! strategy's layout (fp32, rtol 1e-5; see `parallel::compare`), for the tied model and
//! the GQA model with an untied head, with clipping on and off. The check fails when one
//! phase's gradients are doubled.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::GlobalBatch;
use luoshu_dist::Strategy;
use luoshu_train::hot::check::check_hot_rank;
use luoshu_train::hot::{BucketStrategies, HotSwitchTrainer};
use luoshu_train::parallel::compare::Agreement;
use luoshu_train::parallel::conformance::{
    all_references, batch, model, reference_on, train_config, Case, Reference, SEED,
};
use luoshu_train::parallel::GradientFault;
use std::sync::{Arc, OnceLock};

const STEPS: usize = 5;

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// One device's run of every case, computed once per test binary.
fn references() -> &'static [Reference] {
    static REFERENCES: OnceLock<Vec<Reference>> = OnceLock::new();
    REFERENCES.get_or_init(|| all_references(backend(), STEPS).unwrap())
}

/// Every rank's result of checking hot switching over `edges` with update strategy
/// `update` against `reference`, with `fault` injected.
fn check_all_ranks(
    edges: &str,
    update: &str,
    reference: &Reference,
    fault: Option<(Strategy, GradientFault)>,
) -> Vec<Result<Agreement, String>> {
    let buckets: BucketStrategies = edges.parse().unwrap();
    let update: Strategy = update.parse().unwrap();
    threads::run(buckets.devices(), |world| {
        check_hot_rank(backend(), world, &buckets, update, reference, fault)
            .map_err(|e| e.to_string())
    })
}

/// The strong check on every rank of every case all the strategies support.
fn check_equivalent(edges: &str, update: &str) {
    let buckets: BucketStrategies = edges.parse().unwrap();
    let update_strategy: Strategy = update.parse().unwrap();
    let mut cases = 0;
    for reference in references() {
        let case = &reference.case;
        if !buckets.strategies().into_iter().all(|s| case.supports(s))
            || !case.supports(update_strategy)
        {
            continue;
        }
        let mut worst = Agreement::default();
        let mut errors = Vec::new();
        for result in check_all_ranks(edges, update, reference, None) {
            match result {
                Ok(a) => worst.merge(a),
                Err(e) => errors.push(e),
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        eprintln!(
            "hot {edges} → {update} {}: worst {:.3} at {}",
            case.name, worst.ratio, worst.at
        );
        cases += 1;
    }
    assert!(
        cases >= 2,
        "hot {edges} → {update} runs only {cases} case(s)"
    );
}

/// The strategies of each step's phases, in the order they ran, and rank 0's losses.
fn phases_of(edges: &str, update: &str, batches: fn(usize) -> GlobalBatch) -> Vec<Vec<String>> {
    let buckets: BucketStrategies = edges.parse().unwrap();
    let update: Strategy = update.parse().unwrap();
    let mut results = threads::run(buckets.devices(), |world| {
        let mut trainer = HotSwitchTrainer::new(
            model(),
            train_config(),
            backend(),
            world,
            buckets.clone(),
            update,
            SEED,
        )
        .unwrap();
        (0..2)
            .map(|step| {
                let stats = trainer.train_step(&batches(step)).unwrap();
                stats
                    .phases
                    .iter()
                    .map(|p| p.strategy.to_string())
                    .collect()
            })
            .collect()
    });
    results.remove(0)
}

#[test]
fn data_and_tensor_parallel_buckets_equal_one_device() {
    check_equivalent("7:dp2,13:tp2", "tp2");
    // The update strategy's phase runs last (it needs no final switch).
    let phases = phases_of("7:dp2,13:tp2", "tp2", batch);
    assert!(phases.iter().all(|p| p == &["dp2", "tp2"]), "{phases:?}");
}

#[test]
fn data_and_pipeline_parallel_buckets_equal_one_device() {
    check_equivalent("7:dp2,13:pp2", "pp2");
}

#[test]
fn three_strategies_on_four_ranks_equal_one_device() {
    // dp4 and dp2tp2 run the buckets; tp2pp2 only updates.
    check_equivalent("7:dp4,13:dp2tp2", "tp2pp2");
    let phases = phases_of("7:dp4,13:dp2tp2", "tp2pp2", batch);
    assert!(phases.iter().all(|p| p.len() == 2), "{phases:?}");
}

#[test]
fn zero1_in_the_update_strategy_equals_one_device() {
    check_equivalent("7:dp2tp2,13:tp2pp2", "dp4zero1");
}

#[test]
fn one_bucket_strategy_runs_one_phase_and_equals_one_device() {
    check_equivalent("13:dp2", "tp2");
    let phases = phases_of("13:dp2", "tp2", batch);
    assert!(phases.iter().all(|p| p == &["dp2"]), "{phases:?}");
}

/// [`batch`] without its short bucket's micro-batches.
fn without_short(step: usize) -> GlobalBatch {
    let mut b = batch(step);
    let short: usize = b.buckets[0]
        .micro_batches
        .drain(..)
        .map(|m| m.target_tokens)
        .sum();
    b.target_tokens -= short;
    b
}

#[test]
fn an_empty_bucket_costs_nothing_and_stays_exact() {
    // The empty bucket's strategy (dp2) runs no phase and pays no switch.
    let phases = phases_of("7:dp2,13:tp2", "dp2", without_short);
    assert!(phases.iter().all(|p| p == &["tp2"]), "{phases:?}");
    for clip in [true, false] {
        let expected = reference_on(backend(), &Case::tied(clip), STEPS, without_short).unwrap();
        for result in check_all_ranks("7:dp2,13:tp2", "dp2", &expected, None) {
            result.unwrap();
        }
    }
}

#[test]
fn the_check_fails_when_one_phase_doubles_its_gradients() {
    let fault = GradientFault {
        bucket: None,
        factor: 2.0,
    };
    let dp2: Strategy = "dp2".parse().unwrap();
    // With and without clipping: clipping and Adam hide the factor from the parameters,
    // but not from the gradient norm before clipping.
    for reference in &references()[..2] {
        let results = check_all_ranks("7:dp2,13:tp2", "tp2", reference, Some((dp2, fault)));
        for result in &results {
            let err = result
                .as_ref()
                .expect_err("a doubled phase must fail the check");
            assert!(
                err.contains("gradient norm before clipping") || err.contains("differ"),
                "{err}"
            );
        }
    }
}

#[test]
fn hot_switching_is_bit_identical_to_itself() {
    let run = || {
        let buckets: BucketStrategies = "7:dp2,13:tp2".parse().unwrap();
        let mut results = threads::run(2, |world| {
            let mut trainer = HotSwitchTrainer::new(
                model(),
                train_config(),
                backend(),
                world,
                buckets.clone(),
                "tp2".parse().unwrap(),
                SEED,
            )
            .unwrap();
            let losses: Vec<f64> = (0..3)
                .map(|i| trainer.train_step(&batch(i)).unwrap().step.loss)
                .collect();
            (losses, trainer.gather_state().unwrap())
        });
        let (losses, state) = results.remove(0);
        (losses, state.unwrap())
    };
    let (a, b) = (run(), run());
    assert_eq!(a.0, b.0);
    for (name, t) in a.1.params.iter() {
        let other = b.1.params.get(name).unwrap();
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            other.to_vec::<f32>().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn bad_hot_switch_specs_say_what_to_do() {
    let err = |text: &str| text.parse::<BucketStrategies>().unwrap_err().to_string();
    assert!(err("256dp2").contains("EDGE:STRATEGY"));
    assert!(err("256:dp2,128:tp2").contains("ascend"));
    assert!(err("256:dp2,1024:tp4").contains("same ranks"));
    let buckets: BucketStrategies = "256:dp2".parse().unwrap();
    let e = buckets.strategy_for(300).unwrap_err().to_string();
    assert!(e.contains("300:dp2"), "{e}");
}

#[test]
fn a_phase_runtime_keeps_no_optimizer_state_and_refuses_to_update() {
    use luoshu_dist::Mesh;
    use luoshu_train::parallel::ParallelTrainer;
    let outcomes = threads::run(2, |world| {
        let mesh = Mesh::new("dp2".parse().unwrap(), world).unwrap();
        let mut phase =
            ParallelTrainer::for_phases(model(), train_config(), backend(), mesh).unwrap();
        let pieces = phase.state_pieces().unwrap();
        let held: usize = pieces.params.iter().map(Vec::len).sum();
        // Allocated, not initialized: the update runtime's parameters are switched in.
        let mut values = pieces.params.iter().flatten().flat_map(|t| t.to_f64_vec());
        assert!(values.all(|x| x == 0.0));
        let moments: usize = pieces
            .adam_m
            .iter()
            .chain(&pieces.adam_v)
            .map(Vec::len)
            .sum();
        let refusal = phase.train_step(&batch(0)).unwrap_err().to_string();
        (held, moments, refusal)
    });
    for (held, moments, refusal) in outcomes {
        assert!(held > 0);
        assert_eq!(moments, 0);
        assert!(refusal.contains("keeps no optimizer state"), "{refusal}");
    }
}
