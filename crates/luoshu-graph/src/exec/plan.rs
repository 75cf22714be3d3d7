use super::feeds::bind_feed;
use super::kernels::{run_node, Context};
use super::node_error;
use super::profile::Profile;
use super::Collectives;
use crate::memory::{plan_memory, Home, MemoryPlan, MemoryReport, Placement, StepKind};
use crate::schedule::schedule;
use crate::{Bindings, Error, Graph, NodeId, Op, Result, Value};
use luoshu_backend::{Backend, Ops};
use luoshu_tensor::{Layout, Storage, Tensor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Options of [`compile`].
#[derive(Clone)]
pub struct CompileOptions {
    /// Time every node and print the slowest after each run (default: `LUOSHU_PROFILE=1`).
    pub profile: bool,
    /// Runs the graph's collective nodes; required when the graph has any.
    pub collectives: Option<Arc<dyn Collectives>>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            profile: std::env::var("LUOSHU_PROFILE").is_ok_and(|v| v == "1"),
            collectives: None,
        }
    }
}

impl std::fmt::Debug for CompileOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileOptions")
            .field("profile", &self.profile)
            .field("collectives", &self.collectives.is_some())
            .finish()
    }
}

/// Where a step finds an operand.
#[derive(Debug, Clone)]
enum Operand {
    /// In the arena or a compile-time constant: built once at compile.
    Fixed(Tensor),
    /// A view of fed leaf `slot`, with a layout relative to the fed tensor.
    Fed { slot: usize, layout: Layout },
}

#[derive(Debug)]
struct Step {
    node: NodeId,
    op: Op,
    inputs: Vec<Operand>,
    outputs: Vec<Tensor>,
}

/// A leaf bound by name at every run.
#[derive(Debug)]
struct FeedSlot {
    op: Op,
    dims: Vec<usize>,
}

/// A graph compiled for fixed bindings: a memory-lowering schedule, one arena allocated
/// here and reused by every run, in-place reuse, and the kernels to run in order.
///
/// [`Plan::run`] allocates no buffers except the tensors it returns (outputs are copied out
/// of the arena) and contiguous copies of feeds that are not contiguous; [`Plan::run_with`]
/// lends the outputs to a closure instead of copying them, and [`Plan::run_streaming`] lends
/// each output as soon as the kernel producing it has run.
pub struct Plan {
    backend: Arc<dyn Backend>,
    feeds: Vec<FeedSlot>,
    steps: Vec<Step>,
    outputs: Vec<Operand>,
    /// `(kernel steps that must have run, output index)` of every output, in the order the
    /// outputs become ready.
    ready_order: Vec<(usize, usize)>,
    memory: MemoryPlan,
    profile: Option<Profile>,
    collectives: Option<Arc<dyn Collectives>>,
}

