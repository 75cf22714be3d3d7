//! Distributed states (after Hetu's DStates): how a logical tensor is laid out over the
//! devices of a group. The fallible constructors and queries are in `checked.rs`, below
//! this file, so that the crate's errors can name states without a module cycle.

mod checked;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// One axis of the device arrangement of a [`DState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    /// Tensor dim `d` is cut into `splits[d]` contiguous pieces.
    Split(usize),
    /// `partial` devices each hold a summand; the tensor is their sum.
    Partial,
    /// `duplicate` devices hold identical copies.
    Duplicate,
}

/// The distributed state of a tensor over `devices` devices.
///
/// The devices are arranged as a mixed-radix grid whose axes are `order` (the first axis
/// varies slowest), with extent `splits[d]` for `Split(d)`, `partial` for `Partial` and
/// `duplicate` for `Duplicate`; `devices` is the product of the extents. Axes of extent 1
/// may be omitted from `order`. A split of a dim of length `n` into `k` pieces is uneven
/// when `k` does not divide `n`: piece `i` has `n / k + 1` elements for `i < n % k` and
/// `n / k` after (see [`shard_range`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DState {
    /// Devices the tensor lives on: the product of every axis's extent.
    pub devices: usize,
    /// Tensor dim → number of pieces (only entries > 1).
    pub splits: BTreeMap<usize, usize>,
    /// Partial values summed to the whole (1: not partial).
    pub partial: usize,
    /// Replicas of each piece (1: not duplicated).
    pub duplicate: usize,
    /// The device axes, slowest first: how a device index maps to its coordinates.
    pub order: Vec<Axis>,
}

impl DState {
    /// Extent of `axis` (1 when absent).
    pub fn extent(&self, axis: Axis) -> usize {
        match axis {
            Axis::Split(d) => self.splits.get(&d).copied().unwrap_or(1),
            Axis::Partial => self.partial,
            Axis::Duplicate => self.duplicate,
        }
    }

    /// The axes of extent > 1 with their extents, in device order (slowest first).
    pub fn axes(&self) -> Vec<(Axis, usize)> {
        self.order
            .iter()
            .map(|&axis| (axis, self.extent(axis)))
            .filter(|&(_, extent)| extent > 1)
            .collect()
    }

    /// Every axis with its extent, including those of extent 1 (or 0, in a broken state).
    fn extents(&self) -> impl Iterator<Item = (Axis, usize)> + '_ {
        self.splits
            .iter()
            .map(|(&d, &k)| (Axis::Split(d), k))
            .chain([
                (Axis::Partial, self.partial),
                (Axis::Duplicate, self.duplicate),
            ])
    }
}

/// Compact notation: the axes in device order, `S<dim>:<pieces>` for splits, `P<n>` for
/// partial, `D<n>` for duplicate, e.g. `S0:2,P2`; a single device is `D1`.
impl fmt::Display for DState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.order.is_empty() {
            return write!(f, "D{}", self.duplicate);
        }
        for (i, &axis) in self.order.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let extent = self.extent(axis);
            match axis {
                Axis::Split(d) => write!(f, "S{d}:{extent}")?,
                Axis::Partial => write!(f, "P{extent}")?,
                Axis::Duplicate => write!(f, "D{extent}")?,
            }
        }
        Ok(())
    }
}

/// Elements `start..end` of piece `index` when a dim of length `len` is cut into `parts`
/// contiguous pieces whose sizes differ by at most one (the larger ones first).
pub fn shard_range(len: usize, parts: usize, index: usize) -> Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    let size = base + usize::from(index < extra);
    start..start + size
}
