//! The equivalence check every strategy must pass, on any communicator backend: a few
//! training steps of a small model under the strategy give the same losses and parameters
//! as one device. `tests/parallel.rs` runs it on the threads backend, the `mpi_strategies`
//! example under `mpirun`.

use super::ParallelTrainer;
use crate::{AdamWConfig, Error, LrSchedule, Result, TrainConfig, Trainer, TrainerState};
use luoshu_backend::Backend;
use luoshu_comm::Communicator;
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch, IGNORE_INDEX};
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::{ModelConfig, ParamStore};
use std::sync::Arc;

/// Initialization seed of every run of the check.
pub const SEED: u64 = 7;

/// Divisible by every tensor-parallel degree up to 4 (vocab, heads, kv heads, d_ff), with
/// 4 layers for up to 4 pipeline stages.
pub fn model() -> ModelConfig {
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

pub fn train_config() -> TrainConfig {
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

/// A micro-batch of `rows × seq` with a learnable pattern and a few ignored targets.
fn micro(rows: usize, seq: usize, salt: i64) -> MicroBatch {
    let (mut inputs, mut targets, mut target_tokens) = (Vec::new(), Vec::new(), 0);
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

/// Step `step`'s batch: two buckets of odd lengths (so tensor parallelism pads) holding
/// four micro-batches.
pub fn batch(step: usize) -> GlobalBatch {
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

/// Losses of `steps` steps on one device and the final state.
pub fn single_device(backend: Arc<dyn Backend>, steps: usize) -> Result<(Vec<f64>, TrainerState)> {
    let mut trainer = Trainer::new(model(), train_config(), backend, SEED)?;
    let losses = (0..steps)
        .map(|i| Ok(trainer.train_step(&batch(i))?.loss))
        .collect::<Result<Vec<_>>>()?;
    Ok((losses, trainer.state()?))
}

/// One rank's part of training steps `first..first + steps` under `strategy` (resuming
/// from `resume` if given): the losses and, on world rank 0, the gathered state.
pub fn distributed_rank(
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    strategy: Strategy,
    resume: Option<&TrainerState>,
    first: usize,
    steps: usize,
) -> Result<(Vec<f64>, Option<TrainerState>)> {
    let mesh = Mesh::new(strategy, world)?;
    let mut trainer = ParallelTrainer::new(model(), train_config(), backend, mesh, SEED)?;
    if let Some(state) = resume {
        trainer.restore(state)?;
    }
    let losses = (first..first + steps)
        .map(|i| Ok(trainer.train_step(&batch(i))?.loss))
        .collect::<Result<Vec<_>>>()?;
    Ok((losses, trainer.gather_state()?))
}

/// Losses equal to rtol 1e-5 elementwise.
pub fn compare_losses(what: &str, got: &[f64], expected: &[f64]) -> Result<()> {
    if got.len() != expected.len() {
        return Err(Error::State(format!(
            "{what}: {} losses, expected {}",
            got.len(),
            expected.len()
        )));
    }
    for (i, (x, y)) in got.iter().zip(expected).enumerate() {
        if (x - y).abs() > 1e-5 * x.abs().max(y.abs()) + 1e-6 {
            return Err(Error::State(format!(
                "{what}: loss of step {i} is {x}, expected {y}"
            )));
        }
    }
    Ok(())
}

/// Every tensor within rtol 1e-5 in norm: `‖a − b‖ ≤ 1e-5 ‖b‖` (per element, Adam's
/// `m / √v` can still turn a rounding-level gradient into a visible step in one element).
pub fn compare_params(what: &str, got: &ParamStore, expected: &ParamStore) -> Result<()> {
    if got.names() != expected.names() {
        return Err(Error::State(format!("{what}: parameter names differ")));
    }
    for (name, t) in got.iter() {
        let other = expected
            .get(name)
            .ok_or_else(|| Error::State(format!("{what}: no parameter `{name}` expected")))?;
        let (x, y) = (t.to_f64_vec(), other.to_f64_vec());
        if x.len() != y.len() {
            return Err(Error::State(format!("{what}: {name} has another shape")));
        }
        let difference = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = y.iter().map(|q| q * q).sum::<f64>().sqrt();
        if difference > 1e-5 * scale + 1e-9 {
            return Err(Error::State(format!(
                "{what}: {name} differs by {difference:e} in norm (norm {scale:e})"
            )));
        }
    }
    Ok(())
}

/// `got` (losses, state) against the single-device `expected`: losses, parameters, first
/// moments and step.
pub fn compare_runs(
    what: &str,
    got: &(Vec<f64>, TrainerState),
    expected: &(Vec<f64>, TrainerState),
) -> Result<()> {
    compare_losses(what, &got.0, &expected.0)?;
    compare_params(
        &format!("{what} parameters"),
        &got.1.params,
        &expected.1.params,
    )?;
    compare_params(&format!("{what} adam m"), &got.1.adam_m, &expected.1.adam_m)?;
    if got.1.step != expected.1.step {
        return Err(Error::State(format!(
            "{what}: step {} expected {}",
            got.1.step, expected.1.step
        )));
    }
    Ok(())
}