/// Compile `graph` for `bindings` on `backend`: schedule, plan memory, allocate the arena
/// and build every constant once.
pub fn compile(
    graph: &Graph,
    bindings: &Bindings,
    backend: Arc<dyn Backend>,
    opts: CompileOptions,
) -> Result<Plan> {
    let order = schedule(graph, bindings)?;
    let memory = plan_memory(graph, &order, bindings)?;
    if let Some(node) = graph.nodes().iter().find(|n| n.op.is_collective()) {
        if opts.collectives.is_none() {
            return Err(Error::Invalid {
                detail: format!(
                    "the graph has collective node {} but CompileOptions::collectives is None",
                    node.op.name()
                ),
            });
        }
    }
    let ctx = Context {
        ops: Ops::new(backend.as_ref()),
        collectives: None,
    };
    let ops = &ctx.ops;
    let arena = Arc::new(Storage::zeroed(memory.report.arena_bytes));

    let mut feeds = Vec::new();
    let mut leaves: HashMap<NodeId, LeafTensor> = HashMap::new();
    let mut steps = Vec::new();
    for (&id, kind) in memory.schedule.iter().zip(&memory.kinds) {
        let node = graph.node(id);
        match kind {
            StepKind::Alias => {}
            StepKind::Leaf => {
                let dims = memory.placement(Value::new(id, 0))?.layout.dims().to_vec();
                let leaf = if matches!(node.op, Op::Constant(_)) {
                    let t = ops.alloc(node.outputs[0].dtype, &dims)?;
                    run_node(&ctx, &node.op, &[], std::slice::from_ref(&t))
                        .map_err(|e| node_error(id, &node.op, e))?;
                    LeafTensor::Constant(t)
                } else {
                    feeds.push(FeedSlot {
                        op: node.op.clone(),
                        dims,
                    });
                    LeafTensor::Fed(feeds.len() - 1)
                };
                leaves.insert(id, leaf);
            }
            StepKind::Compute => {
                let operand = |v: &Value| resolve(&memory, &arena, &leaves, *v);
                let inputs = node.inputs.iter().map(operand).collect::<Result<_>>()?;
                let outputs = (0..node.outputs.len() as u32)
                    .map(|k| match operand(&Value::new(id, k))? {
                        Operand::Fixed(t) => Ok(t),
                        Operand::Fed { .. } => Err(Error::Invalid {
                            detail: format!("computed value {id} placed in a fed tensor"),
                        }),
                    })
                    .collect::<Result<_>>()?;
                steps.push(Step {
                    node: id,
                    op: node.op.clone(),
                    inputs,
                    outputs,
                });
            }
        }
    }
    let outputs = graph
        .outputs()
        .iter()
        .map(|v| resolve(&memory, &arena, &leaves, *v))
        .collect::<Result<_>>()?;
    tracing::debug!(
        nodes = graph.len(),
        kernels = steps.len(),
        feeds = feeds.len(),
        arena_bytes = memory.report.arena_bytes,
        intermediate_bytes = memory.report.intermediate_bytes,
        "compiled plan"
    );
    let ready_order = output_readiness(&memory, graph.outputs())?;
    let profile = opts.profile.then(|| Profile::new(steps.len()));
    Ok(Plan {
        backend,
        feeds,
        steps,
        outputs,
        ready_order,
        memory,
        profile,
        collectives: opts.collectives,
    })
}

