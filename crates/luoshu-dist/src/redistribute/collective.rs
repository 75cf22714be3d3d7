//! What a [`Collective`] step does to the boxes the devices hold, and what it costs.

use super::{numel, AxisGroup, Collective};
use crate::shard_range;
use std::ops::Range;

/// The boxes every device holds after `op` over `group`, given those it holds before.
pub(super) fn holdings_after(
    op: Collective,
    group: AxisGroup,
    held: &[Vec<Range<usize>>],
) -> Vec<Vec<Range<usize>>> {
    (0..held.len())
        .map(|device| {
            let mut region = held[device].clone();
            match op {
                Collective::AllReduce => {}
                Collective::ReduceScatter { dim } => {
                    region[dim] = piece_of(&region[dim], group.extent, group.index(device));
                }
                Collective::AllGather { dim } => {
                    region[dim] = gathered(held, group, device, dim);
                }
                Collective::AllToAll {
                    split_dim,
                    concat_dim,
                } => {
                    region[split_dim] =
                        piece_of(&region[split_dim], group.extent, group.index(device));
                    region[concat_dim] = gathered(held, group, device, concat_dim);
                }
            }
            region
        })
        .collect()
}

/// Bytes every device sends for `op` over `group` (see
/// [`super::Redistribution::bytes_sent`]), given the boxes held before.
pub(super) fn bytes_sent(
    op: Collective,
    group: AxisGroup,
    held: &[Vec<Range<usize>>],
    element_bytes: usize,
) -> Vec<usize> {
    let after = holdings_after(op, group, held);
    let k = group.extent;
    (0..held.len())
        .map(|device| {
            let before = numel(&held[device]) * element_bytes;
            let after = numel(&after[device]) * element_bytes;
            match op {
                Collective::AllReduce => 2 * before * (k - 1) / k,
                Collective::ReduceScatter { .. } => before * (k - 1) / k,
                Collective::AllGather { .. } => after * (k - 1) / k,
                Collective::AllToAll { split_dim, .. } => {
                    let mut kept = held[device].clone();
                    kept[split_dim] = piece_of(&kept[split_dim], k, group.index(device));
                    before - numel(&kept) * element_bytes
                }
            }
        })
        .collect()
}

/// Piece `index` of `parts` of `range` (offsets within the full tensor).
fn piece_of(range: &Range<usize>, parts: usize, index: usize) -> Range<usize> {
    let piece = shard_range(range.len(), parts, index);
    range.start + piece.start..range.start + piece.end
}

/// The union along `dim` of the boxes of `device`'s group, which tile it in group order.
fn gathered(
    held: &[Vec<Range<usize>>],
    group: AxisGroup,
    device: usize,
    dim: usize,
) -> Range<usize> {
    let first = &held[group.member(device, 0)][dim];
    let last = &held[group.member(device, group.extent - 1)][dim];
    first.start..last.end
}
