//! luoshu's cost model and cluster simulator: a hardware description, the cost of a
//! micro-batch under a strategy (roofline compute, memory, α-β communication), whole
//! training steps with hot switching (switches from the planner's real plans) beside the
//! best static strategies with padding and with packing, and the search that picks bucket
//! edges and a strategy per bucket.

#![deny(missing_docs)]

pub mod calibration;
pub mod collective;
pub mod compiled;
mod error;
pub mod evaluate;
pub mod hardware;
pub mod kernels;
pub mod layout;
pub mod lengths;
pub mod memory;
pub mod micro_batch;
pub mod ops;
pub mod phase;
pub mod real_step;
pub mod roofline;
pub mod rows;
pub mod search;
pub mod simulator;
pub mod step;
pub mod switch_cost;

pub use error::{Error, Result};
pub use hardware::Hardware;
pub use layout::Candidate;
pub use search::{plan, Plan};
pub use simulator::Simulator;
pub use step::Step;
