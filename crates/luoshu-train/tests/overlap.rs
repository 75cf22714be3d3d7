//! Overlapping the data-parallel gradient reduction with backward changes no bit: on every
//! rank of dp2, dp2zero1, dp3 (ranks with two and one micro-batches) and dp2 on a batch of
//! one micro-batch (one rank has none), with buckets of one parameter, of a few
//! parameters and of the whole gradient, the loss, this rank's share of the reduced
//! gradient before clipping, the gradient norm, every parameter and both AdamW moments are
//! bit-equal to the same trainer's with the overlap turned off, after each of 3 steps.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::GlobalBatch;
use luoshu_dist::{Mesh, Strategy};
use luoshu_tensor::Tensor;
use luoshu_train::parallel::conformance::{batch, model, train_config, SEED};
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::TrainConfig;
use std::sync::Arc;

const STEPS: usize = 3;

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec().iter().map(|v| v.to_bits()).collect()
}

fn all_bits(pieces: &[Vec<Tensor>]) -> Vec<Vec<u64>> {
    pieces.iter().flatten().map(bits).collect()
}

/// Step `step`'s batch of [`batch`], or only its first micro-batch.
fn step_batch(step: usize, whole: bool) -> GlobalBatch {
    let mut b = batch(step);
    if !whole {
        b.buckets.truncate(1);
        b.buckets[0].micro_batches.truncate(1);
        b = GlobalBatch::of_buckets(b.buckets);
    }
    b
}

/// Trains under `strategy` with and without overlap, side by side on every rank, and
/// asserts every step's results bit-equal.
fn overlap_changes_no_bit(strategy: &str, bucket_bytes: usize, whole_batches: bool) {
    let strategy: Strategy = strategy.parse().unwrap();
    threads::run(strategy.devices(), |world| {
        let trainer = |overlap: bool| {
            let config = TrainConfig {
                overlap_reduction: overlap,
                reduce_bucket_bytes: bucket_bytes,
                ..train_config()
            };
            let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
            let mesh = Mesh::new(strategy, world.clone()).unwrap();
            ParallelTrainer::new(model(), config, backend, mesh, SEED).unwrap()
        };
        let (mut on, mut off) = (trainer(true), trainer(false));
        assert!(on.overlaps_reduction() && !off.overlaps_reduction());
        let rank = world.rank();
        for step in 0..STEPS {
            let b = step_batch(step, whole_batches);
            let (loss_on, grad_on) = on.reduced_gradients(&b).unwrap();
            let (loss_off, grad_off) = off.reduced_gradients(&b).unwrap();
            assert_eq!(
                loss_on.to_bits(),
                loss_off.to_bits(),
                "rank {rank} step {step}"
            );
            assert_eq!(
                bits(&grad_on),
                bits(&grad_off),
                "rank {rank} step {step} gradient"
            );
            let (stats_on, stats_off) = (on.train_step(&b).unwrap(), off.train_step(&b).unwrap());
            assert_eq!(stats_on.loss.to_bits(), stats_off.loss.to_bits());
            assert_eq!(stats_on.grad_norm.to_bits(), stats_off.grad_norm.to_bits());
            let (state_on, state_off) = (on.state_pieces().unwrap(), off.state_pieces().unwrap());
            let what = format!("rank {rank} after step {step}");
            assert_eq!(
                all_bits(&state_on.params),
                all_bits(&state_off.params),
                "{what}"
            );
            assert_eq!(
                all_bits(&state_on.adam_m),
                all_bits(&state_off.adam_m),
                "{what}"
            );
            assert_eq!(
                all_bits(&state_on.adam_v),
                all_bits(&state_off.adam_v),
                "{what}"
            );
        }
    });
}

#[test]
fn dp2_overlapped_per_parameter_and_whole() {
    overlap_changes_no_bit("dp2", 1, true);
    overlap_changes_no_bit("dp2", 4 << 20, true);
}

#[test]
fn dp2zero1_overlapped_buckets_cut_across_pieces() {
    overlap_changes_no_bit("dp2zero1", 1, true);
    overlap_changes_no_bit("dp2zero1", 2048, true);
}

#[test]
fn dp3_with_uneven_micro_batch_counts() {
    overlap_changes_no_bit("dp3", 2048, true);
}

#[test]
fn dp2_when_one_rank_has_no_micro_batch() {
    overlap_changes_no_bit("dp2", 2048, false);
}

/// Ranks that cut the gradient into different buckets issue mismatched collectives on the
/// reduction thread: every rank's step fails with the communicator's error, naming the
/// collective, instead of hanging or summing the wrong ranges.
#[test]
fn ranks_cutting_different_buckets_fail_the_step() {
    let strategy: Strategy = "dp2".parse().unwrap();
    let results = threads::run(strategy.devices(), |world| {
        let config = TrainConfig {
            reduce_bucket_bytes: if world.rank() == 0 { 1 } else { 4 << 20 },
            ..train_config()
        };
        let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
        let mesh = Mesh::new(strategy, world).unwrap();
        let mut trainer = ParallelTrainer::new(model(), config, backend, mesh, SEED).unwrap();
        trainer.train_step(&batch(0)).map(|_| ())
    });
    for result in results {
        let message = result.unwrap_err().to_string();
        assert!(message.contains("all_reduce"), "{message}");
    }
}
