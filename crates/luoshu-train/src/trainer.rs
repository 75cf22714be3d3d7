//! Single-device training: compiled plans per micro-batch shape, gradient accumulation over
//! the buckets of a global batch, clipping, and one AdamW update per step.

use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, AdamWState};
use crate::parallel::{micro_feeds, row_layout};
use crate::{Error, LrSchedule, Result};
use luoshu_backend::ops::BinaryOp;
use luoshu_backend::{Backend, Ops};
use luoshu_data::{GlobalBatch, MicroBatch};
use luoshu_graph::passes::{run_pipeline, DEFAULT_PIPELINE};
use luoshu_graph::{compile, Bindings, CompileOptions, Graph, Plan};
use luoshu_model::llama::{build_loss_graph, build_train_graph, RowLayout, BATCH, SEQ};
use luoshu_model::{init_params, rope_tables, ModelConfig, ParamStore, Precision};
use luoshu_tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Optimization hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Learning rate per step.
    pub schedule: LrSchedule,
    /// AdamW's other hyper-parameters.
    pub optimizer: AdamWConfig,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f64,
    /// `f32`, or `bf16-mixed` (bf16 compute, f32 master weights); `f64` is for checks.
    pub precision: Precision,
    /// Data parallelism: reduce the gradients bucket by bucket during the last
    /// micro-batch's backward instead of all at once after it (same bits either way).
    pub overlap_reduction: bool,
    /// Bytes of gradient per overlapped reduction (a bucket closes at the first parameter
    /// that reaches it, walking from the last parameter, as backward produces them).
    pub reduce_bucket_bytes: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            schedule: LrSchedule::default(),
            optimizer: AdamWConfig::default(),
            grad_clip: 1.0,
            precision: Precision::F32,
            overlap_reduction: true,
            reduce_bucket_bytes: 4 << 20,
        }
    }
}

impl TrainConfig {
    /// [`Error::TrainConfig`] for an invalid schedule or optimizer, `f64` precision, a negative
    /// or non-finite `grad_clip`, or a zero `reduce_bucket_bytes`.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        self.optimizer.validate()?;
        if self.precision == Precision::F64 {
            return Err(Error::TrainConfig(
                "precision f64 is for gradient checks; train in f32 or bf16-mixed".into(),
            ));
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return Err(Error::TrainConfig(format!(
                "grad_clip must be >= 0 (0 disables clipping), got {}",
                self.grad_clip
            )));
        }
        if self.reduce_bucket_bytes == 0 {
            return Err(Error::TrainConfig(
                "reduce_bucket_bytes must be > 0 (turn overlap off with overlap_reduction = \
                 false)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss per target token of the global batch.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate the update used.
    pub lr: f64,
    /// Target tokens of the global batch.
    pub tokens: usize,
    /// Wall time of the whole step, in seconds.
    pub seconds: f64,
}

impl StepStats {
    /// Emits these statistics as a `debug` tracing event (`LUOSHU_LOG=debug`) for `step`,
    /// the optimizer step they describe.
    pub fn trace(&self, step: u64) {
        tracing::debug!(
            step,
            loss = self.loss,
            grad_norm = self.grad_norm,
            lr = self.lr,
            tokens = self.tokens,
            seconds = self.seconds,
            "training step"
        );
    }
}

/// Everything needed to continue training bit-identically (plain tensors, own buffers).
#[derive(Debug, Clone)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: u64,
    /// The parameters, by name.
    pub params: ParamStore,
    /// AdamW's first moments, with the parameters' names and shapes.
    pub adam_m: ParamStore,
    /// AdamW's second moments, with the parameters' names and shapes.
    pub adam_v: ParamStore,
}

/// Which graph a cached plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PlanKind {
    Train,
    Loss,
}

/// Trains a LLaMA model on one device.
pub struct Trainer {
    model: ModelConfig,
    config: TrainConfig,
    backend: Arc<dyn Backend>,
    /// Optimized graphs per kind and row layout (one document per row built at once,
    /// packed ones on first use).
    graphs: HashMap<(PlanKind, RowLayout), Graph>,
    plans: HashMap<(PlanKind, RowLayout, usize, usize), Plan>,
    params: ParamStore,
    optimizer: AdamW,
    rope_cos: Tensor,
    rope_sin: Tensor,
    step: u64,
    /// The step's summed gradients, one per parameter, reused by every step.
    grad_sums: Vec<Tensor>,
}

/// `graph` after the default optimization pipeline.
fn optimize(graph: &Graph) -> Result<Graph> {
    Ok(run_pipeline(graph, DEFAULT_PIPELINE)?.0)
}

/// The optimized graph of `kind` for rows laid out as `layout`.
fn build_graph(
    model: &ModelConfig,
    precision: Precision,
    (kind, layout): (PlanKind, RowLayout),
) -> Result<Graph> {
    match kind {
        PlanKind::Train => optimize(&build_train_graph(model, precision, layout)?.graph),
        PlanKind::Loss => optimize(&build_loss_graph(model, precision, layout)?.graph),
    }
}

impl Trainer {
    /// A trainer with parameters initialized from `seed`.
    pub fn new(
        model: ModelConfig,
        config: TrainConfig,
        backend: Arc<dyn Backend>,
        seed: u64,
    ) -> Result<Self> {
        model.validate()?;
        config.validate()?;
        let graphs = [PlanKind::Train, PlanKind::Loss]
            .into_iter()
            .map(|kind| {
                let key = (kind, RowLayout::OneDocument);
                Ok((key, build_graph(&model, config.precision, key)?))
            })
            .collect::<Result<_>>()?;
        let params = init_params(&model, seed)?;
        let optimizer = AdamW::new(
            &Ops::new(backend.as_ref()),
            config.optimizer.clone(),
            &params,
        )?;
        let (rope_cos, rope_sin) =
            rope_tables(model.head_dim(), model.rope_theta, 0, model.max_seq_len)?;
        let grad_sums = gradient_buffers(&Ops::new(backend.as_ref()), &params)?;
        Ok(Trainer {
            model,
            config,
            backend,
            graphs,
            plans: HashMap::new(),
            params,
            optimizer,
            rope_cos,
            rope_sin,
            step: 0,
            grad_sums,
        })
    }

