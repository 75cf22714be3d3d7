//! Lowering a conversion between states to nodes of the local graph, classified by
//! [`crate::plan`].

use crate::redistribute::{AxisGroup, Collective, Step};
use crate::{plan, Axis, DState, Error, Kind, Result};
use luoshu_graph::{eval_shape, Bindings, CollectiveReduce, Graph, TensorType, Value};
use std::collections::HashMap;

/// A communicator the local graph needs besides the whole group: the caller creates it
/// with `group_communicator.split(color, key)` and registers it under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubGroup {
    /// The group name the collective nodes carry.
    pub name: String,
    /// The `color` argument of `split`: ranks of one sub-group share it.
    pub color: usize,
    /// The `key` argument of `split`: orders the ranks within the sub-group.
    pub key: usize,
}

/// Builds the conversions of one rank's local graph, remembering what it inserted.
pub(super) struct Lowering<'a> {
    bindings: &'a Bindings,
    devices: usize,
    rank: usize,
    group: &'a str,
    inserted: Vec<(String, Kind)>,
    sub_groups: Vec<SubGroup>,
    /// (local value, its state, target state) → converted value, so a value converted for several
    /// consumers is converted once.
    converted: HashMap<(Value, DState, DState), Value>,
}

impl<'a> Lowering<'a> {
    pub(super) fn new(bindings: &'a Bindings, devices: usize, rank: usize, group: &'a str) -> Self {
        Lowering {
            bindings,
            devices,
            rank,
            group,
            inserted: Vec::new(),
            sub_groups: Vec::new(),
            converted: HashMap::new(),
        }
    }

    /// The inserted nodes and the sub-groups their collectives need.
    pub(super) fn finish(self) -> (Vec<(String, Kind)>, Vec<SubGroup>) {
        (self.inserted, self.sub_groups)
    }

    /// The local value of a tensor of type `full` in state `dst`, given `x`, its local
    /// value in state `src`.
    pub(super) fn convert(
        &mut self,
        graph: &mut Graph,
        x: Value,
        full: &TensorType,
        src: &DState,
        dst: &DState,
    ) -> Result<Value> {
        if src == dst {
            return Ok(x);
        }
        if let Some(&done) = self.converted.get(&(x, src.clone(), dst.clone())) {
            return Ok(done);
        }
        let dims = eval_shape(&full.shape, self.bindings)?;
        let planned = plan(src, dst, &dims, full.dtype)?;
        let y = match planned.kind {
            Kind::Nothing => x,
            Kind::LocalSlice => self.local_slice(graph, x, src, dst, &dims)?,
            Kind::AllReduce | Kind::ReduceScatter | Kind::AllGather => {
                let mut y = x;
                for step in &planned.steps {
                    if let Step::Collective { op, group } = step {
                        y = self.collective(graph, y, *op, *group, &dims, src)?;
                    }
                }
                y
            }
            Kind::AllToAll | Kind::PointToPoint
                if dst.axes().iter().all(|&(a, _)| a == Axis::Duplicate) =>
            {
                self.duplicate_axis_by_axis(graph, x, src, &dims)?
            }
            kind @ (Kind::AllToAll | Kind::PointToPoint) => {
                return Err(Error::NoGraphOp {
                    value: full.to_string(),
                    src: Box::new(src.clone()),
                    dst: Box::new(dst.clone()),
                    kind,
                })
            }
        };
        self.converted.insert((x, src.clone(), dst.clone()), y);
        Ok(y)
    }

