//! The error type of the training layer.

use std::path::PathBuf;

/// Errors of the training layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer does not fit, e.g. a checkpoint trained with another tokenizer.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Batches or micro-batches that do not fit what is asked of them (shapes, token counts,
    /// a round trip without strategies).
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// Invalid hyper-parameters: optimizer, learning-rate schedule or trainer settings.
    #[error("invalid training configuration: {0}")]
    TrainConfig(String),
    /// A parallel strategy that cannot run this model on this mesh (pipeline stages, shards).
    #[error("the strategy does not fit: {0}")]
    Strategy(String),
    /// A trainer, optimizer or checkpoint state that does not match the model or strategy.
    #[error("trainer state does not match the model: {0}")]
    State(String),
    /// A Hugging Face model directory (or one of its files) luoshu cannot read or write.
    #[error("{path}: {message}")]
    HuggingFace {
        /// The model directory or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// From the model layer.
    #[error(transparent)]
    Model(#[from] luoshu_model::Error),
    /// From the data layer.
    #[error(transparent)]
    Data(#[from] luoshu_data::Error),
    /// From the graph layer.
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    /// From the operator layer.
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    /// From the tensor layer.
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    /// From the communicator.
    #[error(transparent)]
    Comm(#[from] luoshu_comm::Error),
    /// From the distribution layer.
    #[error(transparent)]
    Dist(#[from] luoshu_dist::Error),
}

/// The result of every fallible training operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn hf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::HuggingFace {
            path: path.into(),
            message: message.into(),
        }
    }
}
