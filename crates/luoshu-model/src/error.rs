use std::path::PathBuf;

/// Errors of the model and data layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no training text found: {searched}. Pass a file, a directory or a glob with --data PATH"
    )]
    NoData { searched: String },
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
    #[error("invalid model configuration: {0}")]
    ModelConfig(String),
    #[error("invalid training configuration: {0}")]
    TrainConfig(String),
    #[error("generation: {0}")]
    Generate(String),
    #[error("trainer state does not match the model: {0}")]
    State(String),
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
}
