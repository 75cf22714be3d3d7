//! The fallible constructors and queries of [`DState`]: checked against the state's
//! invariants, with the crate's errors.

use super::{shard_range, Axis, DState};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::ops::Range;

impl DState {
    /// A state from its axes in device order (slowest first), e.g.
    /// `[(Split(0), 2), (Duplicate, 2)]`; axes of extent 1 are dropped.
    pub fn new(axes: &[(Axis, usize)]) -> Result<Self> {
        let mut splits = BTreeMap::new();
        let (mut partial, mut duplicate) = (1, 1);
        let mut order = Vec::new();
        for &(axis, extent) in axes {
            if extent == 0 {
                return Err(Error::ZeroExtent {
                    axis: format!("{axis:?}"),
                    axes: format!("{axes:?}"),
                });
            }
            if order.contains(&axis) {
                return Err(Error::RepeatedAxis {
                    axis: format!("{axis:?}"),
                    axes: format!("{axes:?}"),
                });
            }
            if extent == 1 {
                continue;
            }
            match axis {
                Axis::Split(d) => {
                    splits.insert(d, extent);
                }
                Axis::Partial => partial = extent,
                Axis::Duplicate => duplicate = extent,
            }
            order.push(axis);
        }
        let devices = axes.iter().map(|&(_, e)| e).product();
        Ok(DState {
            devices,
            splits,
            partial,
            duplicate,
            order,
        })
    }

    /// Every device holds the whole tensor (an error for 0 devices).
    pub fn duplicated(devices: usize) -> Result<Self> {
        DState::new(&[(Axis::Duplicate, devices)])
    }

    /// Checks that the fields agree with each other: every extent is at least 1, every
    /// axis of extent > 1 appears exactly once in `order`, and `devices` is the product
    /// of the extents.
    pub fn check(&self) -> Result<()> {
        let zero = self.extents().find(|&(_, extent)| extent == 0);
        if let Some((axis, _)) = zero {
            return Err(Error::ZeroExtent {
                axis: format!("{axis:?}"),
                axes: format!("{self:?}"),
            });
        }
        for (i, axis) in self.order.iter().enumerate() {
            if self.order[..i].contains(axis) {
                return Err(Error::RepeatedAxis {
                    axis: format!("{axis:?}"),
                    axes: format!("the order {:?}", self.order),
                });
            }
        }
        let missing = self
            .extents()
            .find(|&(axis, extent)| extent > 1 && !self.order.contains(&axis));
        if let Some((axis, extent)) = missing {
            return Err(Error::AxisNotInOrder {
                state: Box::new(self.clone()),
                axis,
                extent,
            });
        }
        let product: usize = self.order.iter().map(|&a| self.extent(a)).product();
        if product != self.devices {
            return Err(Error::DeviceCount {
                state: Box::new(self.clone()),
                product,
                devices: self.devices,
            });
        }
        Ok(())
    }

    /// [`DState::check`], and that every split dim is a dim of a tensor of `full_dims`.
    ///
    /// A dim may be cut into more pieces than it has elements: the trailing pieces are
    /// then empty (see [`shard_range`]), which is valid.
    pub fn validate(&self, full_dims: &[usize]) -> Result<()> {
        self.check()?;
        if let Some(&d) = self.splits.keys().find(|&&d| d >= full_dims.len()) {
            return Err(Error::SplitBeyondRank {
                state: self.to_string(),
                dim: d,
                rank: full_dims.len(),
                dims: full_dims.to_vec(),
            });
        }
        Ok(())
    }

    /// The index of `device` along every axis of `order` (mixed radix, first axis
    /// slowest).
    pub fn coords(&self, device: usize) -> Result<Vec<usize>> {
        self.check_device(device)?;
        let mut rest = device;
        let mut coords = vec![0; self.order.len()];
        for (coord, &axis) in coords.iter_mut().zip(&self.order).rev() {
            let extent = self.extent(axis);
            *coord = rest % extent;
            rest /= extent;
        }
        Ok(coords)
    }

    /// The device at `coords` (one index per axis of `order`); inverse of
    /// [`DState::coords`].
    pub fn device_of(&self, coords: &[usize]) -> Result<usize> {
        self.check()?;
        if coords.len() != self.order.len() {
            return Err(Error::CoordinateCount {
                state: Box::new(self.clone()),
                coords: coords.to_vec(),
                axes: self.order.len(),
            });
        }
        let mut device = 0;
        for (&coord, &axis) in coords.iter().zip(&self.order) {
            let extent = self.extent(axis);
            if coord >= extent {
                return Err(Error::CoordinateOutOfRange {
                    state: Box::new(self.clone()),
                    axis,
                    coord,
                    extent,
                });
            }
            device = device * extent + coord;
        }
        Ok(device)
    }

    /// The index of `device` along `axis` (0 when the axis is absent).
    pub fn axis_index(&self, device: usize, axis: Axis) -> Result<usize> {
        let coords = self.coords(device)?;
        Ok(self
            .order
            .iter()
            .position(|&a| a == axis)
            .map_or(0, |i| coords[i]))
    }

    /// Which summand `device` holds (0 when the state is not partial).
    pub fn partial_index(&self, device: usize) -> Result<usize> {
        self.axis_index(device, Axis::Partial)
    }

    /// The box of the full tensor (one range per dim) that `device` holds.
    pub fn shard(&self, device: usize, full_dims: &[usize]) -> Result<Vec<Range<usize>>> {
        self.validate(full_dims)?;
        let coords = self.coords(device)?;
        let mut shard: Vec<Range<usize>> = full_dims.iter().map(|&n| 0..n).collect();
        for (&axis, &coord) in self.order.iter().zip(&coords) {
            if let Axis::Split(d) = axis {
                shard[d] = shard_range(full_dims[d], self.extent(axis), coord);
            }
        }
        Ok(shard)
    }

    /// The dims of the piece `device` holds.
    pub fn local_dims(&self, device: usize, full_dims: &[usize]) -> Result<Vec<usize>> {
        Ok(self
            .shard(device, full_dims)?
            .iter()
            .map(|r| r.len())
            .collect())
    }

    fn check_device(&self, device: usize) -> Result<()> {
        self.check()?;
        if device >= self.devices {
            return Err(Error::DeviceOutOfRange {
                device,
                state: Box::new(self.clone()),
                devices: self.devices,
            });
        }
        Ok(())
    }
}
