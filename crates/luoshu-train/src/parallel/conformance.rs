//! The equivalence check every strategy must pass, on any communicator backend: a few
//! training steps of a small model under the strategy give the same results as one
//! device. [`check_rank`] compares, after every step and on every rank, the loss, the
//! global gradient norm before clipping, and every element of the parameters and AdamW
//! moments that rank holds (each replica checks its own copy) with the single-device
//! [`Reference`] cut into that rank's pieces ([`super::compare`] has the tolerances). It
//! runs each [`Case`]: the tied model of [`model`] and a GQA model with an untied head,
//! each with clipping on and off (a gradient wrong by a constant factor hides behind
//! clipping and Adam's normalisation, but not behind the norm before clipping).
//! `tests/parallel.rs` runs it on the threads backend, the `mpi_strategies` example under
//! `mpirun`. The older rank-0 comparison of gathered states ([`compare_runs`]) remains
//! for checkpoints.

use super::compare::{compare_pieces, compare_stats, compare_stores, Agreement};
use super::{ParallelTrainer, StatePieces};
use crate::placement::{check_strategy, strategy_placements};
use crate::trainer::StepStats;
use crate::{AdamWConfig, Error, LrSchedule, Result, TrainConfig, Trainer, TrainerState};
use luoshu_backend::{Backend, Ops};
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch, IGNORE_INDEX};
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::{ModelConfig, ParamStore};
use luoshu_tensor::Tensor;
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

/// The hyper-parameters of every run of the check: clipping active on every step, and an
/// AdamW `eps` of 1e-3 so rounding-level gradient differences between strategies stay
/// within the tolerance.
pub fn train_config() -> TrainConfig {
    TrainConfig {
        schedule: LrSchedule {
            peak_lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 2,
            total_steps: 10,
        },
        // Clipping is active on every step of the check (the norm is ~1.4), so the global
        // norm must be exact too; `Case` also runs without clipping.
        grad_clip: 0.5,
        // Adam's step `lr · m̂ / (√v̂ + eps)` is flat in g where |g| ≫ eps and has slope
        // lr / eps where |g| ≲ eps, so the rounding-level gradient differences between
        // strategies (they sum in other orders; ~1e-6 of a tensor's rms) are amplified by
        // up to lr / eps in the parameters: with eps 1e-6 that is up to 5e-4 of a tensor's
        // rms after one step (measured), far above rtol 1e-5. eps 1e-3 bounds the slope at
        // 10, leaving every element within rtol 1e-5 (the worst at ~0.5 of its tolerance;
        // see `parallel::compare`). It still leaves both regimes in the check: the
        // embedding, head and wo gradients (~1e-2) are normalised, wq/wk/MLP ones (1e-5 to
        // 1e-3) update about linearly, so a gradient off by a constant factor changes them.
        optimizer: AdamWConfig {
            eps: 1e-3,
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
        documents: None,
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
    GlobalBatch::of_buckets(buckets)
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

/// Every element of every tensor within rtol 1e-5 (plus 1e-5 of the tensor's rms; see
/// [`super::compare`]).
pub fn compare_params(what: &str, got: &ParamStore, expected: &ParamStore) -> Result<()> {
    compare_stores(what, got, expected, false).map(|_| ())
}

/// `got` (losses, state) against the single-device `expected`: losses, and every element
/// of the parameters, first and second moments (as `√v`), and the step.
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
    compare_stores(
        &format!("{what} adam v"),
        &got.1.adam_v,
        &expected.1.adam_v,
        true,
    )?;
    if got.1.step != expected.1.step {
        return Err(Error::State(format!(
            "{what}: step {} expected {}",
            got.1.step, expected.1.step
        )));
    }
    Ok(())
}

/// A model and its training hyper-parameters, one configuration of the check.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `tied` or `gqa-untied`, then `clip` or `no-clip`.
    pub name: String,
    /// The model the case trains.
    pub model: ModelConfig,
    /// Its training hyper-parameters.
    pub config: TrainConfig,
}

impl Case {
    /// [`model`] (tied embedding, as many kv heads as heads; tensor parallelism up to 4).
    pub fn tied(clip: bool) -> Case {
        Case::new("tied", model(), clip)
    }

    /// [`model`] with grouped-query attention (4 heads, 2 kv heads) and an untied head:
    /// the model of [`super::switch_check::switch_model`]; tensor parallelism up to 2.
    pub fn gqa_untied(clip: bool) -> Case {
        let model = ModelConfig {
            n_kv_heads: 2,
            tie_embeddings: false,
            ..model()
        };
        Case::new("gqa-untied", model, clip)
    }

    /// Every case: both models, clipping on and off.
    pub fn all() -> Vec<Case> {
        vec![
            Case::tied(true),
            Case::tied(false),
            Case::gqa_untied(true),
            Case::gqa_untied(false),
        ]
    }

    /// [`train_config`] (clipping at 0.5, active on every step of the check) or the same
    /// without clipping.
    fn new(model_name: &str, model: ModelConfig, clip: bool) -> Case {
        let mut config = train_config();
        if !clip {
            config.grad_clip = 0.0;
        }
        let clipping = if clip { "clip" } else { "no-clip" };
        Case {
            name: format!("{model_name}/{clipping}"),
            model,
            config,
        }
    }

    /// Whether `strategy` can run this case's model (tensor parallelism must divide the
    /// heads, kv heads, vocabulary and d_ff; every pipeline stage needs a layer).
    pub fn supports(&self, strategy: Strategy) -> bool {
        check_strategy(&self.model, strategy, strategy.devices()).is_ok()
    }
}

/// What one device does on a [`Case`]: the stats of every step and the state after it.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The case the single device ran.
    pub case: Case,
    /// Step `i`'s global batch.
    pub batches: fn(usize) -> GlobalBatch,
    /// After each step, in order: its statistics and the state it left.
    pub steps: Vec<(StepStats, TrainerState)>,
}

