//! Placements: for one tensor of the model state, what each rank of the world holds. A
//! rank holds a box of the canonical tensor (a distributed state over a device group: a
//! tensor-parallel slice on one pipeline stage, replicated over data parallelism), a flat
//! row-major range of such a box (ZeRO-1 shards of the flattened local parameters), or
//! nothing. A tensor held by several ranks (replicas, a tied embedding on the first and
//! last stage) lists every holder.

mod region;

pub use region::{covered_numel, Region, MAX_DIMS};

use crate::{shard_range, Axis, DState, Error, Result};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;
use std::ops::Range;

/// The part of a tensor one holding covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Piece {
    /// A box of the canonical tensor.
    pub region: Region,
    /// When set, only this range of the box's elements in row-major order (a rank stores
    /// it as a 1-D tensor); otherwise the whole box (stored with the box's dims).
    pub flat: Option<(usize, usize)>,
}

impl Piece {
    /// The whole of the box `region`.
    pub fn whole(region: Region) -> Self {
        Piece { region, flat: None }
    }

    /// Elements the piece holds.
    pub fn numel(&self) -> usize {
        match self.flat {
            Some((start, end)) => end.min(self.region.numel()).saturating_sub(start),
            None => self.region.numel(),
        }
    }

    /// The dims of the tensor a rank stores for this piece.
    pub fn stored_dims(&self) -> Vec<usize> {
        match self.flat {
            Some(_) => vec![self.numel()],
            None => self.region.dims().to_vec(),
        }
    }

    /// The piece as boxes of the canonical tensor, each with its offset in the stored
    /// tensor's row-major order (ascending, disjoint, contiguous in storage).
    pub fn boxes(&self) -> Vec<(usize, Region)> {
        match self.flat {
            None if self.region.is_empty() => Vec::new(),
            None => vec![(0, self.region)],
            Some((start, end)) => self
                .region
                .flat_pieces(start..end)
                .into_iter()
                .map(|(offset, region)| (offset - start, region))
                .collect(),
        }
    }

    /// The view of `region` (canonical coordinates, inside one of [`Self::boxes`]) in
    /// `stored`, the tensor a rank keeps for this piece.
    pub fn view(&self, stored: &Tensor, region: &Region) -> Result<Tensor> {
        let (offset, outer) = self
            .boxes()
            .into_iter()
            .find(|(_, b)| b.contains(region))
            .ok_or_else(|| {
                Error::Redistribution(format!("{region:?} is not inside one box of {self:?}"))
            })?;
        let mut view = stored
            .reshape(vec![stored.numel()])?
            .narrow(0, offset, outer.numel())?
            .reshape(outer.dims().to_vec())?;
        let local = outer.relative(region);
        for d in 0..local.ndim() {
            view = view.narrow(d, local.starts()[d], local.dims()[d])?;
        }
        Ok(view)
    }

    /// This piece of `canonical` (the whole tensor), copied into new storage with
    /// [`Self::stored_dims`].
    pub fn cut(&self, ops: &Ops, canonical: &Tensor) -> Result<Tensor> {
        let stored = ops.alloc(canonical.dtype(), &self.stored_dims())?;
        for (_, region) in self.boxes() {
            let mut source = canonical.clone();
            for d in 0..region.ndim() {
                source = source.narrow(d, region.starts()[d], region.dims()[d])?;
            }
            ops.copy_into(&source, &self.view(&stored, &region)?)?;
        }
        Ok(stored)
    }
}

/// One piece and the ranks holding it, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holding {
    /// What is held.
    pub piece: Piece,
    /// The ranks holding a copy of it, ascending.
    pub ranks: Vec<usize>,
}

/// What every rank of the world holds of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The canonical (unsharded) shape.
    pub dims: Vec<usize>,
    /// The pieces and their holders.
    pub holdings: Vec<Holding>,
}

impl Placement {
    /// No rank holds anything.
    pub fn nothing(dims: &[usize]) -> Self {
        Placement {
            dims: dims.to_vec(),
            holdings: Vec::new(),
        }
    }