    /// The model being trained.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model
    }

    /// The hyper-parameters the trainer was built with.
    pub fn train_config(&self) -> &TrainConfig {
        &self.config
    }

    /// The backend every kernel runs on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The live parameters (updated in place by every step).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// AdamW's moments and step count (the live state, not a copy).
    pub fn optimizer_state(&self) -> &AdamWState {
        self.optimizer.state()
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// A snapshot of parameters, moments and step, with its own buffers.
    pub fn state(&self) -> Result<TrainerState> {
        let ops = Ops::new(self.backend.as_ref());
        let adam = self.optimizer.state();
        Ok(TrainerState {
            step: self.step,
            params: self.params.deep_copy(&ops)?,
            adam_m: adam.m.deep_copy(&ops)?,
            adam_v: adam.v.deep_copy(&ops)?,
        })
    }

    /// Continue from `state` (checked against the model; copied, so the caller's tensors
    /// are never updated in place).
    pub fn restore(&mut self, state: TrainerState) -> Result<()> {
        let ops = Ops::new(self.backend.as_ref());
        state
            .params
            .check_matches(&self.params, "saved parameters")?;
        let params = state.params.deep_copy(&ops)?;
        let adam = AdamWState {
            step: state.step,
            m: state.adam_m.deep_copy(&ops)?,
            v: state.adam_v.deep_copy(&ops)?,
        };
        self.optimizer.restore(adam, &params)?;
        self.params = params;
        self.step = state.step;
        Ok(())
    }

    /// Loss (mean per target token) and the gradient of every parameter, summed over all
    /// micro-batches of `batch`, without updating anything.
    pub fn gradients(&mut self, batch: &GlobalBatch) -> Result<(f64, Vec<Tensor>)> {
        let grads = gradient_buffers(&Ops::new(self.backend.as_ref()), &self.params)?;
        let loss = self.sum_gradients(batch, &grads)?;
        Ok((loss, grads))
    }

    /// Loss of `batch`, with its gradients summed into `sums` (overwritten): the first
    /// micro-batch's are copied straight out of the plan, later ones added.
    fn sum_gradients(&mut self, batch: &GlobalBatch, sums: &[Tensor]) -> Result<f64> {
        let scale = loss_scale(batch)?;
        let backend = self.backend.clone();
        let ops = Ops::new(backend.as_ref());
        let mut loss = 0.0;
        let mut first = true;
        for micro in batch.buckets.iter().flat_map(|b| &b.micro_batches) {
            loss += self.run(PlanKind::Train, micro, scale, |outputs| {
                let (micro_loss, grads) = outputs
                    .split_first()
                    .ok_or_else(|| Error::State("the training plan returned no outputs".into()))?;
                if grads.len() != sums.len() {
                    return Err(Error::State(format!(
                        "the training plan returned {} gradients for {} parameters",
                        grads.len(),
                        sums.len()
                    )));
                }
                for (sum, g) in sums.iter().zip(grads) {
                    if first {
                        ops.copy_into(g, sum)?;
                    } else {
                        ops.binary_into(BinaryOp::Add, sum, g, sum)?;
                    }
                }
                scalar_value(micro_loss)
            })?;
            first = false;
        }
        if first {
            return Err(Error::Config(
                "the global batch holds no micro-batch".into(),
            ));
        }
        Ok(loss)
    }

    /// One optimizer step on `batch`: accumulate gradients over every micro-batch of every
    /// bucket, clip the global norm, update with AdamW once.
    pub fn train_step(&mut self, batch: &GlobalBatch) -> Result<StepStats> {
        let start = Instant::now();
        let grads = std::mem::take(&mut self.grad_sums);
        let loss = self.sum_gradients(batch, &grads);
        self.grad_sums = grads;
        let loss = loss?;
        let ops = Ops::new(self.backend.as_ref());
        let grad_norm = clip_grad_norm(&ops, &self.grad_sums, self.config.grad_clip)?;
        let lr = self.config.schedule.lr_at(self.step);
        self.optimizer
            .step(&ops, &self.params, &self.grad_sums, lr)?;
        self.step += 1;
        let stats = StepStats {
            loss,
            grad_norm,
            lr,
            tokens: batch.target_tokens,
            seconds: start.elapsed().as_secs_f64(),
        };
        stats.trace(self.step);
        Ok(stats)
    }

    /// Mean loss per target token over all of `batches` (no update).
    pub fn evaluate(&mut self, batches: &[GlobalBatch]) -> Result<f64> {
        let mut total = 0.0;
        let mut tokens = 0;
        for micro in batches
            .iter()
            .flat_map(|b| &b.buckets)
            .flat_map(|b| &b.micro_batches)
        {
            total += self.run(PlanKind::Loss, micro, 1.0, |outputs| {
                let loss = outputs
                    .first()
                    .ok_or_else(|| Error::State("the loss plan returned no outputs".into()))?;
                scalar_value(loss)
            })?;
            tokens += micro.target_tokens;
        }
        if tokens == 0 {
            return Err(Error::Config(
                "the evaluation batches hold no target token".into(),
            ));
        }
        Ok(total / tokens as f64)
    }

    /// Run the plan of `kind` for `micro`'s shape (compiled on first use) and hand its
    /// outputs, views valid only inside the closure, to `consume`.
    fn run<R>(
        &mut self,
        kind: PlanKind,
        micro: &MicroBatch,
        scale: f32,
        consume: impl FnOnce(&[Tensor]) -> Result<R>,
    ) -> Result<R> {
        let (rows, seq) = (micro.rows, micro.seq_len);
        if seq == 0 || seq > self.model.max_seq_len {
            return Err(Error::Config(format!(
                "micro-batch sequence length {seq} is outside 1..={} (the model's max_seq_len)",
                self.model.max_seq_len
            )));
        }
        if micro.inputs.len() != rows * seq || micro.targets.len() != rows * seq {
            return Err(Error::Config(format!(
                "micro-batch of {rows}×{seq} holds {} inputs and {} targets",
                micro.inputs.len(),
                micro.targets.len()
            )));
        }
        let layout = row_layout(micro);
        let key = (kind, layout, rows, seq);
        if !self.plans.contains_key(&key) {
            if !self.graphs.contains_key(&(kind, layout)) {
                let graph = build_graph(&self.model, self.config.precision, (kind, layout))?;
                self.graphs.insert((kind, layout), graph);
            }
            let graph = self
                .graphs
                .get(&(kind, layout))
                .ok_or_else(|| Error::State("built graph vanished from the cache".into()))?;
            let bindings: Bindings = [(BATCH.to_string(), rows), (SEQ.to_string(), seq)].into();
            let plan = compile(
                graph,
                &bindings,
                self.backend.clone(),
                CompileOptions::default(),
            )?;
            self.plans.insert(key, plan);
        }
        let rope = (&self.rope_cos, &self.rope_sin);
        let feeds = micro_feeds(&self.params, micro, rope, scale, layout)?;
        let plan = self
            .plans
            .get_mut(&key)
            .ok_or_else(|| Error::State("compiled plan vanished from the cache".into()))?;
        plan.run_with(&feeds, consume)
    }
}

/// One f32 buffer per parameter, shaped like it.
fn gradient_buffers(ops: &Ops, params: &ParamStore) -> Result<Vec<Tensor>> {
    params
        .tensors()
        .iter()
        .map(|p| Ok(ops.alloc(DType::F32, p.dims())?))
        .collect()
}

/// `1 / target tokens` of the global batch (an error when it has none).
pub(crate) fn loss_scale(batch: &GlobalBatch) -> Result<f32> {
    if batch.target_tokens == 0 {
        return Err(Error::Config(
            "the global batch holds no target token".into(),
        ));
    }
    Ok(1.0 / batch.target_tokens as f32)
}

fn scalar_value(t: &Tensor) -> Result<f64> {
    t.to_f64_vec()
        .first()
        .copied()
        .ok_or_else(|| Error::State("the loss is an empty tensor".into()))
}
