//! Distribution: distributed states of tensors, redistribution between states over a
//! [`luoshu_comm::Communicator`], and the parallel strategies.

#![deny(missing_docs)]

pub mod collectives;
mod error;
pub mod redistribute;
pub mod state;
pub mod strategy;

pub use error::{Error, OrderProblem, Result};
pub use redistribute::{execute, plan, Kind, Redistribution};
pub use state::{shard_range, Axis, DState};
pub mod pipeline;
pub use collectives::CommCollectives;
pub use pipeline::{
    balance_stages, one_f_one_b, simulate_costed, simulate_schedule, PipelineAction,
};
pub use strategy::{Mesh, Strategy};
pub mod deduce;
pub use deduce::deduce;
pub mod insert;
pub use insert::{distribute, Distributed, SubGroup};
pub mod placement;
pub use placement::{Holding, Piece, Placement, Region};
pub mod switch;
pub use switch::{SwitchPlan, SwitchPlanner, SwitchReport};
pub mod topology;
pub use topology::{LinkClass, LinkCost, Topology};