    /// The tensor laid out in `state` over the ranks `group` (device `i` of the state is
    /// rank `group[i]`). Partial states are not placements: their summands are not pieces
    /// of the tensor.
    pub fn from_state(dims: &[usize], state: &DState, group: &[usize]) -> Result<Self> {
        state.check()?;
        if state.partial > 1 {
            return Err(Error::PartialPlacement {
                state: Box::new(state.clone()),
            });
        }
        if group.len() != state.devices {
            return Err(Error::GroupSize {
                state: Box::new(state.clone()),
                needs: state.devices,
                group: group.len(),
            });
        }
        if let Some((&d, _)) = state.splits.iter().find(|(&d, _)| d >= dims.len()) {
            return Err(Error::SplitBeyondRank {
                state: state.to_string(),
                dim: d,
                rank: dims.len(),
                dims: dims.to_vec(),
            });
        }
        let mut placement = Placement::nothing(dims);
        let axes = state.axes();
        for (device, &rank) in group.iter().enumerate() {
            // Mixed-radix digits of the device index, slowest axis first.
            let mut rest = device;
            let mut digits = vec![0; axes.len()];
            for (i, &(_, extent)) in axes.iter().enumerate().rev() {
                digits[i] = rest % extent;
                rest /= extent;
            }
            let mut ranges: Vec<Range<usize>> = dims.iter().map(|&n| 0..n).collect();
            for (&(axis, extent), &digit) in axes.iter().zip(&digits) {
                if let Axis::Split(d) = axis {
                    let r = shard_range(dims[d], extent, digit);
                    ranges[d] = r;
                }
            }
            placement.add(Piece::whole(Region::new(&ranges)?), rank);
        }
        Ok(placement)
    }

    /// Records that `rank` holds `piece` (merging with an identical piece's holders).
    pub fn add(&mut self, piece: Piece, rank: usize) {
        if piece.numel() == 0 {
            return;
        }
        match self.holdings.iter_mut().find(|h| h.piece == piece) {
            Some(h) => {
                if let Err(at) = h.ranks.binary_search(&rank) {
                    h.ranks.insert(at, rank);
                }
            }
            None => self.holdings.push(Holding {
                piece,
                ranks: vec![rank],
            }),
        }
    }

    /// The pieces `rank` holds, in holding order (the order of its stored tensors).
    pub fn pieces_of(&self, rank: usize) -> Vec<Piece> {
        self.holdings
            .iter()
            .filter(|h| h.ranks.binary_search(&rank).is_ok())
            .map(|h| h.piece)
            .collect()
    }

    /// Elements of the canonical tensor.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The tensors `rank` stores for this placement, cut from `canonical` (in
    /// [`Self::pieces_of`] order).
    pub fn cut_for(&self, ops: &Ops, rank: usize, canonical: &Tensor) -> Result<Vec<Tensor>> {
        if canonical.dims() != self.dims.as_slice() {
            return Err(Error::Redistribution(format!(
                "a tensor of shape {:?} cut for a placement of shape {:?}",
                canonical.dims(),
                self.dims
            )));
        }
        self.pieces_of(rank)
            .iter()
            .map(|piece| piece.cut(ops, canonical))
            .collect()
    }

    /// How many times each element of the tensor is held, counted by brute force over
    /// the row-major order (for tests and small tensors).
    pub fn coverage(&self) -> Vec<usize> {
        let mut counts = vec![0; self.numel()];
        for h in &self.holdings {
            for (_, region) in h.piece.boxes() {
                for_each_offset(&self.dims, &region, |o| counts[o] += h.ranks.len());
            }
        }
        counts
    }
}

/// Calls `f` with the row-major offset (in a tensor of shape `dims`) of every element of
/// `region`.
pub fn for_each_offset(dims: &[usize], region: &Region, mut f: impl FnMut(usize)) {
    fn walk(dims: &[usize], region: &Region, d: usize, base: usize, f: &mut dyn FnMut(usize)) {
        if d == dims.len() {
            f(base);
            return;
        }
        for i in region.range(d) {
            walk(dims, region, d + 1, base * dims[d] + i, f);
        }
    }
    if !region.is_empty() {
        walk(dims, region, 0, 0, &mut f);
    }
}
