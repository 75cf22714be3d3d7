use crate::NodeId;

/// Errors of the graph layer; node-specific ones name the node and its op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    #[error("node {node} ({op}): {detail}")]
    Node {
        node: NodeId,
        op: String,
        detail: String,
    },
    #[error("{op}: {detail}")]
    Infer { op: String, detail: String },
    #[error(
        "symbolic dimension `{name}` is not bound; pass a value for it when building the plan"
    )]
    UnboundDim { name: String },
    #[error("{detail}")]
    Invalid { detail: String },
    /// A collective node's communicator failed (timeout, dead peer, ...).
    #[error("collective failed: {0}")]
    Collective(String),
}

pub type Result<T> = std::result::Result<T, Error>;
