//! Models, optimizers and the data pipeline of luoshu.

pub mod checkpoint;
mod config;
pub mod data;
mod error;
pub mod generate;
mod init;
pub mod llama;
pub mod optim;
pub mod parallel;
mod params;
pub mod sampling;
mod schedule;
mod trainer;

pub use config::{ModelConfig, Precision, PRESET_NAMES};
pub use error::{Error, Result};
pub use init::{init_params, rope_tables, INIT_STD};
pub use llama::{
    build_decode_graph, build_logits_graph, build_loss_graph, build_stage_forward_graph,
    build_stage_train_graph, build_train_graph, param_specs, DecodeGraph, ParamKind, ParamSpec,
    StageTrainGraph,
};
pub use optim::{clip_grad_norm, AdamW, AdamWConfig, AdamWState};
pub use params::ParamStore;
pub use schedule::LrSchedule;
pub use trainer::{StepStats, TrainConfig, Trainer, TrainerState};
