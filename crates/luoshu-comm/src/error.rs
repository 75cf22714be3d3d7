use std::time::Duration;

/// Everything a communication operation can fail with. Each variant names the operation
/// and the rank that saw the failure, so a message from any rank says what went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Some ranks did not reach the operation within the communicator's timeout.
    #[error(
        "{op} on rank {rank} of {size} timed out after {timeout:?}: ranks {missing:?} never arrived"
    )]
    Timeout {
        /// The operation (`all_reduce`, `recv`, ...).
        op: String,
        /// The rank that waited.
        rank: usize,
        /// Ranks in the group.
        size: usize,
        /// The ranks it waited for in vain.
        missing: Vec<usize>,
        /// How long it waited.
        timeout: Duration,
    },
    /// A peer failed during the operation or had left the group.
    #[error("{op} on rank {rank}: rank {peer} failed or left the group ({reason})")]
    PeerFailed {
        /// The operation.
        op: String,
        /// The rank that saw the failure.
        rank: usize,
        /// The peer that failed.
        peer: usize,
        /// What is known about the failure.
        reason: String,
    },
    /// The arguments cannot work (shapes or dtypes that differ across ranks, a rank out of
    /// range, a communicator broken by an earlier failure, ...).
    #[error("{op} on rank {rank}: {message}")]
    InvalidArgument {
        /// The operation.
        op: String,
        /// The rank that refused it.
        rank: usize,
        /// What is wrong.
        message: String,
    },
    /// The MPI library or a malformed MPI message failed the operation.
    #[error("MPI: {0}")]
    Mpi(String),
    /// A tensor could not be built from what arrived.
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
}

/// The communication layer's result.
pub type Result<T> = std::result::Result<T, Error>;
