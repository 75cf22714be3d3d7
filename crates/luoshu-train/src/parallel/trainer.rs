//! One rank of a distributed training run: builds its shard's graphs, runs its share of the
//! micro-batches (data parallel round robin; 1F1B through the pipeline stages; tensor-,
//! sequence- and context-parallel collectives inside the graphs, each context-parallel
//! rank feeding its two chunks of every row), reduces gradients, clips by the global norm
//! and updates once per step — the same step as on one device.

use super::deal::{deal_by_work, micro_batch_work};
use super::micro::{
    context_bindings, keep_context_chunks, micro_feeds, pad_for_tp, pad_multiple, row_layout,
};
use super::optimizer::{FlatLayout, ShardedOptimizer};
use super::overlap::{
    gradient_buckets, reduce_buckets, thread_panicked, BucketLauncher, BucketReduction,
};
use crate::placement::stage_layers;
use crate::trainer::{loss_scale, StepStats};
use crate::{Error, Result, TrainConfig};
use luoshu_backend::ops::BinaryOp;
use luoshu_backend::{Backend, Ops};
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_data::{GlobalBatch, MicroBatch};
use luoshu_dist::{one_f_one_b, CommCollectives, Mesh, PipelineAction};
use luoshu_graph::passes::{run_pipeline, DEFAULT_PIPELINE};
use luoshu_graph::{compile, CompileOptions, Graph, Plan};
use luoshu_model::llama::{
    build_stage_forward_graph, build_stage_train_graph, RowLayout, CP_GROUP, HIDDEN_GRAD,
    HIDDEN_IN, TP_GROUP,
};
use luoshu_model::{init_params, rope_tables, ModelConfig, ParamStore};
use luoshu_model::{ModelShard, ParamRole, ParamSpec, ShardedParam};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// Which graph a cached plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PlanKind {
    /// Loss (last stage) and gradients.
    Train,
    /// Loss (last stage) or output hidden rows.
    Forward,
}

/// A deliberate bug for the equivalence harness's own tests
/// ([`ParallelTrainer::inject_gradient_fault`]): the parameter gradients of the
/// micro-batches of bucket `bucket` of every global batch (every bucket when `None`) are
/// multiplied by `factor` as they are accumulated; the loss is left alone.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientFault {
    pub bucket: Option<usize>,
    pub factor: f32,
}

/// One rank's trainer. Every rank of the mesh calls the same methods in the same order.
pub struct ParallelTrainer {
    model: ModelConfig,
    config: TrainConfig,
    backend: Arc<dyn Backend>,
    mesh: Mesh,
    shard: ModelShard,
    /// Layers of every pipeline stage.
    stage_layers: Vec<Range<usize>>,
    params: Vec<ShardedParam>,
    store: ParamStore,
    layout: FlatLayout,
    optimizer: ShardedOptimizer,
    /// Ranks of the first and last stage holding the tied embedding (pipeline only).
    tied_embedding: Option<Arc<dyn Communicator>>,
    /// Optimized stage graphs per kind and row layout, built on first use (every rank
    /// meets the same micro-batches, so every rank builds the same ones).
    graphs: HashMap<(PlanKind, RowLayout), Graph>,
    collectives: Arc<CommCollectives>,
    plans: HashMap<PlanKey, Plan>,
    rope_cos: Tensor,
    rope_sin: Tensor,
    step: u64,
    /// Test only: see [`GradientFault`].
    gradient_fault: Option<GradientFault>,
}

impl ParallelTrainer {
    /// Collective over `mesh.world`: this rank's trainer, with parameters initialized from
    /// `seed` exactly as on one device, then sharded.
    pub fn new(
        model: ModelConfig,
        config: TrainConfig,
        backend: Arc<dyn Backend>,
        mesh: Mesh,
        seed: u64,
    ) -> Result<Self> {
        Self::build(model, config, backend, mesh, Some(seed))
    }

