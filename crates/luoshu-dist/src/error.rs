/// Errors of distributed states, redistribution and strategies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A state axis of extent 0: no devices, no pieces of a split, no partial values.
    #[error("invalid distributed state: axis {axis} has extent 0 in {axes}")]
    ZeroExtent {
        /// The axis of extent 0 (`Duplicate`, `Split(1)`, ...).
        axis: String,
        /// Every axis given, with its extent.
        axes: String,
    },
    /// A state that splits a dimension its tensor does not have.
    #[error(
        "invalid distributed state: {state} splits dim {dim} of a rank-{rank} tensor {dims:?}"
    )]
    SplitBeyondRank {
        /// The state, as displayed (`S2:2`).
        state: String,
        /// The split dimension.
        dim: usize,
        /// The tensor's rank.
        rank: usize,
        /// The tensor's dimensions.
        dims: Vec<usize>,
    },
    /// Any other inconsistent state or placement (repeated axes, device counts, partial
    /// states where whole values are needed, ...).
    #[error("invalid distributed state: {0}")]
    InvalidState(String),
    /// A tensor cannot be moved between the two states or placements.
    #[error("cannot redistribute: {0}")]
    Redistribution(String),
    /// The op's deduction rule rejects its inputs' states (states that do not fit together,
    /// a split the op does not support, device counts that differ).
    #[error("no deduction rule: {op}: {why}; inputs [{inputs}]")]
    Deduction {
        /// The op's name.
        op: String,
        /// What the rule rejected.
        why: String,
        /// The inputs as `type @ state`, comma-separated.
        inputs: String,
    },
    /// An op rejects its inputs' states, and converting them to duplicated states does not
    /// help either.
    #[error("{first}; and no conversion of the inputs to duplicated states helps")]
    NoConversion {
        /// Why the states the inputs were in were rejected.
        first: Box<Error>,
    },
    /// The local graph of a rank disagrees with the states deduced for a node (a bug in a
    /// deduction rule or in localization).
    #[error("no deduction rule: {0}")]
    LocalMismatch(String),
    /// A strategy name that does not parse.
    #[error(
        "invalid strategy: `{text}`: {why} (expected e.g. `dp2`, `tp2`, `dp2tp2`, `dp2pp2`, \
         `dp4zero1`, `dp2cp2` or `single`)"
    )]
    StrategySyntax {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// A strategy run on a communicator of another size.
    #[error(
        "invalid strategy: strategy {strategy} needs {needs} ranks, the communicator has {has}"
    )]
    Devices {
        /// The strategy, as written (`dp2tp2`).
        strategy: String,
        /// Ranks it needs.
        needs: usize,
        /// Ranks the communicator has.
        has: usize,
    },
    /// Any other strategy, pipeline schedule or topology that cannot work.
    #[error("invalid strategy: {0}")]
    Strategy(String),
    /// A collective failed.
    #[error(transparent)]
    Comm(#[from] luoshu_comm::Error),
    /// A tensor could not be built or viewed.
    #[error(transparent)]
    Tensor(#[from] luoshu_tensor::Error),
    /// A kernel failed.
    #[error(transparent)]
    Backend(#[from] luoshu_backend::Error),
    /// A graph could not be built, compiled or run.
    #[error(transparent)]
    Graph(#[from] luoshu_graph::Error),
}

/// The distribution layer's result.
pub type Result<T> = std::result::Result<T, Error>;