    /// Any state → duplicated: one collective per device axis over its sub-groups,
    /// all-reduce of the partial axis first (while the pieces are small), then an
    /// all-gather of each split axis. Each collective acts on one axis of `src`'s grid,
    /// the others being constant within its groups, so the order does not matter.
    fn duplicate_axis_by_axis(
        &mut self,
        graph: &mut Graph,
        mut x: Value,
        src: &DState,
        dims: &[usize],
    ) -> Result<Value> {
        let axes = src.axes();
        let partial_first = axes
            .iter()
            .enumerate()
            .filter(|(_, (a, _))| *a == Axis::Partial)
            .chain(
                axes.iter()
                    .enumerate()
                    .filter(|(_, (a, _))| *a != Axis::Partial),
            );
        for (position, &(axis, _)) in partial_first {
            let op = match axis {
                Axis::Partial => Collective::AllReduce,
                Axis::Split(dim) => Collective::AllGather { dim },
                Axis::Duplicate => continue,
            };
            x = self.collective(graph, x, op, AxisGroup::at(&axes, position), dims, src)?;
        }
        Ok(x)
    }

    /// `op` over the groups of one axis of `src`'s grid.
    fn collective(
        &mut self,
        graph: &mut Graph,
        x: Value,
        op: Collective,
        group: AxisGroup,
        dims: &[usize],
        src: &DState,
    ) -> Result<Value> {
        let name = self.group_name(group);
        let parts = group.extent;
        let even = |dim: usize| {
            if dims[dim].is_multiple_of(parts) {
                Ok(())
            } else {
                Err(Error::UnevenCollective {
                    op,
                    src: Box::new(src.clone()),
                    parts,
                    dim,
                    dims: dims.to_vec(),
                })
            }
        };
        let (y, kind) = match op {
            Collective::AllReduce => (
                graph.all_reduce(x, &name, parts, CollectiveReduce::Sum)?,
                Kind::AllReduce,
            ),
            Collective::ReduceScatter { dim } => {
                even(dim)?;
                (
                    graph.reduce_scatter(x, &name, parts, dim)?,
                    Kind::ReduceScatter,
                )
            }
            Collective::AllGather { dim } => {
                even(dim)?;
                (graph.all_gather(x, &name, parts, dim)?, Kind::AllGather)
            }
            Collective::AllToAll { .. } => {
                return Err(Error::CollectiveNotLowered {
                    op,
                    src: Box::new(src.clone()),
                })
            }
        };
        self.record(graph, y, kind);
        Ok(y)
    }

    /// This rank cuts its destination box out of its source box, one slice per dim whose
    /// range changes (bounds local to the source piece, so they differ between ranks).
    fn local_slice(
        &mut self,
        graph: &mut Graph,
        mut x: Value,
        src: &DState,
        dst: &DState,
        dims: &[usize],
    ) -> Result<Value> {
        if src.partial == 1 && dst.partial > 1 {
            return Err(Error::PartialNotLowered {
                src: Box::new(src.clone()),
                dst: Box::new(dst.clone()),
            });
        }
        let held = src.shard(self.rank, dims)?;
        let wanted = dst.shard(self.rank, dims)?;
        for (dim, (held, wanted)) in held.iter().zip(&wanted).enumerate() {
            if held == wanted {
                continue;
            }
            let (start, end) = if wanted.is_empty() {
                (0, 0)
            } else {
                (wanted.start - held.start, wanted.end - held.start)
            };
            x = graph.slice(x, dim, start, end, 1)?;
            self.record(graph, x, Kind::LocalSlice);
        }
        Ok(x)
    }

    fn record(&mut self, graph: &Graph, node: Value, kind: Kind) {
        self.inserted.push((graph.node(node.node).op.name(), kind));
    }

    /// The communicator name of `group`'s sub-group containing this rank: the whole
    /// group's name when the axis spans every device, else a name for the axis (its
    /// stride and extent fix the partition) registered in the required sub-groups.
    fn group_name(&mut self, group: AxisGroup) -> String {
        if group.extent == self.devices {
            return self.group.to_string();
        }
        let name = format!("{}.stride{}x{}", self.group, group.stride, group.extent);
        let sub_group = SubGroup {
            name: name.clone(),
            color: group.color(self.rank),
            key: group.index(self.rank),
        };
        if !self.sub_groups.contains(&sub_group) {
            self.sub_groups.push(sub_group);
        }
        name
    }
}
