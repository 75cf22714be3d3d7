/// Errors of the model layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model configuration or preset that cannot be built (what is wrong and the fix).
    #[error("invalid model configuration: {0}")]
    ModelConfig(String),
    /// Generation options or a prompt that cannot be used.
    #[error("generation: {0}")]
    Generate(String),
    /// Stored parameters whose names or shapes do not fit the model.
    #[error("parameters do not match the model: {0}")]
    State(String),
    /// The tokenizer failed.
    #[error(transparent)]
    Data(#[from] luoshu_data::Error),
    /// The model's graph could not be built, compiled or run.
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
    /// A kernel failed.
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    /// A tensor could not be built.
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
}

/// The model layer's result.
pub type Result<T> = std::result::Result<T, Error>;
