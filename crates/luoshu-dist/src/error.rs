/// Errors of distributed states, redistribution and strategies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid distributed state: {0}")]
    InvalidState(String),
    #[error("cannot redistribute: {0}")]
    Redistribution(String),
    #[error("no deduction rule: {0}")]
    Deduction(String),
    #[error("invalid strategy: {0}")]
    Strategy(String),
    #[error(transparent)]
    Comm(#[from] luoshu_comm::Error),
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
