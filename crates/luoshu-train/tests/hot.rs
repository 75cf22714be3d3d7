//! Hot switching trains exactly like one device: each length bucket runs under its own
//! strategy, parameters and the gradient accumulator switch between layouts, and one
//! update per step gives the single-device losses, parameters and moments (fp32,
//! rtol 1e-5, as every strategy's equivalence test).

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::GlobalBatch;
use luoshu_dist::Strategy;
use luoshu_train::hot::{BucketStrategies, HotSwitchTrainer};
use luoshu_train::parallel::conformance::{
    batch, compare_runs, model, single_device, train_config, SEED,
};
use luoshu_train::TrainerState;
use std::sync::Arc;

const STEPS: usize = 4;

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// Rank 0's losses and gathered state after `STEPS` hot-switching steps over `batches`.
fn hot_run(
    edges: &str,
    update: &str,
    batches: impl Fn(usize) -> GlobalBatch + Sync,
) -> (Vec<f64>, TrainerState, Vec<Vec<Strategy>>) {
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
        let mut losses = Vec::new();
        let mut phases = Vec::new();
        for step in 0..STEPS {
            let stats = trainer.train_step(&batches(step)).unwrap();
            losses.push(stats.step.loss);
            phases.push(stats.phases.iter().map(|p| p.strategy).collect());
        }
        (losses, trainer.gather_state().unwrap(), phases)
    });
    let (losses, state, phases) = results.remove(0);
    (losses, state.unwrap(), phases)
}

fn check(edges: &str, update: &str) -> Vec<Vec<Strategy>> {
    let expected = single_device(backend(), STEPS).unwrap();
    let (losses, state, phases) = hot_run(edges, update, batch);
    compare_runs(
        &format!("hot {edges} / {update}"),
        &(losses, state),
        &expected,
    )
    .unwrap();
    phases
}

#[test]
fn data_and_tensor_parallel_buckets_equal_one_device() {
    let phases = check("7:dp2,13:tp2", "tp2");
    // The update strategy's phase runs last (it needs no final switch).
    assert!(phases
        .iter()
        .all(|p| p.len() == 2 && p[1].to_string() == "tp2"));
}

#[test]
fn data_and_pipeline_parallel_buckets_equal_one_device() {
    check("7:dp2,13:pp2", "pp2");
}

#[test]
fn an_update_strategy_without_buckets_and_zero1_equals_one_device() {
    let phases = check("7:dp4,13:dp2tp2", "tp2pp2");
    assert!(phases.iter().all(|p| p.len() == 2));
    check("7:dp2tp2,13:tp2pp2", "dp4zero1");
}

#[test]
fn one_bucket_and_empty_buckets_cost_nothing_and_stay_exact() {
    // Both buckets under one strategy: one phase, no switch.
    let phases = check("13:dp2", "tp2");
    assert!(phases.iter().all(|p| p.len() == 1));
    // An empty bucket is skipped; the step still equals one device on the same batch.
    let without_short = |step: usize| {
        let mut b = batch(step);
        let short = b.buckets[0]
            .micro_batches
            .drain(..)
            .map(|m| m.target_tokens)
            .sum::<usize>();
        b.target_tokens -= short;
        b
    };
    let (losses, state, phases) = hot_run("7:dp2,13:tp2", "dp2", without_short);
    assert!(phases
        .iter()
        .all(|p| p.len() == 1 && p[0].to_string() == "tp2"));
    let reference = {
        let mut trainer =
            luoshu_train::Trainer::new(model(), train_config(), backend(), SEED).unwrap();
        let losses: Vec<f64> = (0..STEPS)
            .map(|i| trainer.train_step(&without_short(i)).unwrap().loss)
            .collect();
        (losses, trainer.state().unwrap())
    };
    compare_runs("hot with an empty bucket", &(losses, state), &reference).unwrap();
}

#[test]
fn hot_switching_is_bit_identical_to_itself() {
    let a = hot_run("7:dp2,13:tp2", "tp2", batch);
    let b = hot_run("7:dp2,13:tp2", "tp2", batch);
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
