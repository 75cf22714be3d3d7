use crate::infer::InferError;
use crate::NodeId;

/// Errors of the graph layer; node-specific ones name the node and its op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A kernel or allocation of the backend failed.
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    /// A tensor could not be built or viewed (layout, dtype, size).
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    /// A node of an existing graph is wrong or could not be run.
    #[error("node {node} ({op}): {detail}")]
    Node {
        /// The node.
        node: NodeId,
        /// Its op's name.
        op: String,
        /// What is wrong with it.
        detail: String,
    },
    /// `Graph::add` refused an op whose inputs do not fit it.
    #[error("{op}: {reason} (inputs: {inputs})")]
    Infer {
        /// The op's name.
        op: String,
        /// The kind of mismatch.
        reason: InferError,
        /// The inputs and their types, as `value: type` pairs.
        inputs: String,
    },
    /// A symbolic dimension has no value in the plan's bindings.
    #[error(
        "symbolic dimension `{name}` is not bound; pass a value for it when building the plan"
    )]
    UnboundDim {
        /// The dimension's name.
        name: String,
    },
    /// A pass name that is not in the registry.
    #[error("unknown pass `{name}`; {suggestion}known passes: {known}")]
    UnknownPass {
        /// The name asked for.
        name: String,
        /// `did you mean `…`? ` for a close name, or empty.
        suggestion: String,
        /// Every registered pass, comma-separated.
        known: String,
    },
    /// Any other misuse of the graph API (feeds, outputs, options) or broken invariant.
    #[error("{detail}")]
    Invalid {
        /// What was wrong and what to do.
        detail: String,
    },
    /// A collective node's communicator failed (timeout, dead peer, ...).
    #[error("collective failed: {0}")]
    Collective(String),
}

/// The graph layer's result.
pub type Result<T> = std::result::Result<T, Error>;
