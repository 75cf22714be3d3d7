//! [`plan`]: choosing the cheapest lowering of a redistribution.

use super::collective::{bytes_sent, holdings_after};
use super::exchange::plan_exchange;
use super::{numel, AxisGroup, Collective, Exchange, Kind, Redistribution, Step, Target};
use crate::{Axis, DState, Error, Result};
use luoshu_tensor::DType;
use std::ops::Range;

/// Plans moving a tensor of `full_dims` and `dtype` from `src` to `dst` (same number of
/// devices), choosing the first lowering that applies:
///
/// 1. [`Kind::Nothing`]: every device holds the same box and summand in both states.
/// 2. [`Kind::LocalSlice`]: every destination box lies inside the device's source box, and
///    the source is not partial or has the same partial axis.
/// 3. One collective when the two states have the same device-grid axes except at one
///    position, over the groups of that axis: partial → duplicate [`Kind::AllReduce`],
///    partial → split [`Kind::ReduceScatter`], split → duplicate [`Kind::AllGather`],
///    split of one dim → split of another [`Kind::AllToAll`].
/// 4. [`Kind::PointToPoint`]: a partial source is first reduced over its partial axis
///    (all-reduce, or reduce-scatter along the longest unsplit dim, whichever sends
///    fewer bytes overall); then every destination device assembles its box from the
///    cells other devices hold. A partial destination gets the data on its summand 0 and
///    zeros on the others.
pub fn plan(
    src: &DState,
    dst: &DState,
    full_dims: &[usize],
    dtype: DType,
) -> Result<Redistribution> {
    src.validate(full_dims)?;
    dst.validate(full_dims)?;
    if src.devices != dst.devices {
        return Err(Error::DeviceMismatch {
            src: Box::new(src.clone()),
            src_devices: src.devices,
            dst: Box::new(dst.clone()),
            dst_devices: dst.devices,
        });
    }
    let planner = Planner {
        src,
        dst,
        full_dims,
        element_bytes: dtype.size_in_bytes(),
        src_boxes: boxes(src, full_dims)?,
        dst_boxes: boxes(dst, full_dims)?,
    };
    let (kind, steps, bytes_sent) = planner.lower()?;
    Ok(Redistribution {
        src: src.clone(),
        dst: dst.clone(),
        full_dims: full_dims.to_vec(),
        dtype,
        kind,
        steps,
        bytes_sent,
    })
}

type Boxes = Vec<Vec<Range<usize>>>;
type Lowering = (Kind, Vec<Step>, Vec<usize>);

struct Planner<'a> {
    src: &'a DState,
    dst: &'a DState,
    full_dims: &'a [usize],
    element_bytes: usize,
    src_boxes: Boxes,
    dst_boxes: Boxes,
}

