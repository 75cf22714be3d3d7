use std::path::PathBuf;

/// Errors of the training layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid data configuration: {0}")]
    Config(String),
    #[error("invalid training configuration: {0}")]
    TrainConfig(String),
    #[error("the strategy does not fit: {0}")]
    Strategy(String),
    #[error("trainer state does not match the model: {0}")]
    State(String),
    /// A Hugging Face model directory (or one of its files) luoshu cannot read or write.
    #[error("{path}: {message}")]
    HuggingFace { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] luoshu_model::Error),
    #[error(transparent)]
    Data(#[from] luoshu_data::Error),
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    #[error(transparent)]
    Comm(#[from] luoshu_comm::Error),
    #[error(transparent)]
    Dist(#[from] luoshu_dist::Error),
}

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
