//! Every candidate of a device count evaluated on one set of micro-batches, and the choice
//! among them: the fastest that fits in device memory.

use crate::layout::{candidates, Candidate, Layout};
use crate::memory::optimizer_bytes;
use crate::ops::Work;
use crate::phase::{phase, PhaseCost};
use crate::simulator::Simulator;
use crate::{Error, Result};

/// One candidate on one set of micro-batches; its memory counts no optimizer state (that
/// belongs to the update strategy and is added when choosing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluated {
    /// The candidate evaluated.
    pub candidate: Candidate,
    /// Its time and memory on the micro-batches, without optimizer state.
    pub cost: PhaseCost,
    /// Optimizer state per rank if this candidate were the update strategy.
    pub own_optimizer: f64,
}

impl Evaluated {
    /// Memory on the fullest rank while `optimizer` bytes of update state are held.
    pub fn memory_with(&self, optimizer: f64) -> f64 {
        self.cost.memory.total() + optimizer
    }
}

/// The layouts of every candidate on the simulator's devices, built once.
pub struct Candidates {
    /// One layout per candidate, in candidate order.
    pub layouts: Vec<Layout>,
}

impl Candidates {
    /// Lays out every candidate of the simulator's devices (ZeRO-1 variants included);
    /// errors when no strategy can shard the model on them.
    pub fn new(sim: &Simulator) -> Result<Self> {
        let all = candidates(&sim.model, sim.devices, sim.per_node(), true);
        if all.is_empty() {
            return Err(Error::Input(format!(
                "no dp×tp×pp strategy runs {} layers and {} heads on {} devices with tensor \
                 parallelism inside nodes of {}",
                sim.model.n_layers,
                sim.model.n_heads,
                sim.devices,
                sim.per_node()
            )));
        }
        let layouts = all
            .into_iter()
            .map(|c| Layout::new(&sim.model, c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Candidates { layouts })
    }

    /// Every candidate on `rows`, in candidate order.
    pub fn evaluate(&self, sim: &Simulator, rows: &[Work]) -> Result<Vec<Evaluated>> {
        self.layouts
            .iter()
            .map(|layout| {
                Ok(Evaluated {
                    candidate: layout.candidate,
                    cost: phase(sim, layout, rows, 0.0)?,
                    own_optimizer: optimizer_bytes(layout, sim.bytes),
                })
            })
            .collect()
    }

    /// The layout of `candidate`; an error if it is not one of these candidates (the
    /// candidate of an [`Evaluated`] from [`Candidates::evaluate`] always is).
    pub fn layout(&self, candidate: Candidate) -> Result<&Layout> {
        self.layouts
            .iter()
            .find(|l| l.candidate == candidate)
            .ok_or_else(|| {
                Error::Input(format!(
                    "{candidate} is not among the candidates laid out for this model and cluster"
                ))
            })
    }
}

/// Whether `e` is allowed and fits: as the update strategy (`update` is `None`: ZeRO-1
/// allowed, its own optimizer state) or beside an update strategy holding `update` bytes
/// of optimizer state per rank (ZeRO-1 is the update strategy's alone).
pub fn fits(e: &Evaluated, update: Option<f64>, capacity: f64) -> bool {
    match update {
        None => e.memory_with(e.own_optimizer) <= capacity,
        Some(optimizer) => !e.candidate.strategy.zero1 && e.memory_with(optimizer) <= capacity,
    }
}

/// The fastest candidate that fits (see [`fits`]); ties keep candidate order.
pub fn fastest(evaluated: &[Evaluated], update: Option<f64>, capacity: f64) -> Option<usize> {
    evaluated
        .iter()
        .enumerate()
        .filter(|(_, e)| fits(e, update, capacity))
        .min_by(|a, b| a.1.cost.seconds.total_cmp(&b.1.cost.seconds))
        .map(|(i, _)| i)
}
