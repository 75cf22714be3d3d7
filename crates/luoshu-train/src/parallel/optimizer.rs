//! One rank's optimizer over its flattened local gradients: AdamW on every local parameter
//! (plain data parallelism), or ZeRO-1: AdamW on this rank's piece of the flattened
//! parameters with the moments of that piece only, followed by an all-gather of the updated
//! pieces.

use crate::{AdamW, AdamWConfig, AdamWState, Error, Result};
use luoshu_backend::ops::AdamW as AdamWStep;
use luoshu_backend::Ops;
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_dist::shard_range;
use luoshu_model::ParamStore;
use luoshu_tensor::{DType, Tensor};
use std::ops::Range;

/// The flat layout of a rank's local parameters: parameter `i` is `flat[offsets[i]]`.
#[derive(Debug, Clone)]
pub(crate) struct FlatLayout {
    pub offsets: Vec<Range<usize>>,
    pub dims: Vec<Vec<usize>>,
    pub len: usize,
}

impl FlatLayout {
    pub fn of(params: &ParamStore) -> Self {
        let mut offsets = Vec::new();
        let mut dims = Vec::new();
        let mut len = 0;
        for t in params.tensors() {
            offsets.push(len..len + t.numel());
            dims.push(t.dims().to_vec());
            len += t.numel();
        }
        FlatLayout { offsets, dims, len }
    }

    /// Parameter `i` as a view of `flat`.
    pub fn view(&self, flat: &Tensor, i: usize) -> Result<Tensor> {
        let r = &self.offsets[i];
        Ok(flat
            .narrow(0, r.start, r.end - r.start)?
            .reshape(self.dims[i].as_slice())?)
    }

    /// The pieces of `flat` for each of `parts` ranks (uneven: sizes differ by at most one).
    pub fn pieces(&self, flat: &Tensor, parts: usize) -> Result<Vec<Tensor>> {
        (0..parts)
            .map(|p| {
                let r = shard_range(self.len, parts, p);
                Ok(flat.narrow(0, r.start, r.end - r.start)?)
            })
            .collect()
    }
}

/// ZeRO-1 state: this rank's piece `range` of the flat parameters, with master copy and
/// moments of that piece.
pub(crate) struct Zero1 {
    config: AdamWConfig,
    range: Range<usize>,
    master: Tensor,
    m: Tensor,
    v: Tensor,
    step: u64,
}

pub(crate) enum ShardedOptimizer {
    Replicated(AdamW),
    Zero1(Zero1),
    /// A hot-switching phase runtime's: it sums gradients like [`Self::Replicated`] but
    /// keeps no optimizer state and never updates (the update strategy's runtime does).
    PhaseOnly,
}

/// The refusal of every optimizer-state call on a phase runtime.
fn no_state() -> Error {
    Error::State(
        "this strategy's runtime only runs hot-switching phases and keeps no optimizer state; \
         the update strategy's runtime updates and holds the moments"
            .into(),
    )
}

impl ShardedOptimizer {
    pub fn new(
        ops: &Ops,
        config: AdamWConfig,
        params: &ParamStore,
        layout: &FlatLayout,
        zero1: Option<&dyn Communicator>,
    ) -> Result<Self> {
        let Some(dp) = zero1 else {
            return Ok(ShardedOptimizer::Replicated(AdamW::new(
                ops, config, params,
            )?));
        };
        let range = shard_range(layout.len, dp.size(), dp.rank());
        let master = ops.alloc(DType::F32, &[range.len()])?;
        let flat = flatten(ops, params, layout)?;
        ops.copy_into(&flat.narrow(0, range.start, range.len())?, &master)?;
        Ok(ShardedOptimizer::Zero1(Zero1 {
            config,
            m: ops.full(0.0, DType::F32, &[range.len()])?,
            v: ops.full(0.0, DType::F32, &[range.len()])?,
            range,
            master,
            step: 0,
        }))
    }

    /// This rank's share of the summed gradient: the whole flat gradient (replicated; the
    /// sum overwrites `grads`, which is returned) or its piece (ZeRO-1), after reducing
    /// `grads` over `dp`.
    pub fn reduce_gradients(
        &self,
        dp: &dyn Communicator,
        grads: &Tensor,
        layout: &FlatLayout,
    ) -> Result<Tensor> {
        Ok(match self {
            ShardedOptimizer::Replicated(_) | ShardedOptimizer::PhaseOnly if dp.size() == 1 => {
                grads.clone()
            }
            ShardedOptimizer::Replicated(_) | ShardedOptimizer::PhaseOnly => {
                dp.all_reduce_in_place(grads, ReduceOp::Sum)?;
                grads.clone()
            }
            ShardedOptimizer::Zero1(_) => {
                dp.reduce_scatter(&layout.pieces(grads, dp.size())?, ReduceOp::Sum)?
            }
        })
    }

    /// The flat range of the gradient [`Self::reduce_gradients`] returns.
    pub fn grad_range(&self, layout: &FlatLayout) -> Range<usize> {
        match self {
            ShardedOptimizer::Replicated(_) | ShardedOptimizer::PhaseOnly => 0..layout.len,
            ShardedOptimizer::Zero1(z) => z.range.clone(),
        }
    }

