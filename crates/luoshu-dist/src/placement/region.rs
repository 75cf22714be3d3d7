//! Boxes of a tensor's index space and the decomposition of a flat (row-major) range of a
//! box into boxes: the geometry the switch planner cuts tensors with.

use crate::{Error, Result};
use std::fmt;
use std::ops::Range;

/// Tensors of model state have at most this many dims (parameters are 1-D or 2-D); a
/// fixed bound keeps [`Region`] `Copy`, which matters for plans of millions of pieces.
pub const MAX_DIMS: usize = 4;

/// A box `start[d] .. start[d] + len[d]` over the first `ndim` dims of a tensor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    ndim: u8,
    start: [usize; MAX_DIMS],
    len: [usize; MAX_DIMS],
}

impl Region {
    /// The box `ranges[0] × ranges[1] × …`.
    pub fn new(ranges: &[Range<usize>]) -> Result<Self> {
        if ranges.len() > MAX_DIMS {
            return Err(Error::TooManyDims {
                dims: ranges.len(),
                max: MAX_DIMS,
            });
        }
        let mut region = Region {
            ndim: ranges.len() as u8,
            start: [0; MAX_DIMS],
            len: [0; MAX_DIMS],
        };
        for (d, r) in ranges.iter().enumerate() {
            region.start[d] = r.start;
            region.len[d] = r.end.saturating_sub(r.start);
        }
        Ok(region)
    }

    /// The whole of a tensor of shape `dims`.
    pub fn whole(dims: &[usize]) -> Result<Self> {
        let ranges: Vec<Range<usize>> = dims.iter().map(|&n| 0..n).collect();
        Region::new(&ranges)
    }

    /// Number of dims.
    pub fn ndim(&self) -> usize {
        self.ndim as usize
    }

    /// The range of dim `d`.
    pub fn range(&self, d: usize) -> Range<usize> {
        self.start[d]..self.start[d] + self.len[d]
    }

    /// The first index of the box in every dim.
    pub fn starts(&self) -> &[usize] {
        &self.start[..self.ndim()]
    }

    /// The box's length in every dim.
    pub fn dims(&self) -> &[usize] {
        &self.len[..self.ndim()]
    }

    /// Elements in the box.
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// Whether the box has no element.
    pub fn is_empty(&self) -> bool {
        self.numel() == 0
    }

    /// The common part of two boxes of the same tensor, or `None` when they do not meet.
    pub fn intersect(&self, other: &Region) -> Option<Region> {
        let mut out = *self;
        for d in 0..self.ndim() {
            let lo = self.start[d].max(other.start[d]);
            let hi = (self.start[d] + self.len[d]).min(other.start[d] + other.len[d]);
            if hi <= lo {
                return None;
            }
            out.start[d] = lo;
            out.len[d] = hi - lo;
        }
        Some(out)
    }

    /// Whether `other` lies inside this box.
    pub fn contains(&self, other: &Region) -> bool {
        (0..self.ndim()).all(|d| {
            self.start[d] <= other.start[d]
                && other.start[d] + other.len[d] <= self.start[d] + self.len[d]
        })
    }

    /// `other` in coordinates relative to this box's corner.
    pub fn relative(&self, other: &Region) -> Region {
        let mut out = *other;
        for d in 0..self.ndim() {
            out.start[d] -= self.start[d];
        }
        out
    }

    /// Elements `flat` of this box in row-major order, as at most `2·ndim − 1` boxes, each
    /// also a contiguous run of the row-major order (ascending, disjoint). Cutting a flat
    /// range this way is what lets ZeRO's flat shards meet tensor-parallel boxes.
    pub fn flat_pieces(&self, flat: Range<usize>) -> Vec<(usize, Region)> {
        let mut out = Vec::new();
        let (start, end) = (flat.start, flat.end.min(self.numel()));
        if start < end {
            self.split_flat(0, *self, start, end, &mut out);
        }
        out
    }

