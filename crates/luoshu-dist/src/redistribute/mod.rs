//! Redistribution: moving a tensor from one [`DState`] to another over a
//! [`luoshu_comm::Communicator`].
//!
//! Device `d` of a state is rank `d` of the communicator, so a state's `devices` must equal
//! the communicator's size. [`plan`] picks the cheapest lowering (see [`Kind`]) and
//! [`execute`] runs it on every rank, returning that rank's destination shard.

mod classify;
mod collective;
mod exchange;
mod execute;
mod group;

pub use classify::plan;
pub use execute::execute;
pub use group::AxisGroup;

use crate::DState;
use luoshu_tensor::DType;
use std::fmt;
use std::ops::Range;

/// How a redistribution is lowered, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Source and destination lay the tensor out identically.
    Nothing,
    /// Every device cuts its destination piece out of what it holds (or, for the
    /// non-zero summands of a partial destination, produces zeros); nothing is sent.
    LocalSlice,
    /// Partial → duplicate along one axis of the device grid.
    AllReduce,
    /// Partial → split along one axis of the device grid.
    ReduceScatter,
    /// Split → duplicate along one axis of the device grid.
    AllGather,
    /// Split of one dim → split of another along one axis of the device grid.
    AllToAll,
    /// The general case: point-to-point transfers of box intersections, preceded by a
    /// reduction over the partial axis when the source is partial.
    PointToPoint,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Nothing => "nothing",
            Kind::LocalSlice => "local-slice",
            Kind::AllReduce => "all-reduce",
            Kind::ReduceScatter => "reduce-scatter",
            Kind::AllGather => "all-gather",
            Kind::AllToAll => "all-to-all",
            Kind::PointToPoint => "point-to-point",
        })
    }
}

/// A collective over the sub-groups of one device-grid axis (see [`AxisGroup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collective {
    /// Sum of the group's tensors on every member.
    AllReduce,
    /// Sum of the group's tensors, cut along `dim` into one piece per member
    /// ([`crate::shard_range`] of the local length).
    ReduceScatter {
        /// The dim cut into pieces.
        dim: usize,
    },
    /// The members' pieces concatenated along `dim` in group order.
    AllGather {
        /// The dim the pieces are concatenated along.
        dim: usize,
    },
    /// Each member cuts its piece along `split_dim` into one part per member, and
    /// concatenates the parts it receives along `concat_dim` in group order.
    AllToAll {
        /// The dim each member cuts its piece along.
        split_dim: usize,
        /// The dim the received parts are concatenated along.
        concat_dim: usize,
    },
}

/// A rectangular piece of the full tensor that one device sends (or keeps) for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The piece, in coordinates of the full tensor.
    pub region: Vec<Range<usize>>,
    /// The device that provides it.
    pub owner: usize,
}

/// What one device assembles in an [`Exchange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The box of the full tensor the device ends up holding.
    pub region: Vec<Range<usize>>,
    /// How many cells tile `region` along each dim.
    pub grid: Vec<usize>,
    /// The cells in row-major order of `grid`; empty means the device holds zeros (an
    /// empty region, or a non-zero summand of a partial destination).
    pub cells: Vec<Cell>,
}

/// Point-to-point movement of boxes: every device assembles its [`Target`] from cells
/// that it or other devices hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The box of the full tensor each device holds before the exchange.
    pub held: Vec<Vec<Range<usize>>>,
    /// What each device holds after it.
    pub targets: Vec<Target>,
}

/// One stage of a [`Redistribution`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `op` within every group of one device-grid axis.
    Collective {
        /// The collective.
        op: Collective,
        /// The device-grid axis whose groups run it.
        group: AxisGroup,
    },
    /// Point-to-point transfers (none when every device keeps what it needs).
    Exchange(Exchange),
}

/// A planned redistribution, identical on every rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redistribution {
    /// The state the tensor is in.
    pub src: DState,
    /// The state it is moved to.
    pub dst: DState,
    /// Dims of the whole (logical) tensor.
    pub full_dims: Vec<usize>,
    /// Element type, which sets the byte counts.
    pub dtype: DType,
    /// The lowering chosen.
    pub kind: Kind,
    /// What [`execute`] runs, in order (none for [`Kind::Nothing`]).
    pub steps: Vec<Step>,
    /// Bytes each rank puts on the wire: exact for point-to-point transfers; for
    /// collectives of `k` members over a buffer of `b` bytes, the ring-algorithm volume
    /// (all-reduce `2b(k-1)/k`, reduce-scatter `b(k-1)/k` of the input, all-gather
    /// `b(k-1)/k` of the gathered output, all-to-all the parts for other members).
    pub bytes_sent: Vec<usize>,
}

impl Redistribution {
    /// Bytes sent by all ranks together.
    pub fn total_bytes(&self) -> usize {
        self.bytes_sent.iter().sum()
    }
}

/// Number of elements of a box.
fn numel(region: &[Range<usize>]) -> usize {
    region.iter().map(|r| r.len()).product()
}
