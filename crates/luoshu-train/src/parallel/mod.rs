//! Training one model over many ranks: the per-rank trainer that runs a strategy (each
//! rank builds the [`luoshu_model::ModelShard`] its mesh coordinates give it), ZeRO-1
//! sharding of the optimizer, and the equivalence harness.

pub mod compare;
pub mod conformance;
mod deal;
mod micro;
mod optimizer;
mod overlap;
mod state;
pub mod switch_check;
mod trainer;

pub use micro::{bindings, context_bindings, pad_for_tp, pad_multiple};
pub(crate) use micro::{micro_feeds, row_layout};
pub use state::StatePieces;
pub use trainer::{GradientFault, ParallelTrainer};
