use std::time::Duration;

/// Everything a communication operation can fail with. Each variant names the operation
/// and the rank that saw the failure, so a message from any rank says what went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "{op} on rank {rank} of {size} timed out after {timeout:?}: ranks {missing:?} never arrived"
    )]
    Timeout {
        op: String,
        rank: usize,
        size: usize,
        missing: Vec<usize>,
        timeout: Duration,
    },
    #[error("{op} on rank {rank}: rank {peer} failed or left the group ({reason})")]
    PeerFailed {
        op: String,
        rank: usize,
        peer: usize,
        reason: String,
    },
    #[error("{op} on rank {rank}: {message}")]
    InvalidArgument {
        op: String,
        rank: usize,
        message: String,
    },
    #[error("MPI: {0}")]
    Mpi(String),
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
