//! Memory planning: every value computed by a plan gets a place in ONE arena.
//!
//! Over a schedule, each computed value owns a buffer live from the step that writes it to
//! the last step that reads it (graph outputs: to the end). Views alias their base buffer
//! (extending its lifetime) when strides can express them and become copies otherwise
//! (`Contiguous` of bytes already contiguous aliases too). An
//! elementwise op whose input buffer dies at it writes into that buffer (in-place reuse).
//! Buffers then get 64-byte aligned offsets, greedily by size with best fit, so that no two
//! buffers live at the same step share a byte.

use crate::exec::kernels::{needs_copy, view_layout};
use crate::{eval_shape, Bindings, Error, Graph, Node, NodeId, Op, Result, TensorType, Value};
use luoshu_tensor::{DType, Layout};
use std::collections::HashMap;
use std::fmt;

/// Alignment of every buffer offset in the arena (a cache line).
pub const ALIGN: usize = 64;

/// Where a value's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Buffer `i` of [`MemoryPlan::buffers`].
    Arena(usize),
    /// Outside the arena, in the tensor of this leaf: a fed input/parameter, or a
    /// constant built once when the plan is compiled.
    Leaf(NodeId),
}

/// A value's home and its layout there. For `Arena` homes the layout indexes the whole
/// arena (in elements of `dtype`); for `Leaf` homes it indexes the leaf's contiguous tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The buffer or leaf tensor holding the bytes.
    pub home: Home,
    /// Dims, strides and offset of the value within its home, in elements of `dtype`.
    pub layout: Layout,
    /// Element type of the value.
    pub dtype: DType,
}

/// One arena buffer, live at schedule positions `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// Size rounded up to [`ALIGN`].
    pub bytes: usize,
    /// Byte offset in the arena, a multiple of [`ALIGN`].
    pub offset: usize,
    /// Schedule position of the step that writes it.
    pub first: usize,
    /// Last schedule position that reads it or a view of it (the schedule's length when it
    /// holds a graph output).
    pub last: usize,
}

impl Buffer {
    /// Whether the live ranges of the two buffers overlap, so they may not share bytes.
    pub fn live_at_same_time(&self, other: &Buffer) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// What the executor does for a scheduled node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A fed leaf or a constant: nothing to run per step.
    Leaf,
    /// A view expressed by strides over its input's bytes: nothing to run.
    Alias,
    /// A kernel writing the node's outputs into their placements.
    Compute,
}

/// Summary numbers of a memory plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryReport {
    /// Arena size: the planned peak.
    pub arena_bytes: usize,
    /// Sum of every computed value's own buffer, as if nothing were reused.
    pub intermediate_bytes: usize,
    /// Number of arena buffers.
    pub buffers: usize,
    /// Elementwise outputs written into an input's buffer that dies at them.
    pub in_place: usize,
    /// Views (and `Contiguous` of contiguous bytes) that alias their input's bytes.
    pub aliased_views: usize,
    /// Views whose strides cannot be expressed over their input, computed as copies.
    pub view_copies: usize,
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arena {} bytes for {} bytes of intermediates ({} buffers, {} in place, {} views aliased, {} views copied)",
            self.arena_bytes,
            self.intermediate_bytes,
            self.buffers,
            self.in_place,
            self.aliased_views,
            self.view_copies
        )
    }
}

/// Where every value of a schedule lives, from [`plan_memory`].
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// The nodes in execution order.
    pub schedule: Vec<NodeId>,
    /// What the executor does at each schedule position.
    pub kinds: Vec<StepKind>,
    /// Home and layout of every output of every scheduled node.
    pub placements: HashMap<Value, Placement>,
    /// The arena's buffers, indexed by [`Home::Arena`].
    pub buffers: Vec<Buffer>,
    /// Summary numbers.
    pub report: MemoryReport,
}

impl MemoryPlan {
    /// The placement of `v`; errors if `v`'s node is not in the schedule.
    pub fn placement(&self, v: Value) -> Result<&Placement> {
        self.placements.get(&v).ok_or_else(|| Error::Invalid {
            detail: format!("value {v} is not in the memory plan (not scheduled)"),
        })
    }
}