    /// [`Self::new`] for a runtime that only runs hot-switching phases: it computes and
    /// sums gradients but never updates, so it allocates no optimizer state, and its
    /// parameters are zeros until the update runtime's are switched in.
    pub fn for_phases(
        model: ModelConfig,
        config: TrainConfig,
        backend: Arc<dyn Backend>,
        mesh: Mesh,
    ) -> Result<Self> {
        Self::build(model, config, backend, mesh, None)
    }

    fn build(
        model: ModelConfig,
        config: TrainConfig,
        backend: Arc<dyn Backend>,
        mesh: Mesh,
        // The seed of an updating trainer's parameters; `None` for a phase runtime.
        seed: Option<u64>,
    ) -> Result<Self> {
        model.validate()?;
        config.validate()?;
        let strategy = mesh.strategy;
        let stage_layers = stage_layers(&model, strategy.pp)?;
        let shard = ModelShard::new(
            &model,
            strategy.tp,
            mesh.tp_rank,
            strategy.pp,
            mesh.pp_rank,
            stage_layers[mesh.pp_rank].clone(),
        )?
        .with_context_parallel(strategy.cp, mesh.cp_rank)?;
        let params = shard.params(&model);
        let ops = Ops::new(backend.as_ref());
        let mut store = ParamStore::new();
        if let Some(seed) = seed {
            let full = init_params(&model, seed)?;
            for p in &params {
                store.insert(&p.local.name, local_piece(&ops, &shard, p, &full)?)?;
            }
        } else {
            // The update runtime's parameters are switched in before every phase, so a
            // phase runtime only allocates its pieces: no transient whole model per rank.
            for p in &params {
                store.insert(&p.local.name, ops.full(0.0, DType::F32, &p.local.shape)?)?;
            }
        }
        let layout = FlatLayout::of(&store);
        let zero1 = strategy.zero1.then_some(mesh.dp.as_ref());
        let optimizer = match seed {
            Some(_) => {
                ShardedOptimizer::new(&ops, config.optimizer.clone(), &store, &layout, zero1)?
            }
            None => ShardedOptimizer::PhaseOnly,
        };
        let tied_embedding = if model.tie_embeddings && strategy.pp > 1 {
            let ends = shard.is_first_stage() || shard.is_last_stage();
            Some(mesh.pp.split(usize::from(!ends), mesh.pp_rank)?)
        } else {
            None
        };
        let groups = HashMap::from([
            (TP_GROUP.to_string(), mesh.tp.clone()),
            (CP_GROUP.to_string(), mesh.cp.clone()),
        ]);
        let collectives = Arc::new(CommCollectives::new(groups, backend.clone()));
        // Tensor and context parallelism pad sequences up to a multiple of `pad_multiple`.
        let table_len = model.max_seq_len + pad_multiple(strategy.tp, strategy.cp);
        let (rope_cos, rope_sin) = rope_tables(model.head_dim(), model.rope_theta, 0, table_len)?;
        Ok(ParallelTrainer {
            model,
            config,
            backend,
            mesh,
            shard,
            stage_layers,
            params,
            store,
            layout,
            optimizer,
            tied_embedding,
            graphs: HashMap::new(),
            collectives,
            plans: HashMap::new(),
            rope_cos,
            rope_sin,
            step: 0,
            gradient_fault: None,
        })
    }

    /// The ranks of this trainer's strategy and this rank's coordinates among them.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The part of the model this rank builds: its tensor-parallel slice and pipeline stage.
    pub fn shard(&self) -> &ModelShard {
        &self.shard
    }