    /// Update `params` with this rank's gradient share `grad` at `lr`.
    pub fn step(
        &mut self,
        ops: &Ops,
        dp: &dyn Communicator,
        params: &ParamStore,
        layout: &FlatLayout,
        grad: &Tensor,
        lr: f64,
    ) -> Result<()> {
        match self {
            ShardedOptimizer::Replicated(adam) => {
                let grads = (0..params.len())
                    .map(|i| layout.view(grad, i))
                    .collect::<Result<Vec<_>>>()?;
                adam.step(ops, params, &grads, lr)
            }
            ShardedOptimizer::Zero1(z) => z.step(ops, dp, params, layout, grad, lr),
            ShardedOptimizer::PhaseOnly => Err(no_state()),
        }
    }

    /// Collective over `dp`: the moments of every local parameter (ZeRO-1 gathers them).
    pub fn full_state(
        &self,
        ops: &Ops,
        dp: &dyn Communicator,
        params: &ParamStore,
        layout: &FlatLayout,
    ) -> Result<AdamWState> {
        match self {
            ShardedOptimizer::Replicated(adam) => Ok(adam.state().clone()),
            ShardedOptimizer::PhaseOnly => Err(no_state()),
            ShardedOptimizer::Zero1(z) => {
                let gather = |piece: &Tensor| -> Result<Tensor> {
                    let parts = dp.all_gather(piece)?;
                    let refs: Vec<&Tensor> = parts.iter().collect();
                    Ok(ops.concat(&refs, 0)?)
                };
                let (m, v) = (gather(&z.m)?, gather(&z.v)?);
                let unflatten = |flat: &Tensor| -> Result<ParamStore> {
                    let mut store = ParamStore::new();
                    for (i, name) in params.names().iter().enumerate() {
                        store.insert(name, ops.contiguous(&layout.view(flat, i)?)?)?;
                    }
                    Ok(store)
                };
                Ok(AdamWState {
                    step: z.step,
                    m: unflatten(&m)?,
                    v: unflatten(&v)?,
                })
            }
        }
    }

    /// The AdamW moments `(m, v)` this rank keeps of local parameter `i`: the whole
    /// parameter's (replicated), or the part of its flat range in this rank's ZeRO-1 piece
    /// (`None` when the piece does not reach it, or on a phase runtime, which keeps none).
    pub fn moments_of(&self, layout: &FlatLayout, i: usize) -> Result<Option<(Tensor, Tensor)>> {
        match self {
            ShardedOptimizer::PhaseOnly => Ok(None),
            ShardedOptimizer::Replicated(adam) => {
                let state = adam.state();
                Ok(Some((
                    state.m.tensors()[i].clone(),
                    state.v.tensors()[i].clone(),
                )))
            }
            ShardedOptimizer::Zero1(z) => {
                let segment = &layout.offsets[i];
                let (start, end) = (
                    segment.start.max(z.range.start),
                    segment.end.min(z.range.end),
                );
                if start >= end {
                    return Ok(None);
                }
                let part = |t: &Tensor| t.narrow(0, start - z.range.start, end - start);
                Ok(Some((part(&z.m)?, part(&z.v)?)))
            }
        }
    }

    /// Continue from the moments of every local parameter (this rank keeps its piece).
    pub fn restore(
        &mut self,
        ops: &Ops,
        state: AdamWState,
        params: &ParamStore,
        layout: &FlatLayout,
    ) -> Result<()> {
        match self {
            ShardedOptimizer::Replicated(adam) => adam.restore(state, params),
            ShardedOptimizer::PhaseOnly => Err(no_state()),
            ShardedOptimizer::Zero1(z) => {
                state.m.check_matches(params, "optimizer first moment")?;
                state.v.check_matches(params, "optimizer second moment")?;
                let piece = |store: &ParamStore| -> Result<Tensor> {
                    let flat = flatten(ops, store, layout)?;
                    Ok(ops.contiguous(&flat.narrow(0, z.range.start, z.range.len())?)?)
                };
                z.m = piece(&state.m)?;
                z.v = piece(&state.v)?;
                z.master = piece(params)?;
                z.step = state.step;
                Ok(())
            }
        }
    }
}

impl Zero1 {
    fn step(
        &mut self,
        ops: &Ops,
        dp: &dyn Communicator,
        params: &ParamStore,
        layout: &FlatLayout,
        grad: &Tensor,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = &self.config;
        for (i, segment) in layout.offsets.iter().enumerate() {
            let start = segment.start.max(self.range.start);
            let end = segment.end.min(self.range.end);
            if start >= end {
                continue;
            }
            let local = start - self.range.start;
            let view = |t: &Tensor| t.narrow(0, local, end - start);
            let hp = AdamWStep {
                lr: lr as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                weight_decay: c.decay_for(&layout.dims[i]) as f32,
                step: self.step,
            };
            ops.adamw(
                &view(&self.master)?,
                &view(grad)?,
                &view(&self.m)?,
                &view(&self.v)?,
                hp,
            )?;
        }
        let pieces = dp.all_gather(&self.master)?;
        let refs: Vec<&Tensor> = pieces.iter().collect();
        let flat = ops.concat(&refs, 0)?;
        for (i, param) in params.tensors().iter().enumerate() {
            ops.copy_into(&layout.view(&flat, i)?, param)?;
        }
        Ok(())
    }
}

/// The local parameters (or moments) as one flat f32 tensor.
pub(crate) fn flatten(ops: &Ops, store: &ParamStore, layout: &FlatLayout) -> Result<Tensor> {
    let flat = ops.alloc(DType::F32, &[layout.len])?;
    for (i, t) in store.tensors().iter().enumerate() {
        ops.copy_into(t, &layout.view(&flat, i)?)?;
    }
    Ok(flat)
}
