//! A simulated training step: its buckets (with every candidate evaluated and the one
//! chosen), its phases, the switches between them and the optimizer update.

use crate::evaluate::{fastest, Candidates, Evaluated};
use crate::layout::Candidate;
use crate::ops::Work;
use crate::phase::{phase, update_seconds, PhaseCost};
use crate::simulator::Simulator;
use crate::switch_cost::{Move, SwitchCost, Switches};
use crate::{Error, Result};

/// The documents of lengths in `(low, high]`, packed into rows of `high` tokens (or, for
/// the padded baseline, one row each).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub low: usize,
    pub high: usize,
    pub documents: usize,
    /// Tokens of the documents (without padding).
    pub tokens: usize,
    pub rows: Vec<Work>,
    /// Every candidate on these rows.
    pub evaluated: Vec<Evaluated>,
    /// Optimizer bytes per rank of the update strategy, or `None` for the update
    /// strategy's own bucket.
    pub update_optimizer: Option<f64>,
    /// Index into `evaluated`.
    pub choice: usize,
}

impl Bucket {
    pub fn chosen(&self) -> &Evaluated {
        &self.evaluated[self.choice]
    }

    /// Optimizer bytes per rank while `e` runs this bucket.
    pub fn optimizer_for(&self, e: &Evaluated) -> f64 {
        self.update_optimizer.unwrap_or(e.own_optimizer)
    }
}

/// Adjacent buckets run under one candidate, as one pipeline of all their micro-batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub candidate: Candidate,
    pub buckets: Vec<usize>,
    /// Memory includes the update strategy's optimizer state.
    pub cost: PhaseCost,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub buckets: Vec<Bucket>,
    pub phases: Vec<Phase>,
    pub switches: Vec<SwitchCost>,
    pub update: Candidate,
    pub update_seconds: f64,
}

impl Step {
    pub fn compute_seconds(&self) -> f64 {
        self.phases.iter().fold(0.0, |t, p| t + p.cost.seconds)
    }

    pub fn switch_seconds(&self) -> f64 {
        self.switches.iter().fold(0.0, |t, s| t + s.seconds)
    }

    pub fn seconds(&self) -> f64 {
        self.compute_seconds() + self.switch_seconds() + self.update_seconds
    }

    /// `buckets` (shortest first, each with its choice made; the last one's candidate is
    /// the update strategy) run as phases shortest first: merged where adjacent buckets
    /// chose the same candidate, parameters switched in from the update layout, the
    /// accumulator carried from phase to phase, ending in the update layout.
    pub fn assemble(
        sim: &Simulator,
        candidates: &Candidates,
        switches: &mut Switches,
        buckets: Vec<Bucket>,
    ) -> Result<Step> {
        let last = buckets
            .last()
            .ok_or_else(|| Error::Input("a step needs at least one bucket".into()))?;
        let update = last.chosen().candidate;
        let update_optimizer = last.optimizer_for(last.chosen());
        let mut phases: Vec<Phase> = Vec::new();
        for (i, bucket) in buckets.iter().enumerate() {
            let candidate = bucket.chosen().candidate;
            match phases.last_mut() {
                Some(p) if p.candidate == candidate => p.buckets.push(i),
                _ => phases.push(Phase {
                    candidate,
                    buckets: vec![i],
                    cost: bucket.chosen().cost,
                }),
            }
        }
        for p in &mut phases {
            let rows: Vec<Work> = p
                .buckets
                .iter()
                .flat_map(|&b| buckets[b].rows.iter().copied())
                .collect();
            let layout = candidates.layout(p.candidate);
            p.cost = phase(sim, layout, &rows, update_optimizer)?;
        }
        let mut moves = Vec::new();
        let target = update.strategy;
        for (i, p) in phases.iter().enumerate() {
            let here = p.candidate.strategy;
            if here != target {
                moves.push((target, here, Move::Params));
            }
            if let Some(previous) = i.checked_sub(1).map(|j| phases[j].candidate.strategy) {
                if previous != here {
                    moves.push((previous, here, Move::Accumulator));
                }
            }
        }
        let switches = moves
            .into_iter()
            .map(|(from, to, what)| switches.cost(from, to, what))
            .collect::<Result<Vec<_>>>()?;
        Ok(Step {
            buckets,
            phases,
            switches,
            update,
            update_seconds: update_seconds(sim, candidates.layout(update)),
        })
    }

    /// One bucket of all of `rows` under the fastest fitting candidate, as the update
    /// strategy: a static strategy.
    pub fn single(
        sim: &Simulator,
        candidates: &Candidates,
        switches: &mut Switches,
        bucket: (usize, usize, &[usize]),
        rows: Vec<Work>,
    ) -> Result<Option<Step>> {
        let (low, high, lengths) = bucket;
        let evaluated = candidates.evaluate(sim, &rows)?;
        let Some(choice) = fastest(&evaluated, None, sim.memory_capacity()) else {
            return Ok(None);
        };
        let bucket = Bucket {
            low,
            high,
            documents: lengths.len(),
            tokens: lengths.iter().sum(),
            rows,
            evaluated,
            update_optimizer: None,
            choice,
        };
        Step::assemble(sim, candidates, switches, vec![bucket]).map(Some)
    }
}
