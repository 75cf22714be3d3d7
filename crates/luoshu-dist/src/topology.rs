//! Which node each rank is on and what a message costs between two ranks (α-β model per
//! link class).

use crate::{Error, Result};

/// How two ranks are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkClass {
    /// The same rank: a local copy.
    SameRank,
    /// Two ranks of one node (NVLink, shared memory).
    SameNode,
    /// Ranks of different nodes (InfiniBand, Ethernet).
    OtherNode,
}

impl LinkClass {
    /// Every link class, nearest first.
    pub const ALL: [LinkClass; 3] = [
        LinkClass::SameRank,
        LinkClass::SameNode,
        LinkClass::OtherNode,
    ];

    /// The class as reports print it (`same node`).
    pub fn name(self) -> &'static str {
        match self {
            LinkClass::SameRank => "same rank",
            LinkClass::SameNode => "same node",
            LinkClass::OtherNode => "other node",
        }
    }
}

/// Latency (seconds per message) and bandwidth (bytes per second, per rank and direction)
/// of one link class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkCost {
    /// Seconds per message, whatever its size.
    pub alpha: f64,
    /// Bytes per second, per rank and direction.
    pub bandwidth: f64,
}

impl LinkCost {
    /// Seconds to move `bytes` in one message.
    pub fn time(&self, bytes: usize) -> f64 {
        self.alpha + bytes as f64 / self.bandwidth
    }
}

/// The world: its size, ranks per node (rank `r` is on node `r / ranks_per_node`), and
/// the cost of each link class.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Ranks in the world.
    pub world: usize,
    /// Ranks per node.
    pub ranks_per_node: usize,
    /// Cost of a local copy.
    pub same_rank: LinkCost,
    /// Cost of a message within a node.
    pub same_node: LinkCost,
    /// Cost of a message between nodes.
    pub other_node: LinkCost,
}

impl Topology {
    /// A GPU cluster in the style of an 8×A800/H100 node: NVLink within a node (~5 µs,
    /// ~150 GB/s per GPU and direction) and 4×200 Gb/s InfiniBand between nodes shared by
    /// its GPUs (~10 µs, ~12.5 GB/s per GPU); a local copy at HBM speed (~1 TB/s). Round
    /// numbers for planning reports, not measurements.
    pub fn gpu_cluster(world: usize, ranks_per_node: usize) -> Result<Self> {
        Topology::new(
            world,
            ranks_per_node,
            LinkCost {
                alpha: 1e-6,
                bandwidth: 1e12,
            },
            LinkCost {
                alpha: 5e-6,
                bandwidth: 150e9,
            },
            LinkCost {
                alpha: 10e-6,
                bandwidth: 12.5e9,
            },
        )
    }

    /// A topology of `world` ranks, `ranks_per_node` per node, with the given link costs;
    /// refuses an empty world or node, a negative α or a bandwidth that is not positive.
    pub fn new(
        world: usize,
        ranks_per_node: usize,
        same_rank: LinkCost,
        same_node: LinkCost,
        other_node: LinkCost,
    ) -> Result<Self> {
        if world == 0 || ranks_per_node == 0 {
            return Err(Error::TopologySize {
                world,
                ranks_per_node,
            });
        }
        for cost in [same_rank, same_node, other_node] {
            if !(cost.alpha >= 0.0 && cost.bandwidth > 0.0) {
                return Err(Error::LinkCost {
                    cost: format!("{cost:?}"),
                });
            }
        }
        Ok(Topology {
            world,
            ranks_per_node,
            same_rank,
            same_node,
            other_node,
        })
    }

    /// The node of `rank`.
    pub fn node_of(&self, rank: usize) -> usize {
        rank / self.ranks_per_node
    }

    /// The class of the link a message from `from` to `to` takes.
    pub fn link(&self, from: usize, to: usize) -> LinkClass {
        if from == to {
            LinkClass::SameRank
        } else if self.node_of(from) == self.node_of(to) {
            LinkClass::SameNode
        } else {
            LinkClass::OtherNode
        }
    }

    /// The cost of a link class.
    pub fn cost(&self, class: LinkClass) -> LinkCost {
        match class {
            LinkClass::SameRank => self.same_rank,
            LinkClass::SameNode => self.same_node,
            LinkClass::OtherNode => self.other_node,
        }
    }
}
