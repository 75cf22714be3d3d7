//! Every strategy trains exactly like one device: the losses of 5 steps and the final
//! parameters match the single-device trainer (fp32, rtol 1e-5), a distributed run is
//! bit-identical to itself, and a checkpoint taken under one strategy resumes under another.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::data::{BucketBatch, GlobalBatch, MicroBatch, IGNORE_INDEX};
use luoshu_model::parallel::ParallelTrainer;
use luoshu_model::{
    AdamWConfig, LrSchedule, ModelConfig, ParamStore, TrainConfig, Trainer, TrainerState,
};
use std::sync::Arc;

const STEPS: usize = 5;
const SEED: u64 = 7;

/// Divisible by every tensor-parallel degree tested (vocab, heads, kv heads, d_ff by 4),
/// with grouped-query attention and 4 layers for up to 4 pipeline stages.
fn model() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        d_model: 32,
        n_layers: 4,
        n_heads: 4,
        n_kv_heads: 4,
        d_ff: 48,
        max_seq_len: 16,
        ..ModelConfig::default()
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        schedule: LrSchedule {
            peak_lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 2,
            total_steps: 10,
        },
        // Clipping is active at this learning rate, so the global norm must be exact too.
        grad_clip: 0.5,
        // Adam divides by √v + eps: with the default 1e-8, a gradient component that is
        // zero up to rounding (and so differs in its last bits between strategies, which sum
        // in different orders) becomes an lr-sized step of either sign. 1e-6 keeps such
        // components small; the gradients themselves agree to ~1e-7 (parallel_graphs.rs).
        optimizer: AdamWConfig {
            eps: 1e-6,
            ..AdamWConfig::default()
        },
        ..TrainConfig::default()
    }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// A micro-batch of `rows × seq` with a learnable pattern and a few ignored targets.
fn micro(rows: usize, seq: usize, salt: i64) -> MicroBatch {
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    let mut target_tokens = 0;
    for r in 0..rows as i64 {
        for t in 0..seq as i64 {
            let token = (salt * 7 + r * 5 + t * 3) % 64;
            inputs.push(token);
            let ignored = (t + r + salt) % 5 == 4;
            targets.push(if ignored {
                IGNORE_INDEX
            } else {
                (token * 3 + 1) % 64
            });
            target_tokens += usize::from(!ignored);
        }
    }
    MicroBatch {
        rows,
        seq_len: seq,
        inputs,
        targets,
        target_tokens,
    }
}

/// Two buckets of odd lengths (so tensor parallelism pads) with four micro-batches.
fn batch(step: usize) -> GlobalBatch {
    let s = step as i64;
    let buckets = vec![
        BucketBatch {
            seq_len: 7,
            micro_batches: vec![micro(3, 7, s), micro(2, 7, s + 1)],
        },
        BucketBatch {
            seq_len: 13,
            micro_batches: vec![micro(2, 13, s + 2), micro(1, 13, s + 3)],
        },
    ];
    let target_tokens = buckets
        .iter()
        .flat_map(|b| &b.micro_batches)
        .map(|m| m.target_tokens)
        .sum();
    GlobalBatch {
        buckets,
        target_tokens,
    }
}

/// Losses of `steps` steps from `start` and the final state on one device.
fn single_device(steps: usize) -> (Vec<f64>, TrainerState) {
    let mut trainer = Trainer::new(model(), train_config(), backend(), SEED).unwrap();
    let losses = (0..steps)
        .map(|i| trainer.train_step(&batch(i)).unwrap().loss)
        .collect();
    (losses, trainer.state().unwrap())
}