/// [`reference()`] of every [`Case::all`].
pub fn all_references(backend: Arc<dyn Backend>, steps: usize) -> Result<Vec<Reference>> {
    Case::all()
        .iter()
        .map(|case| reference(backend.clone(), case, steps))
        .collect()
}

/// `steps` single-device steps of `case` on [`batch`]`(0..steps)`.
pub fn reference(backend: Arc<dyn Backend>, case: &Case, steps: usize) -> Result<Reference> {
    reference_on(backend, case, steps, batch)
}

/// `steps` single-device steps of `case` on `batches(0..steps)`.
pub fn reference_on(
    backend: Arc<dyn Backend>,
    case: &Case,
    steps: usize,
    batches: fn(usize) -> GlobalBatch,
) -> Result<Reference> {
    let mut trainer = Trainer::new(case.model.clone(), case.config.clone(), backend, SEED)?;
    let steps = (0..steps)
        .map(|i| {
            let stats = trainer.train_step(&batches(i))?;
            Ok((stats, trainer.state()?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Reference {
        case: case.clone(),
        batches,
        steps,
    })
}

/// Collective over `world`: this rank's trainer of `case` under `strategy`.
pub fn parallel_trainer(
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    strategy: Strategy,
    case: &Case,
) -> Result<ParallelTrainer> {
    let mesh = Mesh::new(strategy, world)?;
    ParallelTrainer::new(case.model.clone(), case.config.clone(), backend, mesh, SEED)
}

/// Collective over `world`: train `reference.case` under `strategy` for as many steps as
/// the reference holds and compare every step with it on this rank ([`check_trainer`]).
pub fn check_rank(
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    strategy: Strategy,
    reference: &Reference,
) -> Result<Agreement> {
    let mut trainer = parallel_trainer(backend, world, strategy, &reference.case)?;
    check_trainer(&mut trainer, reference)
}

/// Collective: steps `trainer` (fresh, built for `reference.case`) on the batch of every
/// step of `reference`; after each, this rank's loss, gradient norm before
/// clipping, parameters and AdamW moments must equal one device's (element-wise, on the
/// pieces this rank holds). A rank that finds a difference keeps training so the
/// collectives stay matched; at the end every rank fails when any did, with the first
/// difference it found itself or the ranks that found one. On success, the closest any
/// comparison came to its tolerance.
pub fn check_trainer(trainer: &mut ParallelTrainer, reference: &Reference) -> Result<Agreement> {
    let mesh = trainer.mesh();
    let (strategy, world) = (mesh.strategy, mesh.world.clone());
    let who = format!(
        "{} {strategy} rank {} (data {}, stage {}, tensor {})",
        reference.case.name,
        world.rank(),
        mesh.dp_rank,
        mesh.pp_rank,
        mesh.tp_rank
    );
    let backend = trainer.backend().clone();
    let checked = Checked {
        who,
        model: trainer.model_config().clone(),
        steps_taken: trainer.step(),
        state_strategy: strategy,
        world,
        backend,
    };
    checked.run(reference, |batch| {
        let stats = trainer.train_step(batch)?;
        Ok((stats, trainer.state_pieces()?))
    })
}

/// A fresh trainer of any kind under [`Checked::run`]: who it is, what it trains, and the
/// strategy whose placements lay out the state it returns after each step.
pub struct Checked {
    /// How errors name this rank.
    pub who: String,
    /// The model the trainer was built for; it must be the reference's.
    pub model: ModelConfig,
    /// Steps the trainer took before the check (it must be fresh).
    pub steps_taken: u64,
    /// The strategy whose placements lay out the returned state (for hot switching, the
    /// update strategy's).
    pub state_strategy: Strategy,
    /// The communicator the rank belongs to.
    pub world: Arc<dyn Communicator>,
    /// The backend the comparisons run their kernels on.
    pub backend: Arc<dyn Backend>,
}

impl Checked {
    /// Collective: `step` trains on the batch of every step of `reference` and
    /// returns the step's stats and this rank's state pieces; each must equal one
    /// device's (see [`check_trainer`]).
    pub fn run(
        self,
        reference: &Reference,
        mut step: impl FnMut(&GlobalBatch) -> Result<(StepStats, StatePieces)>,
    ) -> Result<Agreement> {
        let Checked {
            who,
            model,
            steps_taken,
            state_strategy,
            world,
            backend,
        } = self;
        let rank = world.rank();
        if model != reference.case.model {
            return Err(Error::State(format!(
                "{who}: the trainer was built for another model than the reference's"
            )));
        }
        if steps_taken != 0 {
            return Err(Error::State(format!(
                "{who}: the check needs a fresh trainer, this one took {steps_taken} steps"
            )));
        }
        let placed = strategy_placements(&model, state_strategy)?;
        let ops = Ops::new(backend.as_ref());
        let mut agreement = Agreement::default();
        let mut first_difference = None;
        for (i, (stats, state)) in reference.steps.iter().enumerate() {
            let (got, pieces) = step(&(reference.batches)(i))?;
            if first_difference.is_some() {
                continue;
            }
            let what = format!("{who}, step {i}");
            let compared = compare_stats(&what, &got, stats).and_then(|a| {
                agreement.merge(a);
                compare_pieces(&ops, &what, rank, &pieces, &placed, state)
            });
            match compared {
                Ok(a) => agreement.merge(a),
                Err(e) => first_difference = Some(e),
            }
        }
        // Every rank learns which ranks found a difference.
        let mut flags = vec![0.0f64; world.size()];
        flags[rank] = f64::from(u8::from(first_difference.is_some()));
        let flags = world.all_reduce(&Tensor::from_vec(flags, [world.size()])?, ReduceOp::Sum)?;
        let failed: Vec<usize> = flags
            .to_f64_vec()
            .iter()
            .enumerate()
            .filter(|(_, &f)| f > 0.0)
            .map(|(r, _)| r)
            .collect();
        match first_difference {
            Some(e) => Err(e),
            None if failed.is_empty() => Ok(agreement),
            None => Err(Error::State(format!(
                "{who} agrees with one device, but rank(s) {failed:?} differ (their errors \
                 say where)"
            ))),
        }
    }
}
