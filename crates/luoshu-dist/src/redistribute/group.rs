use crate::Axis;

/// The sub-groups of one axis of a device grid: devices that differ only in their index
/// along that axis form a group, ordered by that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AxisGroup {
    /// Distance between consecutive members (the product of the later axes' extents).
    pub stride: usize,
    /// Number of members.
    pub extent: usize,
}

impl AxisGroup {
    /// The groups of axis `position` (which must be below `axes.len()`) of `axes` (device
    /// order, slowest first).
    pub(crate) fn at(axes: &[(Axis, usize)], position: usize) -> AxisGroup {
        AxisGroup {
            stride: axes[position + 1..].iter().map(|&(_, e)| e).product(),
            extent: axes[position].1,
        }
    }

    /// `device`'s place in its group.
    pub fn index(&self, device: usize) -> usize {
        device / self.stride % self.extent
    }

    /// The device at place `index` of `device`'s group.
    pub fn member(&self, device: usize, index: usize) -> usize {
        device - self.index(device) * self.stride + index * self.stride
    }

    /// A number shared by exactly the members of `device`'s group (its first member), for
    /// `Communicator::split`.
    pub fn color(&self, device: usize) -> usize {
        self.member(device, 0)
    }
}
