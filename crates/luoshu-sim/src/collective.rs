//! α-β time of the collectives a strategy inserts, over a group of ranks laid out on a
//! [`Topology`]: a group within one node uses the node's link, a group spanning nodes is
//! as slow as its inter-node link (every step of a ring crosses one).

use luoshu_dist::{LinkClass, LinkCost, Topology};

/// The collectives of the cost model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collective {
    /// Ring all-reduce of `n` bytes: `2(p−1)α + 2(p−1)/p · n/B`.
    AllReduce,
    /// Ring all-gather to `n` bytes (or reduce-scatter from `n`): `(p−1)α + (p−1)/p · n/B`.
    AllGather,
    /// Ring reduce-scatter from `n` bytes: the all-gather's cost.
    ReduceScatter,
    /// One message of `n` bytes: `α + n/B`.
    PointToPoint,
}

impl Collective {
    /// Seconds for a group of `p` ranks over `link`; a group of one costs nothing.
    pub fn seconds(self, p: usize, bytes: f64, link: LinkCost) -> f64 {
        if p <= 1 && self != Collective::PointToPoint {
            return 0.0;
        }
        let (steps, share) = (p as f64 - 1.0, (p as f64 - 1.0) / p as f64);
        match self {
            Collective::AllReduce => {
                2.0 * steps * link.alpha + 2.0 * share * bytes / link.bandwidth
            }
            Collective::AllGather | Collective::ReduceScatter => {
                steps * link.alpha + share * bytes / link.bandwidth
            }
            Collective::PointToPoint => link.alpha + bytes / link.bandwidth,
        }
    }
}

/// The slowest link between consecutive `ranks` of a group (and the last back to the
/// first, closing the ring).
pub fn group_link(topology: &Topology, ranks: &[usize]) -> LinkCost {
    let spans_nodes = ranks
        .iter()
        .any(|&r| topology.node_of(r) != topology.node_of(ranks[0]));
    match (ranks.len(), spans_nodes) {
        (0 | 1, _) => topology.cost(LinkClass::SameRank),
        (_, true) => topology.cost(LinkClass::OtherNode),
        (_, false) => topology.cost(LinkClass::SameNode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_by_hand() {
        let link = LinkCost {
            alpha: 1.0,
            bandwidth: 4.0,
        };
        // p = 4, n = 16: all-reduce 2·3·1 + 2·(3/4)·16/4 = 6 + 6.
        assert_eq!(Collective::AllReduce.seconds(4, 16.0, link), 12.0);
        assert_eq!(Collective::AllGather.seconds(4, 16.0, link), 6.0);
        assert_eq!(Collective::ReduceScatter.seconds(4, 16.0, link), 6.0);
        assert_eq!(Collective::PointToPoint.seconds(2, 16.0, link), 5.0);
        assert_eq!(Collective::AllReduce.seconds(1, 16.0, link), 0.0);
    }

    #[test]
    fn a_group_across_nodes_pays_the_network() {
        let topology = Topology::gpu_cluster(16, 8).unwrap();
        assert_eq!(group_link(&topology, &[0, 1, 7]), topology.same_node);
        assert_eq!(group_link(&topology, &[0, 8]), topology.other_node);
    }
}
