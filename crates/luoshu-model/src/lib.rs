//! The models of luoshu: configuration and presets, the LLaMA graph builder with a spec
//! (name, shape, layer, role) for every parameter, the slice of the model one rank builds
//! ([`ModelShard`]), seeded initialization, and generation.

#![deny(missing_docs)]

mod config;
mod context;
mod error;
pub mod generate;
mod init;
pub mod llama;
mod params;
pub mod sampling;
mod shard;
mod spec;

pub use config::{ModelConfig, Precision, PRESET_NAMES};
pub use error::{Error, Result};
pub use init::{init_params, rope_tables, INIT_STD};
pub use llama::{
    build_decode_graph, build_logits_graph, build_loss_graph, build_stage_forward_graph,
    build_stage_train_graph, build_train_graph, DecodeGraph, RowLayout, StageTrainGraph,
};
pub use params::ParamStore;
pub use shard::{context_chunks, context_positions, ModelShard, ShardedParam};
pub use spec::{param_specs, ParamRole, ParamSpec};
