//! Hot switching: each length bucket of a global batch runs under its own strategy, with
//! one optimizer update per step, so training equals one device.
//!
//! One [`ParallelTrainer`] per strategy in use is that strategy's runtime (its compiled
//! plans, its sub-communicators created once, its parameter and gradient buffers in its
//! placement). The **update strategy**'s trainer owns the fp32 master parameters and the
//! AdamW state (ZeRO-1 if it says so); they never move during a step. A step:
//! 1. groups the non-empty buckets by strategy into phases (empty buckets cost nothing);
//! 2. orders the phases so the gradient-accumulator switches move the fewest planned bytes
//!    (the update strategy's own phase, if any, last: it needs no final switch);
//! 3. per phase, switches the current parameters from the update layout into the phase's
//!    runtime, lands the accumulator of the previous phase on exactly one holder of each
//!    element (the lowest rank of each piece: the others start from zero, so the sums over
//!    tensor-parallel replicas, the tied embedding's stages and data parallelism count it
//!    once), runs the phase's micro-batches with the loss scaled by 1 / (target tokens of
//!    the whole global batch), and sums the accumulator over the phase's ranks;
//! 4. switches the accumulator into the update layout and updates once.

mod buckets;
pub mod check;
mod order;
pub mod probe;

pub use buckets::BucketStrategies;
pub use order::{best_order, MAX_PHASES};

use crate::parallel::{GradientFault, ParallelTrainer};
use crate::placement::{strategy_placements, StatePlacements};
use crate::trainer::loss_scale;
use crate::{Error, Result, StepStats, TrainConfig, TrainerState};
use luoshu_backend::{Backend, Ops};
use luoshu_comm::Communicator;
use luoshu_data::{BucketBatch, GlobalBatch};
use luoshu_dist::switch::{
    execute_switch, plan_switch, SenderChoice, SwitchPieces, SwitchPlan, SwitchReport,
};
use luoshu_dist::{Holding, Mesh, Placement, Strategy, Topology};
use luoshu_model::ModelConfig;
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What one phase of a step did.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseStats {
    /// The strategy the phase ran under.
    pub strategy: Strategy,
    /// Micro-batch rows the phase ran (a packed row counts once).
    pub sequences: usize,
    /// Target tokens of the phase's micro-batches.
    pub tokens: usize,
    /// Compute and the phase's own gradient reduction.
    pub seconds: f64,
}

/// A hot-switching step: the usual statistics, each phase, and the switches.
#[derive(Debug, Clone, PartialEq)]
pub struct HotStepStats {
    /// Loss, gradient norm, learning rate, target tokens and wall time of the whole step.
    pub step: StepStats,
    /// The phases, in the order they ran.
    pub phases: Vec<PhaseStats>,
    /// Seconds spent switching parameters and gradient accumulators between layouts.
    pub switch_seconds: f64,
    /// Bytes received over links by every rank together (parameters and gradients).
    pub switch_bytes: usize,
    /// What the same switches would move if no rank reused what it already holds (every
    /// rank receiving its whole destination layout, as a gather-and-reshard would): the
    /// baseline `switch_bytes` is measured against.
    pub switch_bytes_without_reuse: usize,
}

/// What switches moved: bytes received over links, and the whole destination layouts.
#[derive(Debug, Clone, Copy, Default)]
struct SwitchBytes {
    received: usize,
    without_reuse: usize,
}

impl std::ops::AddAssign for SwitchBytes {
    fn add_assign(&mut self, other: SwitchBytes) {
        self.received += other.received;
        self.without_reuse += other.without_reuse;
    }
}

/// One strategy's runtime and where it keeps the state.
struct Runtime {
    strategy: Strategy,
    trainer: ParallelTrainer,
    placements: StatePlacements,
    /// The parameters' placement with only the lowest-ranked holder of each piece: where
    /// an accumulator lands so that this runtime's sums count it exactly once.
    landing: Vec<Placement>,
}

/// What a switch between two runtimes moves, which fixes its source and destination
/// placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Move {
    /// Parameters, from one runtime's placement to another's.
    Params,
    /// A summed gradient accumulator onto one holder of the next runtime's parameters.
    Accumulator,
    /// A summed gradient accumulator into the update runtime's gradient layout.
    IntoUpdate,
}

/// One rank's hot-switching trainer. Every rank of `world` calls the same methods in the
/// same order.
pub struct HotSwitchTrainer {
    buckets: BucketStrategies,
    /// The update strategy's runtime is `runtimes[0]`.
    runtimes: Vec<Runtime>,
    world: Arc<dyn Communicator>,
    backend: Arc<dyn Backend>,
    topology: Topology,
    /// Plans by (source runtime, destination runtime, what moves), with the bytes of the
    /// whole destination layout: every step switches between the same layouts.
    plans: HashMap<(usize, usize, Move), (Arc<SwitchPlan>, usize)>,
}

