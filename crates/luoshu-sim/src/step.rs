//! A simulated training step: its buckets (with every candidate evaluated and the one
//! chosen), its phases, the switches between them and the optimizer update.

use crate::evaluate::{fastest, Candidates, Evaluated};
use crate::layout::Candidate;
use crate::ops::Work;
use crate::phase::{phase, update_seconds, PhaseCost};
use crate::simulator::Simulator;
use crate::switch_cost::{Move, SwitchCost, Switches};
use crate::{Error, Result};
use luoshu_dist::Strategy;

/// The documents of lengths in `(low, high]`, packed into rows of `high` tokens (or, for
/// the padded baseline, one row each).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Exclusive lower bound of the bucket's document lengths, in tokens.
    pub low: usize,
    /// Inclusive upper bound of its document lengths, and the length of its rows.
    pub high: usize,
    /// Number of documents in the bucket.
    pub documents: usize,
    /// Tokens of the documents (without padding).
    pub tokens: usize,
    /// The bucket's micro-batches, one row each.
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
    /// The evaluation of the chosen candidate.
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
    /// The candidate every bucket of the phase runs under.
    pub candidate: Candidate,
    /// Indices into [`Step::buckets`], shortest first.
    pub buckets: Vec<usize>,
    /// Memory includes the update strategy's optimizer state.
    pub cost: PhaseCost,
}

/// One simulated training step: buckets run as phases with switches between them, then
/// the optimizer update.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The buckets, shortest first.
    pub buckets: Vec<Bucket>,
    /// The phases in the order they run, the update strategy's last.
    pub phases: Vec<Phase>,
    /// Every switch of the step, in the order the phases need them.
    pub switches: Vec<SwitchCost>,
    /// The candidate of the last bucket, whose layout holds the optimizer state and runs
    /// the update.
    pub update: Candidate,
    /// Seconds of the optimizer update under `update`.
    pub update_seconds: f64,
}

impl Step {
    /// Seconds of all phases: pipelines and gradient reductions.
    pub fn compute_seconds(&self) -> f64 {
        self.phases.iter().fold(0.0, |t, p| t + p.cost.seconds)
    }

    /// Seconds of all switches.
    pub fn switch_seconds(&self) -> f64 {
        self.switches.iter().fold(0.0, |t, s| t + s.seconds)
    }

    /// Seconds of the whole step: phases, switches and the update.
    pub fn seconds(&self) -> f64 {
        self.compute_seconds() + self.switch_seconds() + self.update_seconds
    }