    /// The whole model's configuration.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model
    }

    /// The layers of every pipeline stage.
    pub fn stage_layers(&self) -> &[Range<usize>] {
        &self.stage_layers
    }

    /// This rank's local parameters (shards), by their full names.
    pub fn local_params(&self) -> &ParamStore {
        &self.store
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Test only: break the gradients on purpose (see [`GradientFault`]), so the
    /// equivalence harness can show it catches a wrong gradient. Never use in training.
    #[doc(hidden)]
    pub fn inject_gradient_fault(&mut self, fault: Option<GradientFault>) {
        self.gradient_fault = fault;
    }

    pub(super) fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    pub(super) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub(super) fn sharded_params(&self) -> &[ShardedParam] {
        &self.params
    }

    pub(super) fn layout(&self) -> &FlatLayout {
        &self.layout
    }

    pub(super) fn optimizer(&self) -> &ShardedOptimizer {
        &self.optimizer
    }

    pub(super) fn optimizer_mut(&mut self) -> &mut ShardedOptimizer {
        &mut self.optimizer
    }

    /// The pipeline stage that owns parameter `spec` in checkpoints: the stage of its
    /// layer; the first stage for the embedding (the last stage also holds it when tied);
    /// the last stage for the final norm and the head.
    pub(super) fn owner_stage(&self, spec: &ParamSpec) -> usize {
        match (spec.layer, spec.role) {
            (Some(layer), _) => self
                .stage_layers
                .iter()
                .position(|r| r.contains(&layer))
                .unwrap_or(0),
            (None, ParamRole::Embedding) => 0,
            (None, _) => self.stage_layers.len() - 1,
        }
    }

    /// One optimizer step on `batch` (collective; every rank passes the same batch).
    pub fn train_step(&mut self, batch: &GlobalBatch) -> Result<StepStats> {
        let start = Instant::now();
        let (local_loss, grad) = self.reduced_gradients(batch)?;
        let (grad_norm, lr) = self.apply_update(&grad)?;
        let stats = StepStats {
            loss: self.reported_loss(local_loss)?,
            grad_norm,
            lr,
            tokens: batch.target_tokens,
            seconds: start.elapsed().as_secs_f64(),
        };
        stats.trace(self.step());
        Ok(stats)
    }

    /// This rank's part of the loss of `batch` (scaled as [`Self::train_step`] scales it)
    /// and its share of the gradient summed over the mesh, before clipping: the gradients
    /// of its micro-batches accumulated, then reduced ([`Self::reduce_for_update`]), the
    /// reduction overlapped with the last backward when [`Self::overlaps_reduction`]
    /// (collective; every rank passes the same batch).
    pub fn reduced_gradients(&mut self, batch: &GlobalBatch) -> Result<(f64, Tensor)> {
        let scale = loss_scale(batch)?;
        let grads = self.zero_gradients()?;
        if self.overlaps_reduction() {
            return self.accumulate_and_reduce(batch, scale, &grads);
        }
        let loss = self.accumulate_batch(batch, scale, &grads)?;
        Ok((loss, self.reduce_for_update(&grads)?))
    }

    /// A zeroed flat gradient accumulator of this rank's local parameters.
    pub fn zero_gradients(&self) -> Result<Tensor> {
        let ops = Ops::new(self.backend.as_ref());
        Ok(ops.full(0.0, DType::F32, &[self.layout.len])?)
    }

    /// Adds the gradients of this rank's share of `batch` (loss scaled by `scale`) into
    /// `grads`; returns this rank's part of the scaled loss (collective over the mesh).
    pub fn accumulate_batch(
        &mut self,
        batch: &GlobalBatch,
        scale: f32,
        grads: &Tensor,
    ) -> Result<f64> {
        let mine = self.my_micro_batches(batch)?;
        if self.mesh.strategy.pp == 1 {
            let mut loss = 0.0;
            for (bucket, micro) in &mine {
                let outputs = self.run(PlanKind::Train, micro, scale, None, None)?;
                loss += scalar_value(&outputs[0])?;
                self.accumulate(grads, &outputs[1..], *bucket)?;
            }
            Ok(loss)
        } else {
            self.pipeline_step(&mine, scale, grads)
        }
    }

    /// Sums `grads` over every rank that computed a part of them (tensor-parallel
    /// replicas, the tied embedding's two stages, data and context parallelism): afterwards every
    /// holder of a parameter holds its whole gradient. Used by hot switching between
    /// phases; ZeRO-1 applies only in [`Self::reduce_for_update`].
    pub fn reduce_gradients(&self, grads: &Tensor) -> Result<()> {
        self.sync_replicated_grads(grads)?;
        if self.mesh.strategy.replicas() > 1 {
            self.mesh
                .replicas
                .all_reduce_in_place(grads, ReduceOp::Sum)?;
        }
        Ok(())
    }

    /// Sums `grads` into this rank's share of the update: the whole flat gradient, or its
    /// ZeRO-1 piece ([`Self::gradient_share_range`]; ZeRO-1 never runs with context
    /// parallelism, so its replicas are the data-parallel group).
    pub fn reduce_for_update(&self, grads: &Tensor) -> Result<Tensor> {
        self.sync_replicated_grads(grads)?;
        self.optimizer
            .reduce_gradients(self.mesh.replicas.as_ref(), grads, &self.layout)
    }

    /// The flat range of the local parameters [`Self::reduce_for_update`] returns.
    pub fn gradient_share_range(&self) -> std::ops::Range<usize> {
        self.optimizer.grad_range(&self.layout)
    }

    /// Clips this rank's share `grad` of the summed gradient by the global norm and
    /// updates the parameters; returns the norm before clipping and the learning rate.
    pub fn apply_update(&mut self, grad: &Tensor) -> Result<(f64, f64)> {
        let backend = self.backend.clone();
        let ops = Ops::new(backend.as_ref());
        let grad_norm = self.clip(grad)?;
        let lr = self.config.schedule.lr_at(self.step);
        let dp = self.mesh.dp.clone();
        self.optimizer
            .step(&ops, dp.as_ref(), &self.store, &self.layout, grad, lr)?;
        self.step += 1;
        Ok((grad_norm, lr))
    }

    /// The loss summed over the world from each rank's part (only the last stage's first
    /// tensor-parallel rank reports, so nothing is counted twice).
    pub fn reported_loss(&self, local_loss: f64) -> Result<f64> {
        let reports_loss = self.shard.is_last_stage() && self.mesh.tp_rank == 0;
        self.world_sum(if reports_loss { local_loss } else { 0.0 })
    }

    /// Mean loss per target token over `batches` (collective, no update).
    pub fn evaluate(&mut self, batches: &[GlobalBatch]) -> Result<f64> {
        let mut total = 0.0;
        let mut tokens = 0;
        for batch in batches {
            tokens += batch.target_tokens;
            for (_, micro) in self.my_micro_batches(batch)? {
                if let Some(loss) = self.forward(&micro, 1.0)? {
                    total += loss;
                }
            }
        }
        if tokens == 0 {
            return Err(Error::Config(
                "the evaluation batches hold no target token".into(),
            ));
        }
        let reports_loss = self.shard.is_last_stage() && self.mesh.tp_rank == 0;
        Ok(self.world_sum(if reports_loss { total } else { 0.0 })? / tokens as f64)
    }

    /// This data-parallel rank's micro-batches (dealt balanced by training work, in batch
    /// order; every context-parallel rank of a data rank gets the same ones), padded for
    /// tensor and context parallelism, each with the index of its bucket.
    fn my_micro_batches(&self, batch: &GlobalBatch) -> Result<Vec<(usize, MicroBatch)>> {
        let all: Vec<(usize, &MicroBatch)> = batch
            .buckets
            .iter()
            .enumerate()
            .flat_map(|(b, bucket)| bucket.micro_batches.iter().map(move |m| (b, m)))
            .collect();
        let work: Vec<f64> = all
            .iter()
            .map(|(_, m)| micro_batch_work(&self.model, m))
            .collect();
        let owner = deal_by_work(&work, self.mesh.strategy.dp);
        let multiple = pad_multiple(self.mesh.strategy.tp, self.mesh.strategy.cp);
        all.into_iter()
            .zip(owner)
            .filter(|(_, rank)| *rank == self.mesh.dp_rank)
            .map(|((b, m), _)| Ok((b, pad_for_tp(m, multiple)?)))
            .collect()
    }

    /// Add the parameter gradients of a plan run on a micro-batch of bucket `bucket` into
    /// the flat accumulator.
    fn accumulate(&self, flat: &Tensor, grads: &[Tensor], bucket: usize) -> Result<()> {
        for (i, g) in grads.iter().take(self.params.len()).enumerate() {
            self.accumulate_param(flat, i, g, bucket)?;
        }
        Ok(())
    }

    /// Add the gradient `g` of parameter `i` from a micro-batch of bucket `bucket` into
    /// the flat accumulator.
    fn accumulate_param(&self, flat: &Tensor, i: usize, g: &Tensor, bucket: usize) -> Result<()> {
        let ops = Ops::new(self.backend.as_ref());
        let fault = self
            .gradient_fault
            .filter(|f| f.bucket.is_none() || f.bucket == Some(bucket));
        let acc = self.layout.view(flat, i)?;
        match fault {
            Some(f) => {
                let factor = ops.full(f64::from(f.factor), g.dtype(), &[])?;
                let scaled = ops.binary(BinaryOp::Mul, g, &factor)?;
                ops.binary_into(BinaryOp::Add, &acc, &scaled, &acc)?;
            }
            None => ops.binary_into(BinaryOp::Add, &acc, g, &acc)?,
        }
        Ok(())
    }

    /// Whether [`Self::train_step`] overlaps the gradient reduction with backward: when
    /// turned on ([`TrainConfig::overlap_reduction`]) for more than one replica and without
    /// tensor, pipeline or context parallelism, whose collectives inside the plans or on
    /// the gradients before their reduction would share the backward window (and, on MPI,
    /// its process-wide lock) with the reduction thread. Then nothing but that thread uses
    /// a communicator until the reduction is done.
    pub fn overlaps_reduction(&self) -> bool {
        let strategy = self.mesh.strategy;
        self.config.overlap_reduction
            && self.mesh.replicas.size() > 1
            && strategy.tp == 1
            && strategy.pp == 1
            && strategy.cp == 1
    }

    /// [`Self::accumulate_batch`] then [`Self::reduce_for_update`], overlapped: the
    /// earlier micro-batches accumulate as usual; during the last one's backward each
    /// bucket of gradients ([`gradient_buckets`]) is reduced over the replicas on a
    /// communication thread as soon as it is complete. Same bits as the two calls.
    fn accumulate_and_reduce(
        &mut self,
        batch: &GlobalBatch,
        scale: f32,
        grads: &Tensor,
    ) -> Result<(f64, Tensor)> {
        let mut mine = self.my_micro_batches(batch)?;
        let last = mine.pop();
        let mut loss = 0.0;
        for (bucket, micro) in &mine {
            let outputs = self.run(PlanKind::Train, micro, scale, None, None)?;
            loss += scalar_value(&outputs[0])?;
            self.accumulate(grads, &outputs[1..], *bucket)?;
        }
        let reduction = match self.optimizer {
            ShardedOptimizer::Zero1(_) => {
                let share = self.optimizer.grad_range(&self.layout).len();
                let ops = Ops::new(self.backend.as_ref());
                BucketReduction::ReduceScatter {
                    share: ops.alloc(DType::F32, &[share])?,
                }
            }
            _ => BucketReduction::AllReduce,
        };
        let mut last_run = match &last {
            Some((bucket, micro)) => {
                let (key, feeds) = self.prepare_run(PlanKind::Train, micro, scale, None, None)?;
                let plan = self.plans.remove(&key).ok_or_else(plan_vanished)?;
                Some((*bucket, key, plan, feeds))
            }
            None => None,
        };
        let buckets = gradient_buckets(&self.layout, self.config.reduce_bucket_bytes);
        let this = &*self;
        let (backend, group) = (this.backend.as_ref(), this.mesh.replicas.as_ref());
        let last_loss = std::thread::scope(|scope| -> Result<f64> {
            let (sender, receiver) = mpsc::channel();
            let reducer = scope
                .spawn(|| reduce_buckets(&Ops::new(backend), group, grads, &reduction, receiver));
            let mut launcher = BucketLauncher::new(&buckets, &this.layout, sender);
            let mut last_loss = 0.0;
            let streamed = match &mut last_run {
                Some((bucket, _, plan, feeds)) => plan.run_streaming(feeds, |k, output| {
                    match k.checked_sub(1) {
                        None => last_loss = scalar_value(output)?,
                        Some(i) if i < this.params.len() => {
                            this.accumulate_param(grads, i, output, *bucket)?;
                            launcher.accumulated(i);
                        }
                        Some(_) => {}
                    }
                    Ok::<_, Error>(())
                }),
                None => Ok(()),
            };
            // Launching the rest (or dropping the launcher on an error) closes the channel,
            // so the reducer returns once it has reduced what it was given.
            match streamed {
                Ok(()) => launcher.launch_rest(),
                Err(_) => drop(launcher),
            }
            let reduced = reducer.join().map_err(|_| thread_panicked())?;
            streamed?;
            reduced?;
            Ok(last_loss)
        });
        if let Some((_, key, plan, _)) = last_run {
            self.plans.insert(key, plan);
        }
        loss += last_loss?;
        let grad = match reduction {
            BucketReduction::AllReduce => grads.clone(),
            BucketReduction::ReduceScatter { share } => share,
        };
        Ok((loss, grad))
    }

    /// Forward pass of one micro-batch through the pipeline; the loss on the last stage.
    fn forward(&mut self, micro: &MicroBatch, scale: f32) -> Result<Option<f64>> {
        let pp = self.mesh.pp.clone();
        let hidden = if self.shard.is_first_stage() {
            None
        } else {
            Some(pp.recv(self.mesh.pp_rank - 1, FORWARD_TAG)?)
        };
        let outputs = self.run(PlanKind::Forward, micro, scale, hidden, None)?;
        if self.shard.is_last_stage() {
            return Ok(Some(scalar_value(&outputs[0])?));
        }
        pp.send(&outputs[0], self.mesh.pp_rank + 1, FORWARD_TAG)?;
        Ok(None)
    }

    /// 1F1B over this stage's micro-batches; returns the summed loss (last stage).
    /// A stage's backward recomputes its forward pass from the stage input it kept, so only
    /// stage inputs stay alive between a micro-batch's forward and backward.
    fn pipeline_step(
        &mut self,
        mine: &[(usize, MicroBatch)],
        scale: f32,
        grads: &Tensor,
    ) -> Result<f64> {
        let pp = self.mesh.pp.clone();
        let (stage, stages) = (self.mesh.pp_rank, self.mesh.strategy.pp);
        let mut inputs: HashMap<usize, Tensor> = HashMap::new();
        let mut loss = 0.0;
        for action in one_f_one_b(stages, stage, mine.len()) {
            match action {
                PipelineAction::Forward(i) if self.shard.is_last_stage() => {
                    // The last stage runs forward and backward together in its backward.
                    inputs.insert(i, pp.recv(stage - 1, FORWARD_TAG)?);
                }
                PipelineAction::Forward(i) => {
                    let hidden = if self.shard.is_first_stage() {
                        None
                    } else {
                        let h = pp.recv(stage - 1, FORWARD_TAG)?;
                        inputs.insert(i, h.clone());
                        Some(h)
                    };
                    let out = self.run(PlanKind::Forward, &mine[i].1, scale, hidden, None)?;
                    pp.send(&out[0], stage + 1, FORWARD_TAG)?;
                }
                PipelineAction::Backward(i) => {
                    let upstream = if self.shard.is_last_stage() {
                        None
                    } else {
                        Some(pp.recv(stage + 1, BACKWARD_TAG)?)
                    };
                    let hidden = inputs.remove(&i);
                    let (bucket, micro) = &mine[i];
                    let mut outputs = self.run(PlanKind::Train, micro, scale, hidden, upstream)?;
                    if self.shard.is_last_stage() {
                        loss += scalar_value(&outputs.remove(0))?;
                    }
                    self.accumulate(grads, &outputs, *bucket)?;
                    if !self.shard.is_first_stage() {
                        let input_grad = outputs.last().ok_or_else(|| {
                            Error::State("the stage plan returned no input gradient".into())
                        })?;
                        pp.send(input_grad, stage - 1, BACKWARD_TAG)?;
                    }
                }
            }
        }
        Ok(loss)
    }

    /// Sum the gradients that are partial although their parameter is not sharded: norm
    /// gains under sequence parallelism (each rank saw its rows only) and the tied
    /// embedding on the first and last pipeline stages.
    fn sync_replicated_grads(&self, grads: &Tensor) -> Result<()> {
        let ops = Ops::new(self.backend.as_ref());
        for (i, p) in self.params.iter().enumerate() {
            let group = if p.full.role == ParamRole::Embedding && self.tied_embedding.is_some() {
                self.tied_embedding.as_ref()
            } else if p.split.is_none() && self.mesh.strategy.tp > 1 {
                Some(&self.mesh.tp)
            } else {
                None
            };
            if let Some(group) = group {
                let view = self.layout.view(grads, i)?;
                let sum = group.all_reduce(&view, ReduceOp::Sum)?;
                ops.copy_into(&sum, &view)?;
            }
        }
        Ok(())
    }

    /// The global gradient norm (each element counted once over the mesh); clips `grad`
    /// (this rank's share, flat range [`ShardedOptimizer::grad_range`]) in place.
    fn clip(&self, grad: &Tensor) -> Result<f64> {
        let ops = Ops::new(self.backend.as_ref());
        let range = self.optimizer.grad_range(&self.layout);
        // Plain data (and context) parallelism replicates the reduced gradient: replica 0
        // counts it.
        let first_replica = self.mesh.dp_rank == 0 && self.mesh.cp_rank == 0;
        let counts_dp = self.mesh.strategy.zero1 || first_replica;
        let mut squares = 0.0;
        for (i, p) in self.params.iter().enumerate() {
            let replica_of_tp = p.split.is_none() && self.mesh.tp_rank != 0;
            let tied_copy = p.full.role == ParamRole::Embedding && !self.shard.is_first_stage();
            let segment = &self.layout.offsets[i];
            let (start, end) = (segment.start.max(range.start), segment.end.min(range.end));
            if !counts_dp || replica_of_tp || tied_copy || start >= end {
                continue;
            }
            let view = grad.narrow(0, start - range.start, end - start)?;
            squares += ops.sum_squares(&[&view])?;
        }
        let norm = self.world_sum(squares)?.sqrt();
        let max_norm = self.config.grad_clip;
        if max_norm > 0.0 && norm > max_norm {
            let factor = ops.full(max_norm / norm, grad.dtype(), &[])?;
            ops.binary_into(BinaryOp::Mul, grad, &factor, grad)?;
        }
        Ok(norm)
    }

    /// `value` summed over every rank (f64, rank order).
    fn world_sum(&self, value: f64) -> Result<f64> {
        let summed = self
            .mesh
            .world
            .all_reduce(&Tensor::scalar(value), ReduceOp::Sum)?;
        scalar_value(&summed)
    }

    /// This stage's optimized graph of `kind` for rows laid out as `layout`.
    fn build_graph(&self, kind: PlanKind, layout: RowLayout) -> Result<Graph> {
        let (model, precision, shard) = (&self.model, self.config.precision, &self.shard);
        let graph = match kind {
            PlanKind::Train => build_stage_train_graph(model, precision, shard, layout)?.graph,
            PlanKind::Forward => build_stage_forward_graph(model, precision, shard, layout)?,
        };
        Ok(run_pipeline(&graph, DEFAULT_PIPELINE)?.0)
    }

    /// Run the plan of `kind` on `micro` with the stage's extra inputs.
    fn run(
        &mut self,
        kind: PlanKind,
        micro: &MicroBatch,
        scale: f32,
        hidden: Option<Tensor>,
        upstream: Option<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let (key, feeds) = self.prepare_run(kind, micro, scale, hidden, upstream)?;
        let plan = self.plans.get_mut(&key).ok_or_else(plan_vanished)?;
        Ok(plan.run(&feeds)?)
    }

    /// The key of the (compiled on first use) plan of `kind` for `micro`, and its feeds
    /// with the stage's extra inputs.
    fn prepare_run(
        &mut self,
        kind: PlanKind,
        micro: &MicroBatch,
        scale: f32,
        hidden: Option<Tensor>,
        upstream: Option<Tensor>,
    ) -> Result<(PlanKey, HashMap<String, Tensor>)> {
        let (rows, seq) = (micro.rows, micro.seq_len);
        let (tp, cp) = (self.mesh.strategy.tp, self.mesh.strategy.cp);
        if seq == 0 || seq > self.model.max_seq_len + pad_multiple(tp, cp) {
            return Err(Error::Config(format!(
                "micro-batch sequence length {seq} is outside 1..={} (the model's max_seq_len)",
                self.model.max_seq_len
            )));
        }
        let layout = row_layout(micro);
        let key = (kind, layout, rows, seq);
        if !self.plans.contains_key(&key) {
            if !self.graphs.contains_key(&(kind, layout)) {
                let graph = self.build_graph(kind, layout)?;
                self.graphs.insert((kind, layout), graph);
            }
            let graph = self
                .graphs
                .get(&(kind, layout))
                .ok_or_else(|| Error::State("built graph vanished from the cache".into()))?;
            let collectives: Arc<dyn luoshu_graph::Collectives> = self.collectives.clone();
            let options = CompileOptions {
                collectives: Some(collectives),
                ..CompileOptions::default()
            };
            let plan = compile(
                graph,
                &context_bindings(rows, seq, tp, cp),
                self.backend.clone(),
                options,
            )?;
            self.plans.insert(key, plan);
        }
        let rope = (&self.rope_cos, &self.rope_sin);
        let mut feeds = micro_feeds(&self.store, micro, rope, scale, layout)?;
        if cp > 1 {
            keep_context_chunks(&mut feeds, micro, rope, (cp, self.mesh.cp_rank))?;
        }
        if let Some(h) = hidden {
            feeds.insert(HIDDEN_IN.into(), h);
        }
        if let Some(g) = upstream {
            feeds.insert(HIDDEN_GRAD.into(), g);
        }
        Ok((key, feeds))
    }
}

