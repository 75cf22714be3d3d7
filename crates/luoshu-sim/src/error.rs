//! The errors of the simulator: bad hardware files, shapes or strategies that cannot run,
//! and empty inputs.

use thiserror::Error;

/// Why a simulation or plan could not be made.
#[derive(Debug, Error)]
pub enum Error {
    /// A hardware description that cannot be used; the message names the file and field.
    #[error("hardware: {0}")]
    Hardware(String),
    /// A hardware preset name that does not exist.
    #[error("unknown hardware preset `{name}`{}; available: {available}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The closest preset name, if one is close.
        suggestion: Option<String>,
        /// Every preset name, comma-separated.
        available: String,
    },
    /// Lengths, devices or a context that cannot be simulated.
    #[error("simulation: {0}")]
    Input(String),
    /// Scheduling or planning the memory of a graph whose kernels are counted failed.
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    /// The model configuration is invalid, or a shard or graph of it cannot be built.
    #[error(transparent)]
    Model(#[from] luoshu_model::Error),
    /// A strategy, topology, pipeline schedule or switch plan was rejected.
    #[error(transparent)]
    Dist(#[from] luoshu_dist::Error),
    /// The trainer's placement or hot-switching rules rejected a strategy or a bucket.
    #[error(transparent)]
    Train(#[from] luoshu_train::Error),
}

/// The simulator's result.
pub type Result<T> = std::result::Result<T, Error>;