    /// Appends the pieces of flat range `start..end` of `part` (a box whose dims before
    /// `dim` have extent 1), with their offsets in the enclosing box's order.
    fn split_flat(
        &self,
        dim: usize,
        part: Region,
        start: usize,
        end: usize,
        out: &mut Vec<(usize, Region)>,
    ) {
        let inner: usize = part.len[dim + 1..self.ndim()].iter().product();
        let offset_of = |region: &Region| -> usize {
            let mut offset = 0;
            for d in 0..self.ndim() {
                offset = offset * self.len[d] + (region.start[d] - self.start[d]);
            }
            offset
        };
        let base = offset_of(&part);
        if start.is_multiple_of(inner) && end.is_multiple_of(inner) {
            let mut whole = part;
            whole.start[dim] += start / inner;
            whole.len[dim] = (end - start) / inner;
            out.push((base + start, whole));
            return;
        }
        let (first, last) = (start / inner, (end - 1) / inner);
        let row = |i: usize| {
            let mut r = part;
            r.start[dim] += i;
            r.len[dim] = 1;
            r
        };
        if first == last {
            self.split_flat(dim + 1, row(first), start % inner, end - first * inner, out);
            return;
        }
        let mut full_from = first;
        if !start.is_multiple_of(inner) {
            self.split_flat(dim + 1, row(first), start % inner, inner, out);
            full_from += 1;
        }
        let full_to = if end.is_multiple_of(inner) {
            last + 1
        } else {
            last
        };
        if full_to > full_from {
            self.split_flat(dim, part, full_from * inner, full_to * inner, out);
        }
        if !end.is_multiple_of(inner) {
            self.split_flat(dim + 1, row(last), 0, end - last * inner, out);
        }
    }
}

/// Elements of `region` inside at least one of `boxes` (boxes may overlap): the cells of
/// the grid cut by every box boundary, counted once each.
pub fn covered_numel(region: &Region, boxes: &[Region]) -> usize {
    let parts: Vec<Region> = boxes.iter().filter_map(|b| b.intersect(region)).collect();
    if parts.is_empty() {
        return 0;
    }
    let cuts: Vec<Vec<usize>> = (0..region.ndim())
        .map(|d| {
            let mut points: Vec<usize> = parts
                .iter()
                .flat_map(|p| [p.range(d).start, p.range(d).end])
                .collect();
            points.sort_unstable();
            points.dedup();
            points
        })
        .collect();
    let mut total = 0;
    let mut corner = vec![0usize; region.ndim()];
    loop {
        let ranges: Vec<Range<usize>> = (0..region.ndim())
            .map(|d| cuts[d][corner[d]]..cuts[d][corner[d] + 1])
            .collect();
        let cell = Region::new(&ranges).expect("as many dims as the region");
        if parts.iter().any(|p| p.contains(&cell)) {
            total += cell.numel();
        }
        let mut d = region.ndim();
        loop {
            if d == 0 {
                return total;
            }
            d -= 1;
            corner[d] += 1;
            if corner[d] + 1 < cuts[d].len() {
                break;
            }
            corner[d] = 0;
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<Range<usize>> = (0..self.ndim()).map(|d| self.range(d)).collect();
        write!(f, "{ranges:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Row-major offsets (relative to `outer`) of every element of `region`.
    fn offsets(outer: &Region, region: &Region) -> Vec<usize> {
        let mut out = vec![0usize];
        for d in 0..outer.ndim() {
            let r = region.range(d);
            out = out
                .iter()
                .flat_map(|&o| {
                    r.clone()
                        .map(move |i| o * outer.dims()[d] + i - outer.starts()[d])
                })
                .collect();
        }
        out
    }

    proptest! {
        #[test]
        fn flat_pieces_are_contiguous_runs_that_tile_the_range(
            dims in prop::collection::vec(1usize..5, 1..=MAX_DIMS),
            starts in prop::collection::vec(0usize..3, MAX_DIMS),
            a in 0usize..400,
            b in 0usize..400,
        ) {
            let ranges: Vec<Range<usize>> =
                dims.iter().zip(&starts).map(|(&n, &s)| s..s + n).collect();
            let outer = Region::new(&ranges).unwrap();
            let n = outer.numel();
            let (lo, hi) = (a.min(b) % (n + 1), a.max(b) % (n + 1));
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let pieces = outer.flat_pieces(lo..hi);
            prop_assert!(pieces.len() < 2 * outer.ndim());
            let mut next = lo;
            for (offset, piece) in &pieces {
                prop_assert!(outer.contains(piece));
                prop_assert_eq!(*offset, next);
                let run = offsets(&outer, piece);
                let expected: Vec<usize> = (next..next + piece.numel()).collect();
                prop_assert_eq!(run, expected);
                next += piece.numel();
            }
            prop_assert_eq!(next, hi);
        }
    }
}