/// A compiled plan's cache key: graph kind, row layout, rows, sequence length.
type PlanKey = (PlanKind, RowLayout, usize, usize);

fn plan_vanished() -> Error {
    Error::State("compiled plan vanished from the cache".into())
}

/// Message tags of pipeline traffic: activations forward, their gradients backward.
const FORWARD_TAG: u64 = 1;
const BACKWARD_TAG: u64 = 2;

/// This rank's piece of the full parameter `p`, always a fresh copy (the optimizer updates
/// it in place, and every rank must own its own).
pub(super) fn local_piece(
    ops: &Ops,
    shard: &ModelShard,
    p: &ShardedParam,
    full: &ParamStore,
) -> Result<Tensor> {
    let t = full
        .get(&p.full.name)
        .ok_or_else(|| Error::State(format!("the full parameters have no `{}`", p.full.name)))?;
    let piece = match p.split {
        None => t.clone(),
        Some(dim) => {
            let r = shard.tp_range(p.full.shape[dim]);
            t.narrow(dim, r.start, r.len())?
        }
    };
    fresh_copy(ops, &piece)
}

/// `t` copied into new storage.
pub(super) fn fresh_copy(ops: &Ops, t: &Tensor) -> Result<Tensor> {
    let copy = ops.alloc(t.dtype(), t.dims())?;
    ops.copy_into(t, &copy)?;
    Ok(copy)
}

pub(super) fn scalar_value(t: &Tensor) -> Result<f64> {
    t.to_f64_vec()
        .first()
        .copied()
        .ok_or_else(|| Error::State("expected a scalar, got an empty tensor".into()))
}
