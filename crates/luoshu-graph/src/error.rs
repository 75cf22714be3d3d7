use crate::infer::InferError;
use crate::{NodeId, Value};
use luoshu_tensor::DType;

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
    /// An input or parameter leaf without a tensor in the feeds.
    #[error(
        "missing feed for {kind} `{name}` ({dtype}{dims:?}); add it to the feeds by that name"
    )]
    MissingFeed {
        /// `input` or `parameter`.
        kind: &'static str,
        /// The leaf's name.
        name: String,
        /// The dtype the graph declares.
        dtype: DType,
        /// The dims the graph declares, under the bindings.
        dims: Vec<usize>,
    },
    /// A fed tensor of another shape or dtype than its leaf declares.
    #[error(
        "feed for {kind} `{name}` is {fed_dtype}{fed_dims:?} but the graph expects {dtype}{dims:?}"
    )]
    FeedMismatch {
        /// `input` or `parameter`.
        kind: &'static str,
        /// The leaf's name.
        name: String,
        /// The dtype of the fed tensor.
        fed_dtype: DType,
        /// The dims of the fed tensor.
        fed_dims: Vec<usize>,
        /// The dtype the graph declares.
        dtype: DType,
        /// The dims the graph declares, under the bindings.
        dims: Vec<usize>,
    },
    /// A second leaf of a name another leaf already has.
    #[error("node {existing} ({op}): a different leaf named `{name}` already exists")]
    DuplicateLeaf {
        /// The leaf that has the name.
        existing: NodeId,
        /// Its op's name.
        op: String,
        /// The name.
        name: String,
    },
    /// A value whose node is not in this graph.
    #[error("value {value} does not exist in this graph")]
    UnknownValue {
        /// The value.
        value: Value,
    },
    /// An output index beyond its node's outputs.
    #[error("node {node} ({op}): has {outputs} outputs, output {output} was used")]
    NoSuchOutput {
        /// The node.
        node: NodeId,
        /// Its op's name.
        op: String,
        /// Its number of outputs.
        outputs: usize,
        /// The output index used.
        output: u32,
    },
    /// A gradient asked of or with respect to a value this graph does not have.
    #[error("grad: {role} {value} is not a value of this graph")]
    GradOfUnknownValue {
        /// `loss` or `wrt`.
        role: &'static str,
        /// The value.
        value: Value,
    },
    /// A gradient asked of or with respect to a value that is not a float.
    #[error("grad: {role} {value} is {dtype}; only float values have gradients")]
    NotDifferentiable {
        /// `loss` or `wrt`.
        role: &'static str,
        /// The value.
        value: Value,
        /// Its element type.
        dtype: DType,
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
