//! Hot switching's data movement: planning and running the switch of a model state (a set
//! of tensors) from one set of placements to another with the least communication.

mod cells;
mod execute;
mod index;
mod plan;
mod report;

pub use execute::{allocate_pieces, execute_switch, SwitchPieces};
pub use plan::{plan_switch, SenderChoice, SwitchPlan, Transfer};
pub use report::{human_bytes, SwitchReport};

use crate::placement::Placement;
use crate::topology::Topology;
use crate::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// What a cached plan depends on: both sides' placements, the element size and the
/// node layout (link costs only change reports, never the plan).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    from: Vec<Placement>,
    to: Vec<Placement>,
    element_bytes: usize,
    world: usize,
    ranks_per_node: usize,
}

/// Plans switches once per (source, destination, shapes) and reuses them: a training
/// step switches between the same layouts every step.
#[derive(Debug, Default)]
pub struct SwitchPlanner {
    cache: HashMap<PlanKey, Arc<SwitchPlan>>,
}

impl SwitchPlanner {
    /// A planner with an empty cache.
    pub fn new() -> Self {
        SwitchPlanner::default()
    }

    /// The plan moving every tensor from `from[i]` to `to[i]`.
    pub fn plan(
        &mut self,
        from: &[Placement],
        to: &[Placement],
        topology: &Topology,
        element_bytes: usize,
    ) -> Result<Arc<SwitchPlan>> {
        let key = PlanKey {
            from: from.to_vec(),
            to: to.to_vec(),
            element_bytes,
            world: topology.world,
            ranks_per_node: topology.ranks_per_node,
        };
        if let Some(plan) = self.cache.get(&key) {
            return Ok(plan.clone());
        }
        let pairs: Vec<(&Placement, &Placement)> = from.iter().zip(to).collect();
        let plan = Arc::new(plan_switch(
            &pairs,
            topology,
            element_bytes,
            SenderChoice::Balanced,
        )?);
        self.cache.insert(key, plan.clone());
        Ok(plan)
    }

    /// Plans cached so far.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}