    /// `buckets` (shortest first, each with its choice made; the last one's candidate is
    /// the update strategy) run as phases, one per chosen candidate (all its buckets'
    /// micro-batches in one pipeline, as the trainer runs them): parameters switched in from
    /// the update layout, the accumulator carried from phase to phase, the update
    /// strategy's phase last. The other phases run in the order whose switches cost least
    /// (every order is tried: a step has at most a few phases); ties keep shortest first.
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
            match phases.iter_mut().find(|p| p.candidate == candidate) {
                Some(p) => p.buckets.push(i),
                None => phases.push(Phase {
                    candidate,
                    buckets: vec![i],
                    cost: bucket.chosen().cost,
                }),
            }
        }
        // The update strategy's phase (it holds the last bucket) ends the step.
        let update_phase = phases.iter().position(|p| p.candidate == update);
        if let Some(at) = update_phase {
            let phase = phases.remove(at);
            phases.push(phase);
        }
        for p in &mut phases {
            let rows: Vec<Work> = p
                .buckets
                .iter()
                .flat_map(|&b| buckets[b].rows.iter().copied())
                .collect();
            let layout = candidates.layout(p.candidate)?;
            p.cost = phase(sim, layout, &rows, update_optimizer)?;
        }
        let mut best: Option<(f64, Vec<usize>, Vec<SwitchCost>)> = None;
        for order in orders(phases.len() - 1) {
            let strategies: Vec<Strategy> = order
                .iter()
                .chain([&(phases.len() - 1)])
                .map(|&i| phases[i].candidate.strategy)
                .collect();
            let costs = switch_moves(&strategies, update.strategy)
                .into_iter()
                .map(|(from, to, what)| switches.cost(from, to, what))
                .collect::<Result<Vec<_>>>()?;
            let seconds = costs.iter().map(|c| c.seconds).sum::<f64>();
            if best.as_ref().is_none_or(|(b, _, _)| seconds < *b) {
                best = Some((seconds, order, costs));
            }
        }
        let (_, order, switches) =
            best.ok_or_else(|| Error::Input("a step needs at least one phase".into()))?;
        let last_phase = phases.pop();
        let mut ordered: Vec<Phase> = order.iter().map(|&i| phases[i].clone()).collect();
        ordered.extend(last_phase);
        Ok(Step {
            buckets,
            phases: ordered,
            switches,
            update,
            update_seconds: update_seconds(sim, candidates.layout(update)?),
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

/// The switches of phases under `strategies`, in order, updating under `update`: each
/// phase's parameters from the update layout, the accumulator from each phase to the next.
pub fn switch_moves(strategies: &[Strategy], update: Strategy) -> Vec<(Strategy, Strategy, Move)> {
    let mut moves = Vec::new();
    for (i, &here) in strategies.iter().enumerate() {
        if here != update {
            moves.push((update, here, Move::Params));
        }
        if let Some(&previous) = i.checked_sub(1).map(|j| &strategies[j]) {
            if previous != here {
                moves.push((previous, here, Move::Accumulator));
            }
        }
    }
    moves
}

/// Every order of `0..n`, the identity first.
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in orders(n - 1) {
        for at in (0..=rest.len()).rev() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Hardware;
    use luoshu_model::{ModelConfig, Precision};

    #[test]
    fn every_order_is_listed_once_the_identity_first() {
        assert_eq!(orders(0), vec![Vec::<usize>::new()]);
        let three = orders(3);
        assert_eq!(three.len(), 6);
        assert_eq!(three[0], vec![0, 1, 2]);
        let unique: std::collections::BTreeSet<_> = three.iter().cloned().collect();
        assert_eq!(unique.len(), 6);
    }

    #[test]
    fn one_phase_per_strategy_update_last_in_the_cheapest_order() {
        let model = ModelConfig::preset("tiny").unwrap();
        let hardware = Hardware::preset("a800-node").unwrap();
        let sim = Simulator::new(model, hardware, 4, Precision::Bf16Mixed).unwrap();
        let candidates = Candidates::new(&sim).unwrap();
        let mut switches = Switches::new(&sim.model, &sim.topology, sim.bytes.param as usize);
        let pick = |name: &str| -> Candidate {
            Candidate {
                strategy: name.parse().unwrap(),
                recompute: false,
            }
        };
        // Buckets under tp4, dp2tp2, tp4 again, then the update strategy dp4.
        let chosen = [pick("tp4"), pick("dp2tp2"), pick("tp4"), pick("dp4")];
        let buckets: Vec<Bucket> = chosen
            .iter()
            .enumerate()
            .map(|(i, &candidate)| {
                let high = 64 << i;
                let rows = vec![Work::packed(high, &[high]); 4];
                let evaluated = candidates.evaluate(&sim, &rows).unwrap();
                let choice = evaluated
                    .iter()
                    .position(|e| e.candidate == candidate)
                    .unwrap();
                Bucket {
                    low: high / 2,
                    high,
                    documents: 4,
                    tokens: 4 * high,
                    rows,
                    evaluated,
                    update_optimizer: (i < 3).then_some(0.0),
                    choice,
                }
            })
            .collect();
        let step = Step::assemble(&sim, &candidates, &mut switches, buckets).unwrap();
        let phases: Vec<(String, Vec<usize>)> = step
            .phases
            .iter()
            .map(|p| (p.candidate.to_string(), p.buckets.clone()))
            .collect();
        // tp4's two buckets run as one phase; dp4 (the update strategy) is last.
        assert_eq!(phases.len(), 3, "{phases:?}");
        assert_eq!(phases[2], ("dp4".to_string(), vec![3]));
        assert!(
            phases.contains(&("tp4".to_string(), vec![0, 2])),
            "{phases:?}"
        );
        let chosen_seconds = step.switch_seconds();
        for first in ["tp4", "dp2tp2"] {
            let second = if first == "tp4" { "dp2tp2" } else { "tp4" };
            let strategies: Vec<Strategy> = [first, second, "dp4"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
            let seconds: f64 = switch_moves(&strategies, "dp4".parse().unwrap())
                .into_iter()
                .map(|(from, to, what)| switches.cost(from, to, what).unwrap().seconds)
                .sum();
            assert!(
                chosen_seconds <= seconds,
                "{chosen_seconds} vs {seconds} ({first} first)"
            );
        }
    }
}
