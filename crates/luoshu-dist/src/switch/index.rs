//! A lookup of the source boxes of one tensor that meet a given box, so planning a
//! destination piece costs the pieces it meets, not every piece of the tensor.

use crate::placement::{Placement, Region};

/// One box of a source holding.
#[derive(Debug, Clone, Copy)]
pub(super) struct SourceBox {
    pub holding: usize,
    pub region: Region,
}

/// Source boxes bucketed by the intervals of dim 0 between their cut points.
pub(super) struct SourceIndex {
    boxes: Vec<SourceBox>,
    /// Sorted cut points of dim 0; interval `i` is `cuts[i]..cuts[i + 1]`.
    cuts: Vec<usize>,
    /// Boxes covering each interval.
    covering: Vec<Vec<usize>>,
}

impl SourceIndex {
    pub fn new(placement: &Placement) -> Self {
        let boxes: Vec<SourceBox> = placement
            .holdings
            .iter()
            .enumerate()
            .flat_map(|(holding, h)| {
                h.piece
                    .boxes()
                    .into_iter()
                    .map(move |(_, region)| SourceBox { holding, region })
            })
            .collect();
        if placement.dims.is_empty() {
            let all = (0..boxes.len()).collect();
            return SourceIndex {
                boxes,
                cuts: vec![0, 1],
                covering: vec![all],
            };
        }
        let mut cuts: Vec<usize> = boxes
            .iter()
            .flat_map(|b| [b.region.range(0).start, b.region.range(0).end])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut covering = vec![Vec::new(); cuts.len().saturating_sub(1)];
        for (i, b) in boxes.iter().enumerate() {
            let r = b.region.range(0);
            let first = cuts.partition_point(|&c| c < r.start);
            let last = cuts.partition_point(|&c| c < r.end);
            for slot in &mut covering[first..last] {
                slot.push(i);
            }
        }
        SourceIndex {
            boxes,
            cuts,
            covering,
        }
    }

    /// Every source box meeting `region` with the common part, each box once, in index
    /// order (deterministic).
    pub fn meeting(&self, region: &Region) -> Vec<(SourceBox, Region)> {
        let (lo, hi) = if region.ndim() == 0 {
            (0, self.covering.len())
        } else {
            let r = region.range(0);
            let lo = self
                .cuts
                .partition_point(|&c| c <= r.start)
                .saturating_sub(1);
            let hi = self
                .cuts
                .partition_point(|&c| c < r.end)
                .min(self.covering.len());
            (lo, hi)
        };
        let mut seen: Vec<usize> = self.covering[lo.min(hi)..hi].concat();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter()
            .filter_map(|i| {
                let b = self.boxes[i];
                b.region.intersect(region).map(|common| (b, common))
            })
            .collect()
    }
}