/// For every graph output, how many kernel steps must have run before it holds its value
/// (the compute steps scheduled up to and including its node: views and leaves run
/// nothing, a node's inputs are scheduled before it, and no later step writes a value that
/// is still live, as every output is); sorted by that count, ties in output order.
fn output_readiness(memory: &MemoryPlan, outputs: &[Value]) -> Result<Vec<(usize, usize)>> {
    let mut steps_done = HashMap::new();
    let mut computed = 0;
    for (&id, kind) in memory.schedule.iter().zip(&memory.kinds) {
        if matches!(kind, StepKind::Compute) {
            computed += 1;
        }
        steps_done.insert(id, computed);
    }
    let mut order = outputs
        .iter()
        .enumerate()
        .map(|(k, v)| match steps_done.get(&v.node) {
            Some(&after) => Ok((after, k)),
            None => Err(Error::Invalid {
                detail: format!("graph output {v} is not in the schedule"),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    order.sort_unstable();
    Ok(order)
}

enum LeafTensor {
    Constant(Tensor),
    Fed(usize),
}

fn resolve(
    memory: &MemoryPlan,
    arena: &Arc<Storage>,
    leaves: &HashMap<NodeId, LeafTensor>,
    v: Value,
) -> Result<Operand> {
    let Placement {
        home,
        layout,
        dtype,
    } = memory.placement(v)?;
    Ok(match home {
        Home::Arena(_) => {
            Operand::Fixed(Tensor::from_storage(arena.clone(), layout.clone(), *dtype)?)
        }
        Home::Leaf(leaf) => match leaves.get(leaf) {
            Some(LeafTensor::Constant(t)) => Operand::Fixed(t.with_layout(layout.clone())?),
            Some(LeafTensor::Fed(slot)) => Operand::Fed {
                slot: *slot,
                layout: layout.clone(),
            },
            None => {
                return Err(Error::Invalid {
                    detail: format!("value {v} reads leaf {leaf} before it is scheduled"),
                })
            }
        },
    })
}

/// The view `layout` (relative to the fed tensor) of bound feed `slot`.
fn view_of_feed(fed: &[Tensor], slot: usize, layout: &Layout) -> Result<Tensor> {
    let t = &fed[slot];
    let shifted = Layout::from_parts(
        layout.dims(),
        layout.strides().to_vec(),
        layout.offset() + t.layout().offset(),
    )?;
    Ok(t.with_layout(shifted)?)
}

impl Plan {
    /// Run the plan: bind `feeds` by name, run every kernel in schedule order, and return
    /// the graph's outputs (fresh tensors; views of feeds stay views of the feeds).
    pub fn run(&mut self, feeds: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
        let views = self.output_views(feeds)?;
        let ops = Ops::new(self.backend.as_ref());
        views
            .into_iter()
            .zip(&self.outputs)
            .map(|(t, operand)| match operand {
                Operand::Fixed(_) => {
                    let out = ops.alloc(t.dtype(), t.dims())?;
                    ops.copy_into(&t, &out)?;
                    Ok(out)
                }
                Operand::Fed { .. } => Ok(t),
            })
            .collect()
    }

    /// Run the plan like [`Plan::run`], but hand the outputs to `consume` as views of the
    /// plan's own buffers instead of copying them out: they hold this run's values only
    /// until the closure returns (the next run overwrites them, and they may share storage
    /// with constants), so `consume` must read them and must not write them or keep them.
    /// `consume`'s error type only needs to absorb this crate's errors.
    pub fn run_with<R, E: From<Error>>(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        consume: impl FnOnce(&[Tensor]) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        consume(&self.output_views(feeds)?)
    }

    /// Run the plan, lending every output `k` to `ready(k, output)` as soon as the kernel
    /// that produces it has run, while the remaining kernels still wait (outputs in the
    /// order they become ready, each once; the same views and rules as [`Plan::run_with`]).
    /// Lets a caller start work on early outputs, e.g. reduce the gradients of the last
    /// layers while backward continues through the first ones.
    pub fn run_streaming<E: From<Error>>(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        mut ready: impl FnMut(usize, &Tensor) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.execute(feeds, |k, t| ready(k, &t))
    }

    /// Every output as a view of the arena, constants and feeds, after a whole run.
    fn output_views(&mut self, feeds: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
        let mut views: Vec<Option<Tensor>> = vec![None; self.outputs.len()];
        self.execute(feeds, |k, t| {
            views[k] = Some(t);
            Ok::<_, Error>(())
        })?;
        views
            .into_iter()
            .map(|v| {
                v.ok_or_else(|| Error::Invalid {
                    detail: "the plan lent no value for one of its outputs".into(),
                })
            })
            .collect()
    }

    /// Bind feeds and run every kernel, lending each output (a view of the arena, a
    /// constant or a feed) to `ready` once the kernels it needs have run.
    fn execute<E: From<Error>>(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        mut ready: impl FnMut(usize, Tensor) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let ctx = Context {
            ops: Ops::new(self.backend.as_ref()),
            collectives: self.collectives.as_deref(),
        };
        let ops = &ctx.ops;
        let fed = self
            .feeds
            .iter()
            .map(|slot| {
                let t = bind_feed(&slot.op, &slot.dims, feeds)?;
                Ok(ops.contiguous(&t)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut lent = self.lend_ready(0, 0, &fed, &mut ready)?;
        let mut inputs: Vec<Tensor> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            inputs.clear();
            for operand in &step.inputs {
                inputs.push(match operand {
                    Operand::Fixed(t) => t.clone(),
                    Operand::Fed { slot, layout } => view_of_feed(&fed, *slot, layout)?,
                });
            }
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let start = self.profile.as_ref().map(|_| Instant::now());
            run_node(&ctx, &step.op, &refs, &step.outputs)
                .map_err(|e| node_error(step.node, &step.op, e))?;
            if let (Some(p), Some(start)) = (self.profile.as_mut(), start) {
                p.record(i, start.elapsed());
            }
            lent = self.lend_ready(lent, i + 1, &fed, &mut ready)?;
        }
        if let Some(p) = &self.profile {
            eprint!("{}", p.top(&self.steps_described(), 10));
        }
        Ok(())
    }

    /// Lends the outputs of `ready_order` from position `next` on that need at most
    /// `steps_done` kernel steps; returns the position of the first one not lent.
    fn lend_ready<E: From<Error>>(
        &self,
        mut next: usize,
        steps_done: usize,
        fed: &[Tensor],
        ready: &mut impl FnMut(usize, Tensor) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        while let Some(&(after, k)) = self.ready_order.get(next) {
            if after > steps_done {
                break;
            }
            let view = match &self.outputs[k] {
                Operand::Fixed(t) => t.clone(),
                Operand::Fed { slot, layout } => view_of_feed(fed, *slot, layout)?,
            };
            ready(k, view)?;
            next += 1;
        }
        Ok(next)
    }

    /// The memory plan (schedule, placements, buffers).
    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    /// Summary of the memory plan: arena size, buffers, reuse.
    pub fn memory_report(&self) -> MemoryReport {
        self.memory.report
    }

    /// Number of kernel launches per run (views and leaves run nothing).
    pub fn kernel_count(&self) -> usize {
        self.steps.len()
    }

    /// Accumulated time per kernel step, when profiling: `(node, op name, total time)`.
    pub fn timings(&self) -> Option<Vec<(NodeId, String, std::time::Duration)>> {
        let p = self.profile.as_ref()?;
        Some(
            self.steps
                .iter()
                .zip(p.totals())
                .map(|(s, t)| (s.node, s.op.name(), *t))
                .collect(),
        )
    }

    fn steps_described(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| format!("{} {}", s.node, s.op.name()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dim;
    use luoshu_backend::cpu::CpuBackend;
    use luoshu_backend::ops::{BinaryOp, UnaryOp};
    use luoshu_tensor::DType;

    /// `run_with` lends the same values `run` copies out, computed output and fed view alike.
    #[test]
    fn run_with_lends_what_run_returns() -> Result<()> {
        let mut g = Graph::new();
        let x = g.input("x", &[Dim::fixed(2), Dim::fixed(3)], DType::F32)?;
        let neg = g.unary(UnaryOp::Neg, x)?;
        let sum = g.binary(BinaryOp::Add, neg, x)?;
        let doubled = g.binary(BinaryOp::Add, x, x)?;
        g.set_outputs(vec![doubled, sum, x])?;
        let mut plan = compile(
            &g,
            &Bindings::new(),
            Arc::new(CpuBackend::new()),
            CompileOptions::default(),
        )?;
        let values = [1.0f32, -2.0, 3.5, 0.25, 8.0, -1.0];
        let feeds: HashMap<String, Tensor> = [(
            "x".to_string(),
            Tensor::from_slice(&values, &[2usize, 3][..])?,
        )]
        .into();
        let copied = plan.run(&feeds)?;
        let lent = plan.run_with(&feeds, |outputs| {
            Ok::<_, Error>(outputs.iter().map(Tensor::to_f64_vec).collect::<Vec<_>>())
        })?;
        let copied: Vec<Vec<f64>> = copied.iter().map(Tensor::to_f64_vec).collect();
        assert_eq!(lent, copied);
        let doubled: Vec<f64> = values.iter().map(|&v| f64::from(v) * 2.0).collect();
        assert_eq!(lent[0], doubled);
        Ok(())
    }

    /// `run_streaming` lends every output once, with `run`'s values, and an output before
    /// any output computed from it (so before the kernels after it have run).
    #[test]
    fn run_streaming_lends_outputs_as_they_are_produced() -> Result<()> {
        let mut g = Graph::new();
        let x = g.input("x", &[Dim::fixed(4)], DType::F32)?;
        let early = g.unary(UnaryOp::Neg, x)?;
        let middle = g.unary(UnaryOp::Exp, early)?;
        let late = g.binary(BinaryOp::Add, middle, early)?;
        g.set_outputs(vec![late, x, middle, early])?;
        let mut plan = compile(
            &g,
            &Bindings::new(),
            Arc::new(CpuBackend::new()),
            CompileOptions::default(),
        )?;
        let feeds: HashMap<String, Tensor> = [(
            "x".to_string(),
            Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0], &[4usize][..])?,
        )]
        .into();
        let copied: Vec<Vec<f64>> = plan.run(&feeds)?.iter().map(Tensor::to_f64_vec).collect();
        let mut lent: Vec<(usize, Vec<f64>)> = Vec::new();
        plan.run_streaming(&feeds, |k, t| {
            lent.push((k, t.to_f64_vec()));
            Ok::<_, Error>(())
        })?;
        let order: Vec<usize> = lent.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
        for (k, values) in lent {
            assert_eq!(values, copied[k]);
        }
        Ok(())
    }
}
