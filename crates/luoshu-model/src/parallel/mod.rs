//! Training one model over many ranks: which part of the model each rank holds
//! ([`ModelShard`]) and the per-rank trainer that runs a strategy.

pub mod conformance;
mod micro;
mod optimizer;
mod shard;
mod state;
mod trainer;

pub(crate) use micro::micro_feeds;
pub use micro::{bindings, pad_for_tp};
pub use shard::{ModelShard, ShardedParam};
pub use trainer::ParallelTrainer;
