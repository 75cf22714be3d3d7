/// Errors of the model layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model configuration: {0}")]
    ModelConfig(String),
    #[error("generation: {0}")]
    Generate(String),
    #[error("parameters do not match the model: {0}")]
    State(String),
    #[error(transparent)]
    Data(#[from] luoshu_data::Error),
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