impl Planner<'_> {
    fn lower(&self) -> Result<Lowering> {
        let devices = self.src.devices;
        if self.same_summands()? && self.src_boxes == self.dst_boxes {
            return Ok((Kind::Nothing, Vec::new(), vec![0; devices]));
        }
        if self.slices_locally()? {
            return Ok((
                Kind::LocalSlice,
                vec![self.local_slice()?],
                vec![0; devices],
            ));
        }
        if let Some(lowering) = self.one_collective() {
            return Ok(lowering);
        }
        self.point_to_point()
    }

    /// Every device holds the same summand in both states.
    fn same_summands(&self) -> Result<bool> {
        if self.src.partial != self.dst.partial {
            return Ok(false);
        }
        for device in 0..self.src.devices {
            if self.src.partial_index(device)? != self.dst.partial_index(device)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn slices_locally(&self) -> Result<bool> {
        let inside = self.src_boxes.iter().zip(&self.dst_boxes).all(|(s, d)| {
            numel(d) == 0
                || s.iter()
                    .zip(d)
                    .all(|(s, d)| s.start <= d.start && d.end <= s.end)
        });
        Ok(inside && (self.src.partial == 1 || self.same_summands()?))
    }

    /// Each device cuts its destination box out of its source box. A non-partial source
    /// going partial keeps the data on summand 0 and zeros elsewhere.
    fn local_slice(&self) -> Result<Step> {
        let mut targets = Vec::with_capacity(self.src.devices);
        for (device, region) in self.dst_boxes.iter().enumerate() {
            let zero = self.src.partial == 1 && self.dst.partial_index(device)? != 0;
            targets.push(if zero {
                Target::zeros(region.clone())
            } else {
                Target::kept(region.clone(), device)
            });
        }
        Ok(Step::Exchange(Exchange {
            held: self.src_boxes.clone(),
            targets,
        }))
    }

    /// One collective when the states differ in exactly one device-grid axis.
    fn one_collective(&self) -> Option<Lowering> {
        let (src_axes, dst_axes) = (self.src.axes(), self.dst.axes());
        let same_grid = src_axes.len() == dst_axes.len()
            && src_axes.iter().zip(&dst_axes).all(|(s, d)| s.1 == d.1);
        if !same_grid {
            return None;
        }
        let mut differing = (0..src_axes.len()).filter(|&i| src_axes[i].0 != dst_axes[i].0);
        let position = differing.next()?;
        if differing.next().is_some() {
            return None;
        }
        let (kind, op) = match (src_axes[position].0, dst_axes[position].0) {
            (Axis::Partial, Axis::Duplicate) => (Kind::AllReduce, Collective::AllReduce),
            (Axis::Partial, Axis::Split(dim)) => {
                (Kind::ReduceScatter, Collective::ReduceScatter { dim })
            }
            (Axis::Split(dim), Axis::Duplicate) => (Kind::AllGather, Collective::AllGather { dim }),
            (Axis::Split(concat_dim), Axis::Split(split_dim)) => (
                Kind::AllToAll,
                Collective::AllToAll {
                    split_dim,
                    concat_dim,
                },
            ),
            _ => return None,
        };
        let group = AxisGroup::at(&src_axes, position);
        let bytes = bytes_sent(op, group, &self.src_boxes, self.element_bytes);
        Some((kind, vec![Step::Collective { op, group }], bytes))
    }

    fn point_to_point(&self) -> Result<Lowering> {
        let reduced: Vec<Lowering> = self
            .partial_reductions()
            .into_iter()
            .map(|(op, group)| {
                let held = holdings_after(op, group, &self.src_boxes);
                let bytes = bytes_sent(op, group, &self.src_boxes, self.element_bytes);
                self.exchange_after(vec![Step::Collective { op, group }], held, bytes)
            })
            .collect::<Result<_>>()?;
        // `min_by_key` keeps the first of equals: the all-reduce.
        match reduced
            .into_iter()
            .min_by_key(|(_, _, bytes)| bytes.iter().sum::<usize>())
        {
            Some(lowering) => Ok(lowering),
            None => self.exchange_after(
                Vec::new(),
                self.src_boxes.clone(),
                vec![0; self.src.devices],
            ),
        }
    }

    /// The ways to turn a partial source into plain boxes: all-reduce over the partial
    /// axis, and reduce-scatter along the longest dim the source does not split (when it
    /// has at least as many elements as there are summands). Empty when not partial.
    fn partial_reductions(&self) -> Vec<(Collective, AxisGroup)> {
        let axes = self.src.axes();
        let Some(position) = axes.iter().position(|&(a, _)| a == Axis::Partial) else {
            return Vec::new();
        };
        let group = AxisGroup::at(&axes, position);
        let longest_unsplit = (0..self.full_dims.len())
            .filter(|d| !self.src.splits.contains_key(d))
            .max_by_key(|&d| (self.full_dims[d], std::cmp::Reverse(d)))
            .filter(|&d| self.full_dims[d] >= group.extent);
        std::iter::once(Collective::AllReduce)
            .chain(longest_unsplit.map(|dim| Collective::ReduceScatter { dim }))
            .map(|op| (op, group))
            .collect()
    }

    /// `steps`, then an exchange from the non-partial boxes `held` to the destination.
    fn exchange_after(
        &self,
        mut steps: Vec<Step>,
        held: Boxes,
        mut bytes: Vec<usize>,
    ) -> Result<Lowering> {
        let mut regions = Vec::with_capacity(self.dst.devices);
        for (device, region) in self.dst_boxes.iter().enumerate() {
            regions.push((region.clone(), self.dst.partial_index(device)? == 0));
        }
        let exchange = plan_exchange(held, regions, self.element_bytes, &mut bytes)?;
        steps.push(Step::Exchange(exchange));
        Ok((Kind::PointToPoint, steps, bytes))
    }
}

fn boxes(state: &DState, full_dims: &[usize]) -> Result<Boxes> {
    (0..state.devices)
        .map(|device| state.shard(device, full_dims))
        .collect()
}
