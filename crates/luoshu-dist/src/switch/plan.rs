//! The switch planner: which rank sends which piece of which tensor to whom, so that every
//! rank ends up holding its destination pieces.
//!
//! Per tensor, every box a destination rank needs is cut by the source boxes it meets (the
//! finest common grid of the two placements, restricted to what is needed). A cell the
//! rank already holds is copied locally; any other cell is sent by one of its holders:
//! one on the receiver's node if any, then the one with the fewest bytes assigned so far
//! across the whole plan (receive volume is fixed by the placements and links are full
//! duplex, so balancing sends is what is left to optimize), lowest rank on ties.

use super::cells::cells_of;
use super::index::SourceIndex;
use crate::placement::{covered_numel, Placement, Region};
use crate::topology::Topology;
use crate::{Error, Result};
use std::borrow::Cow;

/// How the sender of a cell is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderChoice {
    /// Same node first, then the least loaded holder (the planner).
    Balanced,
    /// The lowest-ranked holder, wherever it is (the naive baseline reports compare to).
    FirstHolder,
}

/// One cell moved (or copied) from a source holding to a destination holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Index of the tensor in the planned list.
    pub tensor: usize,
    /// The sending rank.
    pub from: usize,
    /// The receiving rank (equal to `from` for a local copy).
    pub to: usize,
    /// Index of the holding in the source and destination placements of the tensor.
    pub src_holding: usize,
    /// Index of the holding in the destination placement.
    pub dst_holding: usize,
    /// The cell, in canonical coordinates of the tensor.
    pub region: Region,
}

/// A planned switch of a set of tensors between two placements.
#[derive(Debug, Clone)]
pub struct SwitchPlan {
    /// Ranks in the world the plan runs on.
    pub world: usize,
    /// Bytes per element of every tensor moved.
    pub element_bytes: usize,
    /// Sorted by (from, to); within a pair in plan order, which is the order of the
    /// pieces inside the pair's fused message.
    pub transfers: Vec<Transfer>,
    /// Bytes each rank must receive because it does not hold them: the lower bound any
    /// plan pays, computed from each rank's own pieces, independently of the plan.
    pub lower_bound_per_rank: Vec<usize>,
}

/// Plans moving `tensors` (pairs of source and destination placements of the same
/// canonical shape) between ranks of `topology`, `element_bytes` per element.
pub fn plan_switch(
    tensors: &[(&Placement, &Placement)],
    topology: &Topology,
    element_bytes: usize,
    choice: SenderChoice,
) -> Result<SwitchPlan> {
    let world = topology.world;
    let mut sent = vec![0usize; world];
    let mut transfers = Vec::new();
    for (tensor, (from, to)) in tensors.iter().enumerate() {
        check_pair(tensor, from, to, world)?;
        let index = SourceIndex::new(from);
        for (dst_holding, holding) in to.holdings.iter().enumerate() {
            for (_, needed) in holding.piece.boxes() {
                let cells = cells_of(&index, &needed, tensor)?;
                for &rank in &holding.ranks {
                    for cell in &cells {
                        let holders = holders_of(from, &cell.holdings);
                        let sender = if holders.binary_search(&rank).is_ok() {
                            rank
                        } else {
                            let s = choose_sender(&holders, rank, topology, &sent, choice);
                            sent[s] += cell.region.numel() * element_bytes;
                            s
                        };
                        let src_holding = *cell
                            .holdings
                            .iter()
                            .find(|&&h| from.holdings[h].ranks.binary_search(&sender).is_ok())
                            .expect("the sender is one of the cell's holders");
                        transfers.push(Transfer {
                            tensor,
                            from: sender,
                            to: rank,
                            src_holding,
                            dst_holding,
                            region: cell.region,
                        });
                    }
                }
            }
        }
    }
    // Stable: keeps plan order within each pair.
    transfers.sort_by_key(|t| (t.from, t.to));
    Ok(SwitchPlan {
        world,
        element_bytes,
        transfers,
        lower_bound_per_rank: lower_bound(tensors, world, element_bytes),
    })
}

/// Bytes each rank needs in the destination and does not hold in the source.
fn lower_bound(
    tensors: &[(&Placement, &Placement)],
    world: usize,
    element_bytes: usize,
) -> Vec<usize> {
    let mut bytes = vec![0usize; world];
    for (from, to) in tensors {
        for holding in &to.holdings {
            for &rank in &holding.ranks {
                let own: Vec<Region> = from
                    .pieces_of(rank)
                    .iter()
                    .flat_map(|p| p.boxes().into_iter().map(|(_, region)| region))
                    .collect();
                for (_, needed) in holding.piece.boxes() {
                    let held = covered_numel(&needed, &own);
                    bytes[rank] += (needed.numel() - held) * element_bytes;
                }
            }
        }
    }
    bytes
}

/// The ranks holding any of `holdings` (ascending, each once).
fn holders_of<'a>(placement: &'a Placement, holdings: &[usize]) -> Cow<'a, [usize]> {
    match holdings {
        [one] => Cow::Borrowed(&placement.holdings[*one].ranks),
        many => {
            let mut ranks: Vec<usize> = many
                .iter()
                .flat_map(|&h| placement.holdings[h].ranks.iter().copied())
                .collect();
            ranks.sort_unstable();
            ranks.dedup();
            Cow::Owned(ranks)
        }
    }
}

fn check_pair(tensor: usize, from: &Placement, to: &Placement, world: usize) -> Result<()> {
    if from.dims != to.dims {
        return Err(Error::SwitchShape {
            tensor,
            source_dims: from.dims.clone(),
            destination_dims: to.dims.clone(),
        });
    }
    for placement in [from, to] {
        if let Some(h) = placement.holdings.iter().find(|h| {
            h.ranks.last().is_some_and(|&r| r >= world)
                || !placement_fits(&placement.dims, &h.piece.region)
        }) {
            return Err(Error::HoldingOutside {
                tensor,
                dims: placement.dims.clone(),
                piece: format!("{:?}", h.piece),
                ranks: h.ranks.to_vec(),
                world,
            });
        }
    }
    Ok(())
}

fn placement_fits(dims: &[usize], region: &Region) -> bool {
    region.ndim() == dims.len() && (0..dims.len()).all(|d| region.range(d).end <= dims[d])
}

fn choose_sender(
    holders: &[usize],
    receiver: usize,
    topology: &Topology,
    sent: &[usize],
    choice: SenderChoice,
) -> usize {
    match choice {
        SenderChoice::FirstHolder => holders[0],
        SenderChoice::Balanced => {
            let node = topology.node_of(receiver);
            let same_node = holders.iter().any(|&h| topology.node_of(h) == node);
            *holders
                .iter()
                .filter(|&&h| !same_node || topology.node_of(h) == node)
                .min_by_key(|&&h| (sent[h], h))
                .expect("a holding has at least one rank")
        }
    }
}
