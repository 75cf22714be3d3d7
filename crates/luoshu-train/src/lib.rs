//! Training in luoshu: the single-device trainer (the reference every strategy is compared
//! with), the parallel runtime that runs one strategy over many ranks, AdamW and its ZeRO-1
//! sharding, the learning-rate schedule, canonical checkpoints, Hugging Face export and
//! import, and the equivalence harness.

#![deny(missing_docs)]

pub mod checkpoint;
mod error;
pub mod hf;
pub mod hot;
pub mod memory_estimate;
pub mod optim;
pub mod parallel;
pub mod placement;
mod schedule;
mod trainer;

pub use error::{Error, Result};
pub use optim::{clip_grad_norm, AdamW, AdamWConfig, AdamWState};
pub use schedule::LrSchedule;
pub use trainer::{StepStats, TrainConfig, Trainer, TrainerState};
