//! Checkpoints of a distributed run in one canonical, unsharded layout (the single-device
//! [`TrainerState`]), so a run can resume under any strategy.

use super::trainer::{fresh_copy, local_piece, ParallelTrainer};
use crate::{AdamWState, Error, Result, TrainerState};
use luoshu_backend::Ops;
use luoshu_model::{param_specs, ParamSpec, ParamStore};
use luoshu_tensor::Tensor;

/// What one rank holds of the model state, per parameter in [`param_specs`] order, laid
/// out as [`crate::placement::strategy_placements`] places it (`pieces[t]` holds the
/// pieces of `placement[t].pieces_of(rank)`): the input and output of a hot switch.
#[derive(Debug, Clone)]
pub struct StatePieces {
    /// The parameters' pieces this rank holds.
    pub params: Vec<Vec<Tensor>>,
    /// The pieces of AdamW's first moments this rank holds, laid out by the optimizer
    /// placement (like the parameters, or ZeRO-1's flat shards).
    pub adam_m: Vec<Vec<Tensor>>,
    /// The pieces of AdamW's second moments this rank holds, laid out like `adam_m`.
    pub adam_v: Vec<Vec<Tensor>>,
}

impl ParallelTrainer {
    /// This rank's pieces of the parameters and AdamW moments (views of the live tensors,
    /// not copies).
    pub fn state_pieces(&self) -> Result<StatePieces> {
        let specs = param_specs(self.model_config());
        let empty = || -> Vec<Vec<Tensor>> { vec![Vec::new(); specs.len()] };
        let (mut params, mut adam_m, mut adam_v) = (empty(), empty(), empty());
        for (i, p) in self.sharded_params().iter().enumerate() {
            let index = specs.iter().position(|s| *s == p.full).ok_or_else(|| {
                Error::State(format!("`{}` is not a parameter of the model", p.full.name))
            })?;
            params[index].push(self.local_params().tensors()[i].clone());
            if let Some((m, v)) = self.optimizer().moments_of(self.layout(), i)? {
                adam_m[index].push(m);
                adam_v[index].push(v);
            }
        }
        Ok(StatePieces {
            params,
            adam_m,
            adam_v,
        })
    }

    /// Views of a gradient buffer laid out as this strategy's placements place gradients:
    /// `buffer` holds elements `range` of the flat local parameters. Each parameter is a
    /// view with its local dims (`flat_pieces` false, `range` the whole layout: the
    /// accumulator), or the 1-D part of it inside `range` (`flat_pieces` true: a ZeRO-1
    /// share of the summed gradient).
    pub fn gradient_pieces(
        &self,
        buffer: &Tensor,
        range: std::ops::Range<usize>,
        flat_pieces: bool,
    ) -> Result<Vec<Vec<Tensor>>> {
        let specs = param_specs(self.model_config());
        let mut pieces = vec![Vec::new(); specs.len()];
        let layout = self.layout();
        for (i, p) in self.sharded_params().iter().enumerate() {
            let index = specs.iter().position(|s| *s == p.full).ok_or_else(|| {
                Error::State(format!("`{}` is not a parameter of the model", p.full.name))
            })?;
            let segment = &layout.offsets[i];
            let (start, end) = (segment.start.max(range.start), segment.end.min(range.end));
            if start >= end {
                continue;
            }
            let part = buffer.narrow(0, start - range.start, end - start)?;
            pieces[index].push(if flat_pieces {
                part
            } else {
                part.reshape(layout.dims[i].as_slice())?
            });
        }
        Ok(pieces)
    }

    /// Collective: the whole model's parameters and moments on world rank 0 (`None` on the
    /// other ranks).
    pub fn gather_state(&self) -> Result<Option<TrainerState>> {
        let ops = Ops::new(self.backend().as_ref());
        let mesh = self.mesh();
        let adam = self.optimizer().full_state(
            &ops,
            mesh.dp.as_ref(),
            self.local_params(),
            self.layout(),
        )?;
        // Tensor-parallel pieces are gathered inside each stage, then the holder of each
        // parameter (data rank 0, tensor rank 0, the stage that owns it) sends it to rank 0.
        let mut mine = Vec::new();
        for (i, p) in self.sharded_params().iter().enumerate() {
            let whole = |store: &ParamStore| -> Result<Tensor> {
                let local = &store.tensors()[i];
                match p.split {
                    None => Ok(local.clone()),
                    Some(dim) => {
                        let parts = mesh.tp.all_gather(local)?;
                        let refs: Vec<&Tensor> = parts.iter().collect();
                        Ok(ops.concat(&refs, dim)?)
                    }
                }
            };
            let triple = [
                whole(self.local_params())?,
                whole(&adam.m)?,
                whole(&adam.v)?,
            ];
            mine.push((p.full.clone(), triple));
        }
        let specs = param_specs(self.model_config());
        let holder = |spec: &ParamSpec| mesh.rank_of(0, self.owner_stage(spec), 0);
        let rank = mesh.world.rank();
        for (spec, triple) in &mine {
            if holder(spec) == rank && rank != 0 {
                let index = specs.iter().position(|s| s == spec).ok_or_else(|| {
                    Error::State(format!("`{}` is not a parameter of the model", spec.name))
                })?;
                for (k, t) in triple.iter().enumerate() {
                    mesh.world.send(t, 0, (index * 3 + k) as u64)?;
                }
            }
        }
        if rank != 0 {
            return Ok(None);
        }
        let (mut params, mut m, mut v) = (ParamStore::new(), ParamStore::new(), ParamStore::new());
        for (index, spec) in specs.iter().enumerate() {
            let from = holder(spec);
            let triple = if from == 0 {
                let (_, t) = mine.iter().find(|(s, _)| s == spec).ok_or_else(|| {
                    Error::State(format!("rank 0 should hold parameter `{}`", spec.name))
                })?;
                t.clone()
            } else {
                let recv = |k: usize| mesh.world.recv(from, (index * 3 + k) as u64);
                [recv(0)?, recv(1)?, recv(2)?]
            };
            let [p, pm, pv] = triple;
            // Copies: the live tensors keep training after a checkpoint.
            params.insert(&spec.name, fresh_copy(&ops, &p)?)?;
            m.insert(&spec.name, fresh_copy(&ops, &pm)?)?;
            v.insert(&spec.name, fresh_copy(&ops, &pv)?)?;
        }
        Ok(Some(TrainerState {
            step: self.step(),
            params,
            adam_m: m,
            adam_v: v,
        }))
    }

    /// Continue from a whole-model state (every rank passes the same one and keeps its
    /// pieces).
    pub fn restore(&mut self, state: &TrainerState) -> Result<()> {
        let backend = self.backend().clone();
        let ops = Ops::new(backend.as_ref());
        let shard = self.shard().clone();
        let pieces = |store: &ParamStore| -> Result<ParamStore> {
            let mut local = ParamStore::new();
            for p in self.sharded_params() {
                local.insert(&p.full.name, local_piece(&ops, &shard, p, store)?)?;
            }
            Ok(local)
        };
        let params = pieces(&state.params)?;
        params.check_matches(self.local_params(), "saved parameters")?;
        let adam = AdamWState {
            step: state.step,
            m: pieces(&state.adam_m)?,
            v: pieces(&state.adam_v)?,
        };
        for (dst, src) in self.local_params().tensors().iter().zip(params.tensors()) {
            ops.copy_into(src, dst)?;
        }
        let layout = self.layout().clone();
        let store = self.local_params().clone();
        self.optimizer_mut().restore(&ops, adam, &store, &layout)?;
        self.set_step(state.step);
        Ok(())
    }
}
