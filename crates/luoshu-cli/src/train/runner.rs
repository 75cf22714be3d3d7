//! What trains on one rank: a static strategy's trainer, or a hot-switching trainer that
//! runs each length bucket under its own strategy. Both update once per step and keep
//! checkpoints canonical, so a run may resume under either.

use super::config::RunConfig;
use crate::error_text::text;
use luoshu_backend::Backend;
use luoshu_comm::Communicator;
use luoshu_data::GlobalBatch;
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::ModelConfig;
use luoshu_train::hot::{BucketStrategies, HotSwitchTrainer, PhaseStats};
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::{StepStats, TrainerState};
use std::sync::Arc;

pub enum Runner {
    Static(Box<ParallelTrainer>),
    Hot(HotSwitchTrainer),
}

/// A step's statistics and, under hot switching, its phases and switches.
pub struct RunnerStep {
    pub stats: StepStats,
    pub phases: Vec<PhaseStats>,
    pub switch_seconds: f64,
    pub switch_bytes: usize,
}

impl Runner {
    /// Collective over `world`: a hot-switching trainer for `plan` (buckets and update
    /// strategy), or a static one for `strategy` when there is no plan or every bucket
    /// runs under the update strategy (nothing would ever switch), computing on `backend`.
    pub fn new(
        config: &RunConfig,
        model: &ModelConfig,
        (strategy, plan): (Option<Strategy>, Option<(BucketStrategies, Strategy)>),
        backend: Arc<dyn Backend>,
        world: Arc<dyn Communicator>,
    ) -> Result<Self, String> {
        let fixed = match plan {
            Some((buckets, update)) if buckets.strategies() != [update] => {
                return Ok(Runner::Hot(
                    HotSwitchTrainer::new(
                        model.clone(),
                        config.train.clone(),
                        backend,
                        world,
                        buckets,
                        update,
                        config.seed,
                    )
                    .map_err(text)?,
                ))
            }
            Some((_, update)) => update,
            None => strategy.ok_or("no strategy to train under")?,
        };
        let mesh = Mesh::new(fixed, world).map_err(text)?;
        Ok(Runner::Static(Box::new(
            ParallelTrainer::new(
                model.clone(),
                config.train.clone(),
                backend,
                mesh,
                config.seed,
            )
            .map_err(text)?,
        )))
    }

    pub fn train_step(&mut self, batch: &GlobalBatch) -> Result<RunnerStep, String> {
        match self {
            Runner::Static(t) => Ok(RunnerStep {
                stats: t.train_step(batch).map_err(text)?,
                phases: Vec::new(),
                switch_seconds: 0.0,
                switch_bytes: 0,
            }),
            Runner::Hot(t) => {
                let step = t.train_step(batch).map_err(text)?;
                Ok(RunnerStep {
                    stats: step.step,
                    phases: step.phases,
                    switch_seconds: step.switch_seconds,
                    switch_bytes: step.switch_bytes,
                })
            }
        }
    }

    pub fn evaluate(&mut self, batches: &[GlobalBatch]) -> Result<f64, String> {
        match self {
            Runner::Static(t) => t.evaluate(batches),
            Runner::Hot(t) => t.evaluate(batches),
        }
        .map_err(text)
    }

    pub fn gather_state(&self) -> Result<Option<TrainerState>, String> {
        match self {
            Runner::Static(t) => t.gather_state(),
            Runner::Hot(t) => t.gather_state(),
        }
        .map_err(text)
    }

    pub fn restore(&mut self, state: &TrainerState) -> Result<(), String> {
        match self {
            Runner::Static(t) => t.restore(state),
            Runner::Hot(t) => t.restore(state),
        }
        .map_err(text)
    }

    pub fn step(&self) -> u64 {
        match self {
            Runner::Static(t) => t.step(),
            Runner::Hot(t) => t.step(),
        }
    }

    /// How the progress bar names what runs: the strategy, or each bucket edge's.
    pub fn describe(&self) -> String {
        match self {
            Runner::Static(t) => t.mesh().strategy.to_string(),
            Runner::Hot(t) => format!("hot {} → {}", t.buckets(), t.update_strategy()),
        }
    }
}

/// `"dp2 12 seq 3400 tok 0.81 s;tp2 …"`: the phases of a step for metrics.csv.
pub fn describe_phases(phases: &[PhaseStats]) -> String {
    phases
        .iter()
        .map(|p| {
            format!(
                "{} {} seq {} tok {:.4} s",
                p.strategy, p.sequences, p.tokens, p.seconds
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}