/// Leaves whose tensor lives outside the arena (the rest are computed into it each run).
pub(crate) fn lives_outside_arena(op: &Op) -> bool {
    matches!(
        op,
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_)
    )
}

/// Bytes of a value under the bindings.
pub(crate) fn value_bytes(t: &TensorType, bindings: &Bindings) -> Result<usize> {
    let dims = eval_shape(&t.shape, bindings)?;
    dims.iter()
        .try_fold(t.dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Invalid {
            detail: format!("{t} overflows usize bytes under the bindings"),
        })
}

fn align(bytes: usize) -> usize {
    bytes.div_ceil(ALIGN) * ALIGN
}

/// Plan the memory of running `schedule` (a topological order of nodes of `graph`, which
/// must include everything the outputs need) under `bindings`.
pub fn plan_memory(graph: &Graph, schedule: &[NodeId], bindings: &Bindings) -> Result<MemoryPlan> {
    let last_use = last_uses(graph, schedule)?;
    let mut planner = Planner {
        placements: HashMap::new(),
        buffers: Vec::new(),
        report: MemoryReport::default(),
        last_use,
    };
    let mut kinds = Vec::with_capacity(schedule.len());
    for (step, &id) in schedule.iter().enumerate() {
        kinds.push(planner.place_node(graph, id, step, bindings)?);
    }
    let Planner {
        mut placements,
        mut buffers,
        mut report,
        ..
    } = planner;
    report.arena_bytes = assign_offsets(&mut buffers);
    report.buffers = buffers.len();
    for p in placements.values_mut() {
        if let Home::Arena(b) = p.home {
            let base = buffers[b].offset / p.dtype.size_in_bytes();
            p.layout = Layout::from_parts(
                p.layout.dims(),
                p.layout.strides().to_vec(),
                p.layout.offset() + base,
            )?;
        }
    }
    Ok(MemoryPlan {
        schedule: schedule.to_vec(),
        kinds,
        placements,
        buffers,
        report,
    })
}

/// Last schedule position reading each value (graph outputs: one past the end; unread
/// values: their own step). Fails if the schedule is not a topological order.
fn last_uses(graph: &Graph, schedule: &[NodeId]) -> Result<HashMap<Value, usize>> {
    let mut last = HashMap::new();
    for (step, &id) in schedule.iter().enumerate() {
        let node = graph.node(id);
        for v in &node.inputs {
            let slot = last.get_mut(v).ok_or_else(|| Error::Node {
                node: id,
                op: node.op.name(),
                detail: format!("scheduled before its input {v}"),
            })?;
            *slot = step;
        }
        for k in 0..node.outputs.len() as u32 {
            if last.insert(Value::new(id, k), step).is_some() {
                return Err(Error::Node {
                    node: id,
                    op: node.op.name(),
                    detail: "scheduled twice".into(),
                });
            }
        }
    }
    for v in graph.outputs() {
        let slot = last.get_mut(v).ok_or_else(|| Error::Invalid {
            detail: format!("graph output {v} is not scheduled"),
        })?;
        *slot = schedule.len();
    }
    Ok(last)
}

struct Planner {
    placements: HashMap<Value, Placement>,
    buffers: Vec<Buffer>,
    report: MemoryReport,
    last_use: HashMap<Value, usize>,
}

