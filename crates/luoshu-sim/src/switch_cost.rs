//! What switching between two strategies costs, from the switch planner's real plans over
//! the placements the trainer uses: parameters move from the update layout into each
//! phase's layout, and the reduced gradient accumulator of one phase lands on one holder
//! of the next phase's layout (as `luoshu_train::hot` runs a step).

use crate::Result;
use luoshu_dist::switch::{plan_switch, SenderChoice};
use luoshu_dist::{Placement, Strategy, SwitchReport, Topology};
use luoshu_model::ModelConfig;
use luoshu_train::hot::one_holder;
use luoshu_train::placement::strategy_placements;
use std::collections::HashMap;
use std::fmt;

/// What a switch moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Move {
    /// Parameters, from the update strategy's layout into a phase's.
    Params,
    /// The reduced gradient accumulator, from one phase's layout onto one holder of each
    /// piece of the next's.
    Accumulator,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Move::Params => "parameters",
            Move::Accumulator => "gradients",
        })
    }
}

/// One planned switch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwitchCost {
    /// The strategy whose layout the tensors leave.
    pub from: Strategy,
    /// The strategy whose layout they arrive in.
    pub to: Strategy,
    /// Parameters or the gradient accumulator.
    pub what: Move,
    /// Bytes received over links by all ranks together.
    pub bytes: usize,
    /// The planner's α-β estimate (the slowest rank).
    pub seconds: f64,
}

/// Plans switches once per (from, to, what) for one model on one topology.
pub struct Switches<'a> {
    model: &'a ModelConfig,
    topology: &'a Topology,
    element_bytes: usize,
    params: HashMap<Strategy, Vec<Placement>>,
    cache: HashMap<(Strategy, Strategy, Move), SwitchCost>,
}

impl<'a> Switches<'a> {
    /// Tensors move in `element_bytes` per element (the parameter dtype, as the runtime
    /// keeps parameters and accumulators).
    pub fn new(model: &'a ModelConfig, topology: &'a Topology, element_bytes: usize) -> Self {
        Switches {
            model,
            topology,
            element_bytes,
            params: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    fn params_of(&mut self, strategy: Strategy) -> Result<&Vec<Placement>> {
        if !self.params.contains_key(&strategy) {
            let placed = strategy_placements(self.model, strategy)?;
            self.params.insert(strategy, placed.params);
        }
        Ok(&self.params[&strategy])
    }

    /// The cost of moving `what` from `from` to `to`.
    pub fn cost(&mut self, from: Strategy, to: Strategy, what: Move) -> Result<SwitchCost> {
        if let Some(cost) = self.cache.get(&(from, to, what)) {
            return Ok(*cost);
        }
        let source = self.params_of(from)?.clone();
        let target: Vec<Placement> = match what {
            Move::Params => self.params_of(to)?.clone(),
            Move::Accumulator => self.params_of(to)?.iter().map(one_holder).collect(),
        };
        let pairs: Vec<(&Placement, &Placement)> = source.iter().zip(&target).collect();
        let plan = plan_switch(
            &pairs,
            self.topology,
            self.element_bytes,
            SenderChoice::Balanced,
        )?;
        let report = SwitchReport::of(&plan, pairs.len(), self.topology);
        let cost = SwitchCost {
            from,
            to,
            what,
            bytes: report.received,
            seconds: report.estimated_seconds,
        };
        self.cache.insert((from, to, what), cost);
        Ok(cost)
    }
}
