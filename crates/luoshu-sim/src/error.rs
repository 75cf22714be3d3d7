//! The errors of the simulator: bad hardware files, shapes or strategies that cannot run,
//! and empty inputs.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A hardware description that cannot be used; the message names the file and field.
    #[error("hardware: {0}")]
    Hardware(String),
    /// A hardware preset name that does not exist.
    #[error("unknown hardware preset `{name}`{}; available: {available}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownPreset {
        name: String,
        suggestion: Option<String>,
        available: String,
    },
    /// Lengths, devices or a context that cannot be simulated.
    #[error("simulation: {0}")]
    Input(String),
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    #[error(transparent)]
    Model(#[from] luoshu_model::Error),
    #[error(transparent)]
    Dist(#[from] luoshu_dist::Error),
    #[error(transparent)]
    Train(#[from] luoshu_train::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