impl Planner {
    fn place_node(
        &mut self,
        graph: &Graph,
        id: NodeId,
        step: usize,
        bindings: &Bindings,
    ) -> Result<StepKind> {
        let node = graph.node(id);
        let out = Value::new(id, 0);
        if lives_outside_arena(&node.op) {
            let t = &node.outputs[0];
            let layout = Layout::contiguous(eval_shape(&t.shape, bindings)?)?;
            self.place(out, Home::Leaf(id), layout, t.dtype);
            return Ok(StepKind::Leaf);
        }
        if node.op.is_view() {
            let input = self.placement(node.inputs[0])?.clone();
            let dims = eval_shape(&node.outputs[0].shape, bindings)?;
            match view_layout(&node.op, &input.layout, &dims) {
                Ok(layout) => {
                    self.place(out, input.home, layout, input.dtype);
                    self.report.aliased_views += 1;
                    return Ok(StepKind::Alias);
                }
                Err(e) if needs_copy(&e) => self.report.view_copies += 1,
                Err(e) => return Err(crate::exec::node_error(id, &node.op, e)),
            }
        }
        if matches!(node.op, Op::Contiguous) {
            // The functional IR never writes a value twice, so a copy of bytes that are
            // already contiguous can share them.
            let input = self.placement(node.inputs[0])?.clone();
            if input.layout.is_contiguous() {
                self.place(out, input.home, input.layout, input.dtype);
                self.report.aliased_views += 1;
                return Ok(StepKind::Alias);
            }
        }
        for (k, t) in node.outputs.iter().enumerate() {
            let v = Value::new(id, k as u32);
            let dims = eval_shape(&t.shape, bindings)?;
            let bytes = align(value_bytes(t, bindings)?);
            self.report.intermediate_bytes += bytes;
            let reuse = if k == 0 {
                self.in_place_buffer(node, step, &dims, t.dtype, bytes)
            } else {
                None
            };
            let b = match reuse {
                Some(b) => {
                    self.report.in_place += 1;
                    b
                }
                None => {
                    self.buffers.push(Buffer {
                        bytes,
                        offset: 0,
                        first: step,
                        last: step,
                    });
                    self.buffers.len() - 1
                }
            };
            self.place(v, Home::Arena(b), Layout::contiguous(dims)?, t.dtype);
        }
        Ok(StepKind::Compute)
    }

    fn placement(&self, v: Value) -> Result<&Placement> {
        self.placements.get(&v).ok_or_else(|| Error::Invalid {
            detail: format!("value {v} is used before it is placed"),
        })
    }

    /// Record `v`'s placement and extend its arena buffer to `v`'s last use.
    fn place(&mut self, v: Value, home: Home, layout: Layout, dtype: DType) {
        if let Home::Arena(b) = home {
            let last = self.last_use.get(&v).copied().unwrap_or(0);
            let buf = &mut self.buffers[b];
            buf.last = buf.last.max(last);
        }
        self.placements.insert(
            v,
            Placement {
                home,
                layout,
                dtype,
            },
        );
    }

    /// The buffer of an input that an elementwise node may overwrite: it dies at this step
    /// (so it is no graph output and no later view reads it), it is exactly the output's
    /// contiguous region, and no other input reads it through a different layout.
    fn in_place_buffer(
        &self,
        node: &Node,
        step: usize,
        dims: &[usize],
        dtype: DType,
        bytes: usize,
    ) -> Option<usize> {
        // The backend allows `out` to be the same region as an input only for these.
        if !matches!(node.op, Op::Unary(_) | Op::Binary(_) | Op::Fused(_)) {
            return None;
        }
        node.inputs.iter().find_map(|v| {
            let p = self.placements.get(v)?;
            let Home::Arena(b) = p.home else {
                return None;
            };
            let buf = &self.buffers[b];
            let whole_buffer = p.dtype == dtype
                && p.layout.dims() == dims
                && p.layout.is_contiguous()
                && p.layout.offset() == 0
                && buf.bytes == bytes;
            let same_view_everywhere = node
                .inputs
                .iter()
                .filter_map(|w| self.placements.get(w))
                .all(|q| q.home != p.home || q.layout == p.layout);
            (buf.last == step && whole_buffer && same_view_everywhere).then_some(b)
        })
    }
}

/// Give every buffer an offset, largest first, into the smallest gap (best fit) between
/// the buffers already placed that are live at the same time; returns the arena size.
fn assign_offsets(buffers: &mut [Buffer]) -> usize {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].first, i));
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena = 0;
    for i in order {
        let size = buffers[i].bytes;
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].bytes > 0 && buffers[j].live_at_same_time(&buffers[i]))
            .map(|&j| (buffers[j].offset, buffers[j].offset + buffers[j].bytes))
            .collect();
        conflicts.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut end = 0;
        for (start, stop) in conflicts {
            if start >= end + size {
                let gap = start - end;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, end));
                }
            }
            end = end.max(stop);
        }
        let offset = best.map_or(end, |(_, o)| o);
        buffers[i].offset = offset;
        arena = arena.max(offset + size);
        placed.push(i);
    }
    arena
}