/// The point-to-point tag of every switch message: messages between one pair of ranks
/// with one tag arrive in order (threads and MPI), and each switch completes before the
/// next starts. Below MPI's guaranteed 32767 and above the tags `gather_state` uses.
const SWITCH_TAG: u64 = 32_000;

/// `placement` with only the lowest-ranked holder of each piece.
pub fn one_holder(placement: &Placement) -> Placement {
    Placement {
        dims: placement.dims.clone(),
        holdings: placement
            .holdings
            .iter()
            .map(|h| Holding {
                piece: h.piece,
                ranks: h.ranks[..1].to_vec(),
            })
            .collect(),
    }
}

/// The entries of `pieces` (per tensor, as a trainer lays out its state) that `rank`
/// holds in `placement`.
fn held(pieces: &[Vec<Tensor>], placements: &[Placement], rank: usize) -> Vec<Vec<Tensor>> {
    pieces
        .iter()
        .zip(placements)
        .map(|(p, placement)| {
            if placement.pieces_of(rank).is_empty() {
                Vec::new()
            } else {
                p.clone()
            }
        })
        .collect()
}

impl HotSwitchTrainer {
    /// Collective over `world`: one runtime per strategy of `buckets` and the update
    /// strategy, parameters initialized from `seed` as on one device. Only the update
    /// strategy may use ZeRO-1 (the others keep no optimizer state).
    pub fn new(
        model: ModelConfig,
        config: TrainConfig,
        backend: Arc<dyn Backend>,
        world: Arc<dyn Communicator>,
        buckets: BucketStrategies,
        update: Strategy,
        seed: u64,
    ) -> Result<Self> {
        if buckets.devices() != world.size() || update.devices() != world.size() {
            return Err(Error::Config(format!(
                "hot switching over {buckets} with update strategy {update} needs {} ranks \
                 for every strategy; the world has {}",
                buckets.devices(),
                world.size()
            )));
        }
        let mut strategies = vec![update];
        for s in buckets.strategies() {
            if s.zero1 && s != update {
                return Err(Error::Config(format!(
                    "{s}: ZeRO-1 shards optimizer state, which only the update strategy keeps; \
                     drop zero1 from the bucket strategy or make it the update strategy"
                )));
            }
            if !strategies.contains(&s) {
                strategies.push(s);
            }
        }
        let runtimes = strategies
            .into_iter()
            .enumerate()
            .map(|(i, strategy)| {
                let mesh = Mesh::new(strategy, world.clone())?;
                // Only the update strategy's runtime (the first) keeps optimizer state.
                let (m, c, b) = (model.clone(), config.clone(), backend.clone());
                let trainer = match i {
                    0 => ParallelTrainer::new(m, c, b, mesh, seed)?,
                    _ => ParallelTrainer::for_phases(m, c, b, mesh)?,
                };
                let placements = strategy_placements(&model, strategy)?;
                let landing = placements.params.iter().map(one_holder).collect();
                Ok(Runtime {
                    strategy,
                    trainer,
                    placements,
                    landing,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Threads ranks share one machine: one node. Costs only shape reports, never plans.
        let topology = Topology::gpu_cluster(world.size(), world.size())?;
        Ok(HotSwitchTrainer {
            buckets,
            runtimes,
            world,
            backend,
            topology,
            plans: HashMap::new(),
        })
    }

    /// The strategy that owns the master parameters and the optimizer state and performs the
    /// update.
    pub fn update_strategy(&self) -> Strategy {
        self.runtimes[0].strategy
    }

    /// The length buckets and the strategy of each.
    pub fn buckets(&self) -> &BucketStrategies {
        &self.buckets
    }

    /// The trainer that owns the master parameters and optimizer state.
    pub fn update_trainer(&self) -> &ParallelTrainer {
        &self.runtimes[0].trainer
    }

    /// Test only: break the gradients `strategy`'s runtime accumulates (see
    /// [`GradientFault`]; its buckets are those of each phase). Never use in training.
    #[doc(hidden)]
    pub fn inject_gradient_fault(
        &mut self,
        strategy: Strategy,
        fault: Option<GradientFault>,
    ) -> Result<()> {
        let runtime = self
            .runtimes
            .iter_mut()
            .find(|r| r.strategy == strategy)
            .ok_or_else(|| {
                Error::Config(format!(
                    "hot switching over {} has no runtime for {strategy}",
                    self.buckets
                ))
            })?;
        runtime.trainer.inject_gradient_fault(fault);
        Ok(())
    }

    fn runtime_index(&self, strategy: Strategy) -> usize {
        self.runtimes
            .iter()
            .position(|r| r.strategy == strategy)
            .expect("every bucket strategy has a runtime")
    }

    /// The source and destination placements of moving `what` from runtime `a` to `b`.
    fn ends(&self, a: usize, b: usize, what: Move) -> (&[Placement], &[Placement]) {
        let from = &self.runtimes[a].placements.params;
        let to = match what {
            Move::Params => &self.runtimes[b].placements.params,
            Move::Accumulator => &self.runtimes[b].landing,
            Move::IntoUpdate => &self.runtimes[b].placements.grads,
        };
        (from, to)
    }

    /// The plan of moving `what` from runtime `a` to `b`, planned once, and the bytes of
    /// the destination layout (every holder's pieces).
    fn plan(&mut self, a: usize, b: usize, what: Move) -> Result<(Arc<SwitchPlan>, usize)> {
        if let Some(planned) = self.plans.get(&(a, b, what)) {
            return Ok(planned.clone());
        }
        let (from, to) = self.ends(a, b, what);
        let pairs: Vec<(&Placement, &Placement)> = from.iter().zip(to).collect();
        let element = DType::F32.size_in_bytes();
        let plan = Arc::new(plan_switch(
            &pairs,
            &self.topology,
            element,
            SenderChoice::Balanced,
        )?);
        let destination: usize = to
            .iter()
            .flat_map(|p| p.holdings.iter())
            .map(|h| h.piece.numel() * h.ranks.len() * element)
            .sum();
        let report = SwitchReport::of(&plan, pairs.len(), &self.topology);
        tracing::debug!(
            from = %self.runtimes[a].strategy,
            to = %self.runtimes[b].strategy,
            moves = ?what,
            tensors = report.tensors,
            messages = report.messages,
            received_bytes = report.received,
            lower_bound_bytes = report.lower_bound,
            max_receive_bytes = report.max_receive,
            destination_bytes = destination,
            "switch plan"
        );
        self.plans.insert((a, b, what), (plan.clone(), destination));
        Ok((plan, destination))
    }

    /// Bytes ranks receive over links when moving `what` from runtime `a` to `b`.
    fn planned_bytes(&mut self, a: usize, b: usize, what: Move) -> Result<usize> {
        Ok(self.plan(a, b, what)?.0.lower_bound_per_rank.iter().sum())
    }

    /// Moves `what` from runtime `a`'s pieces `src` into runtime `b`'s pieces `dst`;
    /// returns the bytes received over links and those of the whole destination layout.
    fn switch(
        &mut self,
        (a, b, what): (usize, usize, Move),
        src: &[Vec<Tensor>],
        dst: &[Vec<Tensor>],
    ) -> Result<SwitchBytes> {
        let (plan, destination) = self.plan(a, b, what)?;
        let (from, to) = self.ends(a, b, what);
        let ops = Ops::new(self.backend.as_ref());
        execute_switch(
            &plan,
            from,
            to,
            self.world.as_ref(),
            &ops,
            SwitchPieces { src, dst },
            SWITCH_TAG,
        )?;
        Ok(SwitchBytes {
            received: plan.lower_bound_per_rank.iter().sum(),
            without_reuse: destination,
        })
    }

    /// The phases of `batch`: its non-empty buckets grouped by strategy, as runtime
    /// indices in the cheapest order.
    fn phases(&mut self, batch: &GlobalBatch) -> Result<Vec<(usize, Vec<BucketBatch>)>> {
        let mut groups: Vec<(usize, Vec<BucketBatch>)> = Vec::new();
        for bucket in batch.buckets.iter().filter(|b| !b.micro_batches.is_empty()) {
            let runtime = self.runtime_index(self.buckets.strategy_for(bucket.seq_len)?);
            match groups.iter_mut().find(|(r, _)| *r == runtime) {
                Some((_, buckets)) => buckets.push(bucket.clone()),
                None => groups.push((runtime, vec![bucket.clone()])),
            }
        }
        let n = self.runtimes.len();
        let mut between = vec![vec![0; n]; n];
        let mut to_update = vec![0; n];
        let used: Vec<usize> = groups.iter().map(|(r, _)| *r).collect();
        for &a in &used {
            to_update[a] = if a == 0 {
                0
            } else {
                self.planned_bytes(a, 0, Move::IntoUpdate)?
            };
            for &b in &used {
                if a != b {
                    between[a][b] = self.planned_bytes(a, b, Move::Accumulator)?;
                }
            }
        }
        let update_phase = used.contains(&0).then_some(0);
        let order = best_order(&used, &between, &to_update, update_phase)?;
        Ok(order
            .into_iter()
            .map(|r| {
                let i = groups
                    .iter()
                    .position(|(g, _)| *g == r)
                    .expect("ordered phases");
                groups[i].clone()
            })
            .collect())
    }

    /// One optimizer step on `batch` (collective; every rank passes the same batch).
    pub fn train_step(&mut self, batch: &GlobalBatch) -> Result<HotStepStats> {
        let start = Instant::now();
        let scale = loss_scale(batch)?;
        let rank = self.world.rank();
        let phases = self.phases(batch)?;
        let (mut loss, mut switch_seconds) = (0.0, 0.0);
        let mut switch_bytes = SwitchBytes::default();
        let mut phase_stats = Vec::new();
        // The summed accumulator of the last phase: its runtime and flat buffer.
        let mut carried: Option<(usize, Tensor)> = None;
        let mut update_share: Option<Tensor> = None;
        for (r, buckets) in phases {
            let switching = Instant::now();
            if r != 0 {
                let src = self.runtimes[0].trainer.state_pieces()?.params;
                let dst = self.runtimes[r].trainer.state_pieces()?.params;
                switch_bytes += self.switch((0, r, Move::Params), &src, &dst)?;
            }
            let grads = self.runtimes[r].trainer.zero_gradients()?;
            if let Some((p, previous)) = carried.take() {
                let src = self.runtimes[p].trainer.gradient_pieces(
                    &previous,
                    0..previous.numel(),
                    false,
                )?;
                let all =
                    self.runtimes[r]
                        .trainer
                        .gradient_pieces(&grads, 0..grads.numel(), false)?;
                let dst = held(&all, &self.runtimes[r].landing, rank);
                switch_bytes += self.switch((p, r, Move::Accumulator), &src, &dst)?;
            }
            switch_seconds += switching.elapsed().as_secs_f64();
            let computing = Instant::now();
            let phase = GlobalBatch {
                buckets,
                target_tokens: batch.target_tokens,
            };
            let trainer = &mut self.runtimes[r].trainer;
            let local = trainer.accumulate_batch(&phase, scale, &grads)?;
            loss += trainer.reported_loss(local)?;
            if r == 0 {
                update_share = Some(trainer.reduce_for_update(&grads)?);
            } else {
                trainer.reduce_gradients(&grads)?;
                carried = Some((r, grads));
            }
            let micro = phase.buckets.iter().flat_map(|b| &b.micro_batches);
            phase_stats.push(PhaseStats {
                strategy: self.runtimes[r].strategy,
                sequences: micro.clone().map(|m| m.rows).sum(),
                tokens: micro.map(|m| m.target_tokens).sum(),
                seconds: computing.elapsed().as_secs_f64(),
            });
        }
        let share = match (update_share, carried) {
            (Some(share), _) => share,
            (None, Some((p, previous))) => {
                let switching = Instant::now();
                let update = &self.runtimes[0].trainer;
                let range = update.gradient_share_range();
                let ops = Ops::new(self.backend.as_ref());
                let share = ops.full(0.0, DType::F32, &[range.len()])?;
                let zero1 = self.runtimes[0].strategy.zero1;
                let dst = update.gradient_pieces(&share, range, zero1)?;
                let src = self.runtimes[p].trainer.gradient_pieces(
                    &previous,
                    0..previous.numel(),
                    false,
                )?;
                switch_bytes += self.switch((p, 0, Move::IntoUpdate), &src, &dst)?;
                switch_seconds += switching.elapsed().as_secs_f64();
                share
            }
            (None, None) => {
                return Err(Error::Config("the global batch has no micro-batch".into()));
            }
        };
        let (grad_norm, lr) = self.runtimes[0].trainer.apply_update(&share)?;
        let stats = HotStepStats {
            step: StepStats {
                loss,
                grad_norm,
                lr,
                tokens: batch.target_tokens,
                seconds: start.elapsed().as_secs_f64(),
            },
            phases: phase_stats,
            switch_seconds,
            switch_bytes: switch_bytes.received,
            switch_bytes_without_reuse: switch_bytes.without_reuse,
        };
        stats.step.trace(self.step());
        tracing::debug!(
            switch_seconds = stats.switch_seconds,
            switch_bytes = stats.switch_bytes,
            phases = stats.phases.len(),
            "hot-switching step's switches"
        );
        Ok(stats)
    }

    /// Mean loss per target token over `batches`, under the update strategy.
    pub fn evaluate(&mut self, batches: &[GlobalBatch]) -> Result<f64> {
        self.runtimes[0].trainer.evaluate(batches)
    }

    /// Collective: the whole model's state on world rank 0 (`None` elsewhere).
    pub fn gather_state(&self) -> Result<Option<TrainerState>> {
        self.runtimes[0].trainer.gather_state()
    }

    /// Continue from a whole-model state (every rank passes the same one).
    pub fn restore(&mut self, state: &TrainerState) -> Result<()> {
        self.runtimes[0].trainer.restore(state)
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> u64 {
        self.runtimes[0].trainer.step()
    }
}
