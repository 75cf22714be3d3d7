use crate::redistribute::Collective;
use crate::{Axis, DState, Kind, PipelineAction};
use luoshu_tensor::DType;

/// What is wrong with a pipeline stage's order of micro-batch steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderProblem {
    /// A micro-batch index beyond the number of micro-batches.
    #[error("micro-batch {micro_batch} is not below {micro_batches}")]
    OutOfRange {
        /// The index.
        micro_batch: usize,
        /// Micro-batches in the schedule.
        micro_batches: usize,
    },
    /// A micro-batch run forward twice.
    #[error("forward {0} twice")]
    ForwardTwice(usize),
    /// A micro-batch run backward before forward.
    #[error("backward {0} before its forward")]
    BackwardBeforeForward(usize),
    /// A micro-batch run backward twice.
    #[error("backward {0} twice")]
    BackwardTwice(usize),
    /// A micro-batch not run both ways.
    #[error("micro-batch {0} is not run forward and backward")]
    Incomplete(usize),
}

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
    /// An axis given twice.
    #[error("invalid distributed state: axis {axis} appears twice in {axes}")]
    RepeatedAxis {
        /// The repeated axis (`Split(0)`, `Partial`, ...).
        axis: String,
        /// Every axis given.
        axes: String,
    },
    /// A state whose axis of extent > 1 is missing from its device order.
    #[error("invalid distributed state: {state:?}: axis {axis:?} of extent {extent} is not in the order")]
    AxisNotInOrder {
        /// The state.
        state: Box<DState>,
        /// The missing axis.
        axis: Axis,
        /// Its extent.
        extent: usize,
    },
    /// A state whose extents do not multiply to its device count.
    #[error("invalid distributed state: {state:?}: the extents multiply to {product}, not to the {devices} devices")]
    DeviceCount {
        /// The state.
        state: Box<DState>,
        /// The product of its extents.
        product: usize,
        /// Its device count.
        devices: usize,
    },
    /// Device coordinates of another length than the state has axes.
    #[error("invalid distributed state: {state}: {} coordinates {coords:?} for {axes} axes", .coords.len())]
    CoordinateCount {
        /// The state.
        state: Box<DState>,
        /// The coordinates given.
        coords: Vec<usize>,
        /// Its number of axes.
        axes: usize,
    },
    /// A device coordinate beyond its axis.
    #[error("invalid distributed state: {state}: coordinate {coord} of axis {axis:?} is not below its extent {extent}")]
    CoordinateOutOfRange {
        /// The state.
        state: Box<DState>,
        /// The axis.
        axis: Axis,
        /// The coordinate given.
        coord: usize,
        /// The axis's extent.
        extent: usize,
    },
    /// A device the state does not have.
    #[error("invalid distributed state: device {device} of {state}, which has {devices} devices")]
    DeviceOutOfRange {
        /// The device asked for.
        device: usize,
        /// The state.
        state: Box<DState>,
        /// Its device count.
        devices: usize,
    },
    /// A rank outside the group a graph is distributed over.
    #[error("invalid distributed state: rank {rank} of a group of {devices} devices")]
    RankOutOfGroup {
        /// The rank asked for.
        rank: usize,
        /// The group's size.
        devices: usize,
    },
    /// A tensor of more dims than placements support.
    #[error("invalid distributed state: a placed tensor has at most {max} dims, got {dims}")]
    TooManyDims {
        /// The tensor's number of dims.
        dims: usize,
        /// The most a placement supports.
        max: usize,
    },
    /// A partial state where whole values are needed (placements).
    #[error("invalid distributed state: {state:?} is partial: reduce it before placing it")]
    PartialPlacement {
        /// The state.
        state: Box<DState>,
    },
    /// A state placed over a group of another size.
    #[error(
        "invalid distributed state: {state:?} needs {needs} devices, the group has {group} ranks"
    )]
    GroupSize {
        /// The state.
        state: Box<DState>,
        /// Its device count.
        needs: usize,
        /// The group's size.
        group: usize,
    },
    /// A state given for a name that is not a leaf of the graph.
    #[error("invalid distributed state: a state is given for `{name}`, which is no leaf")]
    NotALeaf {
        /// The name given.
        name: String,
    },
    /// A leaf's state of another device count than the group.
    #[error("invalid distributed state: leaf `{name}` is in state {state} of {devices} devices, not {expected}")]
    LeafDevices {
        /// The leaf.
        name: String,
        /// Its state.
        state: Box<DState>,
        /// The state's device count.
        devices: usize,
        /// The group's size.
        expected: usize,
    },
    /// A leaf's state that splits a dim the leaf does not have.
    #[error("invalid distributed state: leaf `{name}` of rank {rank} is in state {state}, which splits dim {dim}")]
    LeafSplitBeyondRank {
        /// The leaf.
        name: String,
        /// The leaf's rank (number of dims).
        rank: usize,
        /// Its state.
        state: Box<DState>,
        /// The split dim.
        dim: usize,
    },
    /// A state that splits a dim a graph value's type does not have.
    #[error("invalid distributed state: {state} splits dim {dim} of a tensor of type {full}")]
    SplitBeyondType {
        /// The state.
        state: Box<DState>,
        /// The split dim.
        dim: usize,
        /// The value's type, as displayed.
        full: String,
    },
    /// A symbolic dim split into pieces that do not divide it exactly.
    #[error("invalid distributed state: {state} splits the symbolic dim {dim} ({size}) of {full} into {parts} pieces, which do not divide it exactly: bind it to a fixed size first")]
    UnevenSymbolicSplit {
        /// The state.
        state: Box<DState>,
        /// The split dim.
        dim: usize,
        /// The dim's symbolic size, as displayed.
        size: String,
        /// The value's type, as displayed.
        full: String,
        /// Pieces it is split into.
        parts: usize,
    },
    /// A redistribution between states of different device counts.
    #[error("cannot redistribute: {src} has {src_devices} devices but {dst} has {dst_devices}")]
    DeviceMismatch {
        /// The source state.
        src: Box<DState>,
        /// Its device count.
        src_devices: usize,
        /// The destination state.
        dst: Box<DState>,
        /// Its device count.
        dst_devices: usize,
    },
    /// A redistribution run on a communicator of another size than its states.
    #[error("cannot redistribute: {src} → {dst}: the states have {devices} devices but the {backend} communicator has {ranks} ranks")]
    CommunicatorSize {
        /// The source state.
        src: Box<DState>,
        /// The destination state.
        dst: Box<DState>,
        /// The states' device count.
        devices: usize,
        /// The communicator's backend.
        backend: String,
        /// The communicator's size.
        ranks: usize,
    },
    /// A rank's local piece of another shape or dtype than the plan expects.
    #[error("cannot redistribute: {src} → {dst} of {full_dims:?} {dtype}: rank {rank} holds a {dims:?} {held_dtype} tensor, expected {expected:?} {dtype}")]
    LocalPiece {
        /// The source state.
        src: Box<DState>,
        /// The destination state.
        dst: Box<DState>,
        /// The full tensor's dims.
        full_dims: Vec<usize>,
        /// The plan's dtype.
        dtype: DType,
        /// The rank.
        rank: usize,
        /// The dims of the piece it holds.
        dims: Vec<usize>,
        /// The dtype of the piece it holds.
        held_dtype: DType,
        /// The dims the plan expects of it.
        expected: Vec<usize>,
    },
    /// A conversion of a graph value that needs an exchange graphs cannot express yet.
    #[error("cannot redistribute: {value} from {src} to {dst} needs {kind}, which has no graph op yet (graphs can only slice locally, all-reduce, reduce-scatter and all-gather)")]
    NoGraphOp {
        /// The value's type, as displayed.
        value: String,
        /// The source state.
        src: Box<DState>,
        /// The destination state.
        dst: Box<DState>,
        /// The lowering it needs.
        kind: Kind,
    },
    /// A graph collective whose pieces would differ in length.
    #[error("cannot redistribute: {op:?} of {src} over {parts} ranks needs dim {dim} of {dims:?} to split evenly (a graph collective's pieces all have one length)")]
    UnevenCollective {
        /// The collective.
        op: Collective,
        /// The source state.
        src: Box<DState>,
        /// Ranks of its groups.
        parts: usize,
        /// The dim it cuts.
        dim: usize,
        /// The tensor's dims.
        dims: Vec<usize>,
    },
    /// A collective of a redistribution that graphs cannot express yet.
    #[error("cannot redistribute: {op:?} of {src} has no graph op yet")]
    CollectiveNotLowered {
        /// The collective.
        op: Collective,
        /// The source state.
        src: Box<DState>,
    },
    /// A conversion to a partial state (zeros on the other summands) in a graph.
    #[error("cannot redistribute: {src} to {dst}: making a tensor partial (zeros on the other summands) is not lowered")]
    PartialNotLowered {
        /// The source state.
        src: Box<DState>,
        /// The destination state.
        dst: Box<DState>,
    },
    /// A graph to distribute that already contains a collective.
    #[error("cannot redistribute: {node} {op} is a collective: distribute expects a single-device graph")]
    CollectiveInGraph {
        /// The node, as displayed.
        node: String,
        /// Its op's name.
        op: String,
    },
    /// A node using a value not computed before it.
    #[error("cannot redistribute: {node} uses {value}, which is not computed before it")]
    UseBeforeDefinition {
        /// The node, as displayed.
        node: String,
        /// The value, as displayed.
        value: String,
    },
    /// A graph output that is not a value of the graph.
    #[error("cannot redistribute: graph output {value} is not a value of the graph")]
    UnknownOutput {
        /// The value, as displayed.
        value: String,
    },
    /// A tensor of different shapes in a switch's source and destination.
    #[error("cannot redistribute: tensor {tensor} has shape {source_dims:?} in the source and {destination_dims:?} in the destination")]
    SwitchShape {
        /// The tensor's index.
        tensor: usize,
        /// Its dims in the source.
        source_dims: Vec<usize>,
        /// Its dims in the destination.
        destination_dims: Vec<usize>,
    },
    /// A placement holding a piece outside its tensor or on ranks outside the world.
    #[error("cannot redistribute: tensor {tensor} of shape {dims:?}: holding {piece} on ranks {ranks:?} is outside the tensor or the world of {world} ranks")]
    HoldingOutside {
        /// The tensor's index.
        tensor: usize,
        /// Its dims.
        dims: Vec<usize>,
        /// The piece held, as displayed.
        piece: String,
        /// The ranks holding it.
        ranks: Vec<usize>,
        /// Ranks in the world.
        world: usize,
    },
    /// A plan or placement that contradicts itself or the data it is run on (pieces no
    /// rank holds, messages of the wrong size): a bug in a planner rather than in the
    /// caller's input, described as text.
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
    /// A pipeline simulation of no stages.
    #[error("invalid strategy: pipeline simulation of 0 stages")]
    NoPipelineStages,
    /// A pipeline step of negative or non-finite cost.
    #[error("invalid strategy: pipeline step {action:?} of stage {stage} costs {cost}; costs must be finite and non-negative")]
    PipelineStepCost {
        /// The step.
        action: PipelineAction,
        /// Its stage.
        stage: usize,
        /// Its cost.
        cost: f64,
    },
    /// A pipeline schedule whose stages wait for each other forever.
    #[error("invalid strategy: pipeline schedule deadlocks: {}", .waiting.join(", "))]
    PipelineDeadlock {
        /// What each blocked stage waits for, as text (`stage 1 waits at Backward(0)`).
        waiting: Vec<String>,
    },
    /// A stage's order that does not run each micro-batch forward once, then backward once.
    #[error("invalid strategy: pipeline order of stage {stage} {order:?}: {problem}")]
    PipelineOrder {
        /// The stage.
        stage: usize,
        /// Its order.
        order: Vec<PipelineAction>,
        /// What is wrong with it.
        problem: OrderProblem,
    },
    /// Layers that cannot be spread over the stages.
    #[error("invalid strategy: cannot balance {layers} layers over {stages} pipeline stages: need 1 to {layers} stages")]
    StageCount {
        /// Layers to balance.
        layers: usize,
        /// Stages asked for.
        stages: usize,
    },
    /// A layer of negative or non-finite cost.
    #[error("invalid strategy: layer {layer} has cost {cost}; layer costs must be finite and non-negative")]
    LayerCost {
        /// The layer.
        layer: usize,
        /// Its cost.
        cost: f64,
    },
    /// A topology of no ranks or no ranks per node.
    #[error("invalid strategy: a topology needs at least one rank and one rank per node, got {world} ranks with {ranks_per_node} per node")]
    TopologySize {
        /// Ranks in the world.
        world: usize,
        /// Ranks per node.
        ranks_per_node: usize,
    },
    /// A link of negative latency or non-positive bandwidth.
    #[error("invalid strategy: link cost {cost} needs α ≥ 0 and a positive bandwidth")]
    LinkCost {
        /// The link's cost, as displayed.
        cost: String,
    },
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