/// Rank 0's losses and gathered state after training steps `first..first + steps` under
/// `strategy`, optionally resuming from `resume`.
fn distributed(
    strategy: &str,
    resume: Option<&TrainerState>,
    first: usize,
    steps: usize,
) -> (Vec<f64>, TrainerState) {
    let strategy: Strategy = strategy.parse().unwrap();
    let mut results = threads::run(strategy.devices(), |comm| {
        let mesh = Mesh::new(strategy, comm).unwrap();
        let mut trainer =
            ParallelTrainer::new(model(), train_config(), backend(), mesh, SEED).unwrap();
        if let Some(state) = resume {
            trainer.restore(state).unwrap();
        }
        let losses: Vec<f64> = (first..first + steps)
            .map(|i| trainer.train_step(&batch(i)).unwrap().loss)
            .collect();
        (losses, trainer.gather_state().unwrap())
    });
    let (losses, state) = results.remove(0);
    (losses, state.expect("rank 0 holds the gathered state"))
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tolerance = 1e-5 * x.abs().max(y.abs()) + 1e-6;
        assert!(
            (x - y).abs() <= tolerance,
            "{what}[{i}]: {x} vs {y} (difference {})",
            (x - y).abs()
        );
    }
}

/// Each tensor within rtol 1e-5 in norm: `‖a − b‖ ≤ 1e-5 ‖b‖` (per element, Adam's
/// `m / √v` can still turn a rounding-level gradient into a visible step in one element).
fn assert_params_close(what: &str, a: &ParamStore, b: &ParamStore) {
    assert_eq!(a.names(), b.names(), "{what}: parameter names differ");
    for (name, t) in a.iter() {
        let other = b.get(name).unwrap();
        assert_eq!(t.dims(), other.dims(), "{what}: {name} shape");
        let (x, y) = (t.to_f64_vec(), other.to_f64_vec());
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|e| e * e).sum::<f64>().sqrt();
        let difference = norm(&mut x.iter().zip(&y).map(|(p, q)| p - q));
        let scale = norm(&mut y.iter().copied());
        assert!(
            difference <= 1e-5 * scale + 1e-9,
            "{what}: {name} differs by {difference:e} in norm (norm {scale:e})"
        );
    }
}

fn check_equivalent(strategy: &str) {
    let (expected_losses, expected) = single_device(STEPS);
    let (losses, state) = distributed(strategy, None, 0, STEPS);
    assert_close(&format!("{strategy} losses"), &losses, &expected_losses);
    assert_params_close(
        &format!("{strategy} parameters"),
        &state.params,
        &expected.params,
    );
    assert_params_close(
        &format!("{strategy} adam m"),
        &state.adam_m,
        &expected.adam_m,
    );
    assert_eq!(state.step, expected.step);
}

#[test]
fn single_rank_mesh_equals_the_single_device_trainer() {
    check_equivalent("single");
}

#[test]
fn data_parallel_equals_one_device() {
    check_equivalent("dp2");
}

#[test]
fn zero1_equals_one_device() {
    check_equivalent("dp2zero1");
}

#[test]
fn tensor_parallel_equals_one_device() {
    check_equivalent("tp2");
}

#[test]
fn tensor_parallel_4_equals_one_device() {
    check_equivalent("tp4");
}

#[test]
fn pipeline_parallel_equals_one_device() {
    check_equivalent("pp2");
}

#[test]
fn pipeline_4_stages_equals_one_device() {
    check_equivalent("pp4");
}

#[test]
fn dp_tp_product_equals_one_device() {
    check_equivalent("dp2tp2");
}

#[test]
fn dp_pp_product_equals_one_device() {
    check_equivalent("dp2pp2");
}

#[test]
fn dp_tp_pp_product_on_8_ranks_equals_one_device() {
    check_equivalent("dp2tp2pp2zero1");
}

#[test]
fn a_distributed_run_is_bit_identical_to_itself() {
    let (losses_a, a) = distributed("dp2tp2", None, 0, 3);
    let (losses_b, b) = distributed("dp2tp2", None, 0, 3);
    assert_eq!(losses_a, losses_b);
    for (x, y) in a.params.tensors().iter().zip(b.params.tensors()) {
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
}

#[test]
fn a_dp2_checkpoint_resumes_under_tp2() {
    let (_, midway) = distributed("dp2", None, 0, 2);
    let (continued_losses, continued) = distributed("dp2", Some(&midway), 2, 3);
    let (switched_losses, switched) = distributed("tp2", Some(&midway), 2, 3);
    assert_close(
        "losses after the switch",
        &switched_losses,
        &continued_losses,
    );
    assert_params_close(
        "parameters after the switch",
        &switched.params,
        &continued.params,
    );
}
