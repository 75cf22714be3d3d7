//! The LLaMA model as graphs with symbolic `batch` and `seq` dims, so one graph serves
//! every bucket length: the training graph (loss and every parameter gradient), the loss
//! graph (evaluation), the next-token graph (logits at a chosen position) and the
//! KV-cache decode graph.

use crate::context::ContextSplit;
use crate::shard::{ModelShard, ShardedParam};
use crate::spec::ParamSpec;
use crate::{Error, ModelConfig, Precision, Result};
use luoshu_backend::ops::CompareOp;
use luoshu_graph::{grad, CollectiveReduce, Dim, Graph, Value};
use luoshu_tensor::DType;

/// Symbolic dims bound per compiled plan.
pub const BATCH: &str = "batch";
/// Symbolic dim: positions per row.
pub const SEQ: &str = "seq";
/// Under tensor parallelism `seq = tp · seq_chunk`; bound instead of [`SEQ`]. Under context
/// parallelism a rank's rows hold two chunks of each sequence, `seq = 2 · tp · seq_chunk`
/// of the whole `2 · cp · tp · seq_chunk`.
pub const SEQ_CHUNK: &str = "seq_chunk";
/// The tensor-parallel group named by collective nodes.
pub const TP_GROUP: &str = "tp";
pub use crate::context::CP_GROUP;
/// Input of a pipeline stage after the first: the previous stage's hidden rows.
pub const HIDDEN_IN: &str = "hidden_in";
/// Input of a stage's training graph before the last: the gradient of its output rows.
pub const HIDDEN_GRAD: &str = "hidden_grad";

/// Graph inputs fed at every run.
pub const TOKENS: &str = "tokens";
/// Graph input: next-token targets, `i64 [batch, seq]` (padding is `IGNORE_INDEX`).
pub const TARGETS: &str = "targets";
/// RoPE tables: `f32 [seq, head_dim / 2]` for positions `0..seq`, or with
/// [`RowLayout::Packed`] one row per token (`[batch · seq, head_dim / 2]`) at the token's
/// position inside its document.
pub const ROPE_COS: &str = "rope_cos";
/// The sine table matching [`ROPE_COS`].
pub const ROPE_SIN: &str = "rope_sin";
/// Packed graphs: the document id of every token (`i64 [batch, seq]`, non-decreasing along
/// a row); under context parallelism the ids of the whole rows (every rank's chunks, in
/// sequence order), since a chunk's queries see the keys of every earlier chunk.
pub const SEGMENTS: &str = "segments";
/// `1 / target tokens of the whole global batch`, so micro-batch gradients sum to the
/// global-batch gradient.
pub const LOSS_SCALE: &str = "loss_scale";
/// Position whose logits the next-token graph returns (`i64 [1]`).
pub const POSITION: &str = "position";
/// Context positions of the new tokens in the decode graph (`i64 [seq]`).
pub const POSITIONS: &str = "positions";
/// Symbolic context length of the decode graph's caches.
pub const CTX: &str = "ctx";

/// Decode-graph input holding layer `layer`'s keys.
pub fn cache_k_name(layer: usize) -> String {
    format!("cache_k.{layer}")
}

/// Decode-graph input holding layer `layer`'s values.
pub fn cache_v_name(layer: usize) -> String {
    format!("cache_v.{layer}")
}

/// How documents sit in the rows of the micro-batches a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowLayout {
    /// One document per row from position 0, padding after it.
    OneDocument,
    /// Several documents per row: attention stays inside a document ([`SEGMENTS`]) and
    /// RoPE positions restart at each one (per-token [`ROPE_COS`]/[`ROPE_SIN`] rows).
    Packed,
}

/// The training graph: outputs `[loss, grads...]` with gradients in [`crate::param_specs`] order.
#[derive(Debug, Clone)]
pub struct TrainGraph {
    /// The forward and backward graph.
    pub graph: Graph,
    /// The mean loss per target token.
    pub loss: Value,
    /// The gradient of every parameter, in `params` order.
    pub grads: Vec<Value>,
    /// The parameters, as the graph's inputs name them.
    pub params: Vec<ParamSpec>,
}

/// The forward graph alone: outputs `[loss]` (for evaluation).
#[derive(Debug, Clone)]
pub struct LossGraph {
    /// The forward graph.
    pub graph: Graph,
    /// The mean loss per target token.
    pub loss: Value,
}

/// Logits `[batch, vocab]` at input position [`POSITION`] of every row.
#[derive(Debug, Clone)]
pub struct LogitsGraph {
    /// The forward graph up to the head.
    pub graph: Graph,
    /// The logits `[batch, vocab]`.
    pub logits: Value,
}

/// Logits at [`POSITION`] and every layer's filled `(k, v)` cache (see
/// [`build_decode_graph`]).
#[derive(Debug, Clone)]
pub struct DecodeGraph {
    /// The incremental forward graph.
    pub graph: Graph,
    /// The logits `[batch, vocab]` at the last fed position.
    pub logits: Value,
    /// Per layer, the key and value cache after this run.
    pub caches: Vec<(Value, Value)>,
}

/// Graph inputs describing a micro-batch's rows, shared by every layer.
struct RowInputs {
    rope: (Value, Value),
    /// [`SEGMENTS`] of packed rows.
    segments: Option<Value>,
}

/// Parameter and input leaves shared by the graph builders.
struct Model<'a> {
    cfg: &'a ModelConfig,
    precision: Precision,
    shard: ModelShard,
    layout: RowLayout,
    params: Vec<Value>,
    specs: Vec<ParamSpec>,
}

impl<'a> Model<'a> {
    fn declare(
        g: &mut Graph,
        cfg: &'a ModelConfig,
        precision: Precision,
        shard: ModelShard,
        layout: RowLayout,
    ) -> Result<Self> {
        cfg.validate()?;
        let specs: Vec<ParamSpec> = shard.params(cfg).into_iter().map(|p| p.local).collect();
        let params = specs
            .iter()
            .map(|s| {
                let shape: Vec<Dim> = s.shape.iter().map(|&n| Dim::fixed(n)).collect();
                g.param(&s.name, &shape, precision.param_dtype())
            })
            .collect::<luoshu_graph::Result<Vec<_>>>()?;
        Ok(Model {
            cfg,
            precision,
            shard,
            layout,
            params,
            specs,
        })
    }

    /// The whole model on one document per row, as generation runs it.
    fn for_generation(g: &mut Graph, cfg: &'a ModelConfig, precision: Precision) -> Result<Self> {
        let whole = ModelShard::whole(cfg);
        Model::declare(g, cfg, precision, whole, RowLayout::OneDocument)
    }

    /// The parameter leaf `name` in the parameter dtype.
    fn master(&self, name: &str) -> Result<Value> {
        let index = self.specs.iter().position(|s| s.name == name);
        index.map(|i| self.params[i]).ok_or_else(|| {
            Error::ModelConfig(format!(
                "the model builder used an undeclared parameter `{name}`"
            ))
        })
    }

    /// The parameter `name` in the compute dtype (one cast node, shared by every use).
    fn param(&self, g: &mut Graph, name: &str) -> Result<Value> {
        let master = self.master(name)?;
        Ok(g.cast(master, self.precision.compute_dtype())?)
    }

    fn tp(&self) -> usize {
        self.shard.tp
    }

    /// The length of one context-parallel chunk, `tp · seq_chunk` (half a rank's rows).
    fn chunk(&self) -> Dim {
        Dim::sym(SEQ_CHUNK).mul(&Dim::fixed(self.tp()))
    }

    /// The sequence length this rank holds: symbolic `seq`, or `tp · seq_chunk` under tensor
    /// parallelism so that the sequence-parallel row count `batch · seq / tp` is an exact
    /// symbolic dim, or two chunks under context parallelism.
    fn seq(&self) -> Dim {
        match (self.tp(), self.shard.cp) {
            (1, 1) => Dim::sym(SEQ),
            (_, 1) => self.chunk(),
            _ => self.chunk().mul(&Dim::fixed(2)),
        }
    }

    /// Token rows of a micro-batch (`batch · seq`).
    fn rows(&self) -> Dim {
        Dim::sym(BATCH).mul(&self.seq())
    }

    /// The rows one rank holds of the residual stream (`rows / tp`, sequence parallel).
    fn local_rows(&self) -> Result<Dim> {
        self.rows()
            .div_exact(&Dim::fixed(self.tp()))
            .ok_or_else(|| Error::State(format!("{} rows do not split by tp", self.rows())))
    }

    /// Sequence-parallel rows `[rows / tp, ·]` gathered into every rank's full `[rows, ·]`.
    fn gather_rows(&self, g: &mut Graph, x: Value) -> Result<Value> {
        match self.tp() {
            1 => Ok(x),
            tp => Ok(g.all_gather(x, TP_GROUP, tp, 0)?),
        }
    }

    /// Partial sums `[rows, ·]` of every rank reduced and split back into sequence-parallel
    /// rows.
    fn scatter_rows(&self, g: &mut Graph, x: Value) -> Result<Value> {
        match self.tp() {
            1 => Ok(x),
            tp => Ok(g.reduce_scatter(x, TP_GROUP, tp, 0)?),
        }
    }

    /// `(in_range, index - start)` of `index` against this rank's vocabulary piece
    /// `start..start + len`; out-of-range indices become 0 so lookups stay in bounds.
    fn vocab_local(&self, g: &mut Graph, index: Value) -> Result<(Value, Value)> {
        let len = self.cfg.vocab_size / self.tp();
        let start = self.shard.tp_rank * len;
        let local = g.add_scalar(index, -(start as f64))?;
        let zero = g.scalar(0.0, DType::I64)?;
        let end = g.scalar(len as f64, DType::I64)?;
        let above = g.compare(CompareOp::Ge, local, zero)?;
        let below = g.compare(CompareOp::Lt, local, end)?;
        let clamped = g.select(above, local, zero)?;
        let safe = g.select(below, clamped, zero)?;
        let above = g.cast(above, DType::F32)?;
        let below = g.cast(below, DType::F32)?;
        let in_range = g.mul(above, below)?;
        Ok((in_range, safe))
    }

    /// Hidden rows `[local_rows, d]` of `tokens [batch, seq]` (vocabulary-parallel lookup
    /// under tensor parallelism: each rank contributes the rows of its vocabulary piece).
    fn embed(&self, g: &mut Graph, tokens: Value) -> Result<Value> {
        let flat = g.reshape(tokens, &[self.rows()])?;
        let compute = self.precision.compute_dtype();
        // Look up rows of the master table, so its gradient accumulates in the parameter
        // dtype, then convert just those rows.
        if self.tp() == 1 {
            let rows = g.index_select(self.master("embed")?, 0, flat)?;
            return Ok(g.cast(rows, compute)?);
        }
        let (in_range, safe) = self.vocab_local(g, flat)?;
        let rows = g.index_select(self.master("embed")?, 0, safe)?;
        let mask = g.reshape(in_range, &[self.rows(), Dim::fixed(1)])?;
        let mask = g.cast(mask, self.precision.param_dtype())?;
        let rows = g.mul(rows, mask)?;
        let rows = g.cast(rows, compute)?;
        self.scatter_rows(g, rows)
    }

    /// Transformer layer `l` on hidden rows `h [local_rows, d]`. With `cache` (positions
    /// `i64 [seq]` of the tokens in a `ctx`-long context, single device only), keys and
    /// values are added into the layer's cache inputs and attention reads the whole context.
    fn layer(
        &self,
        g: &mut Graph,
        l: usize,
        h: Value,
        rows: &RowInputs,
        cache: Option<(Value, &mut Vec<(Value, Value)>)>,
    ) -> Result<Value> {
        let cfg = self.cfg;
        let (batch, seq, tp) = (Dim::sym(BATCH), self.seq(), self.tp());
        let heads = |n: usize| {
            [
                batch.clone(),
                seq.clone(),
                Dim::fixed(n / tp),
                Dim::fixed(cfg.head_dim()),
            ]
        };
        let eps = cfg.norm_eps;
        let scale = 1.0 / (cfg.head_dim() as f64).sqrt();
        let p = |g: &mut Graph, n: &str| self.param(g, &format!("layers.{l}.{n}"));
        // Attention block: heads as [batch, heads, seq, head_dim] views.
        let w_attn_norm = p(g, "attn_norm")?;
        let (x, _) = g.rms_norm(h, w_attn_norm, eps)?;
        let x = self.gather_rows(g, x)?;
        let project = |g: &mut Graph, w: Value, n: usize, rotate: bool| -> Result<Value> {
            let y = g.matmul(x, w)?;
            let mut y = g.reshape(y, &heads(n))?;
            if rotate {
                y = self.rotate(g, y, rows.rope)?;
            }
            Ok(g.permute(y, &[0, 2, 1, 3])?)
        };
        let wq = p(g, "wq")?;
        let q = project(g, wq, cfg.n_heads, true)?;
        let wk = p(g, "wk")?;
        let k = project(g, wk, cfg.n_kv_heads, true)?;
        let wv = p(g, "wv")?;
        let v = project(g, wv, cfg.n_kv_heads, false)?;
        let (k, v) = match cache {
            None => (k, v),
            Some((positions, caches)) => {
                let shape = [
                    batch.clone(),
                    Dim::fixed(cfg.n_kv_heads),
                    Dim::sym(CTX),
                    Dim::fixed(cfg.head_dim()),
                ];
                let dtype = self.precision.compute_dtype();
                let past_k = g.input(&cache_k_name(l), &shape, dtype)?;
                let past_v = g.input(&cache_v_name(l), &shape, dtype)?;
                let k = g.index_add(past_k, 2, positions, k)?;
                let v = g.index_add(past_v, 2, positions, v)?;
                caches.push((k, v));
                (k, v)
            }
        };
        let att = if self.shard.cp > 1 {
            let split = ContextSplit {
                cp: self.shard.cp,
                rank: self.shard.cp_rank,
                chunk: self.chunk(),
            };
            split.attention(g, (q, k, v), rows.segments, scale)?
        } else {
            match rows.segments {
                Some(segments) => g.segmented_attention((q, k, v), segments, scale, true)?.0,
                None => g.attention(q, k, v, scale, true)?.0,
            }
        };
        let att = g.permute(att, &[0, 2, 1, 3])?;
        let att = g.reshape(att, &[self.rows(), Dim::fixed(cfg.d_model / tp)])?;
        let wo = p(g, "wo")?;
        let out = g.matmul(att, wo)?;
        let out = self.scatter_rows(g, out)?;
        let h = g.plus(h, out)?;
        // SwiGLU MLP block.
        let w_mlp_norm = p(g, "mlp_norm")?;
        let (x, _) = g.rms_norm(h, w_mlp_norm, eps)?;
        let x = self.gather_rows(g, x)?;
        let w_gate = p(g, "w_gate")?;
        let gate = g.matmul(x, w_gate)?;
        let w_up = p(g, "w_up")?;
        let up = g.matmul(x, w_up)?;
        let act = g.swiglu(gate, up)?;
        let w_down = p(g, "w_down")?;
        let down = g.matmul(act, w_down)?;
        let down = self.scatter_rows(g, down)?;
        Ok(g.plus(h, down)?)
    }

    /// The per-micro-batch inputs that describe its rows: the RoPE tables, and the
    /// segment ids of packed rows.
    fn row_inputs(&self, g: &mut Graph) -> Result<RowInputs> {
        let half = Dim::fixed(self.cfg.head_dim() / 2);
        let (table_rows, segments) = match self.layout {
            RowLayout::OneDocument => (self.seq(), None),
            RowLayout::Packed => {
                let whole_rows = match self.shard.cp {
                    1 => self.seq(),
                    cp => self.chunk().mul(&Dim::fixed(2 * cp)),
                };
                let segments = g.input(SEGMENTS, &[Dim::sym(BATCH), whole_rows], DType::I64)?;
                (self.rows(), Some(segments))
            }
        };
        let cos = g.input(ROPE_COS, &[table_rows.clone(), half.clone()], DType::F32)?;
        let sin = g.input(ROPE_SIN, &[table_rows, half], DType::F32)?;
        Ok(RowInputs {
            rope: (cos, sin),
            segments,
        })
    }

    /// RoPE on `y [batch, seq, heads, head_dim]`. Packed rows have a table row per token,
    /// so the tokens are viewed as one `[1, batch · seq]` sequence for the rotation.
    fn rotate(&self, g: &mut Graph, y: Value, (cos, sin): (Value, Value)) -> Result<Value> {
        if self.layout == RowLayout::OneDocument {
            return Ok(g.rope(y, cos, sin, false)?);
        }
        let shape = g.shape_of(y);
        let tokens = [
            Dim::fixed(1),
            self.rows(),
            shape[2].clone(),
            shape[3].clone(),
        ];
        let flat = g.reshape(y, &tokens)?;
        let rotated = g.rope(flat, cos, sin, false)?;
        Ok(g.reshape(rotated, &shape)?)
    }

    /// Final hidden states `[batch·seq, d]` of `tokens [batch, seq]` on the whole model
    /// (see [`Model::layer`] for `cache`); the filled caches are returned per layer.
    fn hidden(
        &self,
        g: &mut Graph,
        tokens: Value,
        cache: Option<Value>,
    ) -> Result<(Value, Vec<(Value, Value)>)> {
        let rows = self.row_inputs(g)?;
        let mut h = self.embed(g, tokens)?;
        let mut caches = Vec::new();
        for l in self.shard.layers.clone() {
            let cache = cache.map(|positions| (positions, &mut caches));
            h = self.layer(g, l, h, &rows, cache)?;
        }
        Ok((self.final_norm(g, h)?, caches))
    }

    fn final_norm(&self, g: &mut Graph, h: Value) -> Result<Value> {
        let final_norm = self.param(g, "final_norm")?;
        Ok(g.rms_norm(h, final_norm, self.cfg.norm_eps)?.0)
    }

    /// `h · head` for hidden rows `h [n, d]`: logits `[n, vocab / tp]`.
    fn logits(&self, g: &mut Graph, h: Value) -> Result<Value> {
        let head = if self.cfg.tie_embeddings {
            let embed = self.param(g, "embed")?;
            g.transpose_last(embed)?
        } else {
            self.param(g, "lm_head")?
        };
        Ok(g.matmul(h, head)?)
    }

    fn tokens(&self, g: &mut Graph, name: &str) -> Result<Value> {
        Ok(g.input(name, &[Dim::sym(BATCH), self.seq()], DType::I64)?)
    }

    /// This stage's input: token ids on the first stage, else the previous stage's hidden
    /// rows `[local_rows, d]` (input [`HIDDEN_IN`]).
    fn stage_input(&self, g: &mut Graph) -> Result<(Value, Value)> {
        if self.shard.is_first_stage() {
            let tokens = self.tokens(g, TOKENS)?;
            Ok((tokens, self.embed(g, tokens)?))
        } else {
            let shape = [self.local_rows()?, Dim::fixed(self.cfg.d_model)];
            let h = g.input(HIDDEN_IN, &shape, self.precision.compute_dtype())?;
            Ok((h, h))
        }
    }

    /// The stage's layers on its input: `(input leaf, output hidden rows)`.
    fn stage_body(&self, g: &mut Graph) -> Result<(Value, Value)> {
        let rows = self.row_inputs(g)?;
        let (input, mut h) = self.stage_input(g)?;
        for l in self.shard.layers.clone() {
            h = self.layer(g, l, h, &rows, None)?;
        }
        Ok((input, h))
    }

    /// `sum(cross-entropy) · loss_scale` of the hidden rows `h [local_rows, d]`, in the
    /// precision's loss dtype.
    fn loss_of(&self, g: &mut Graph, h: Value) -> Result<Value> {
        let h = self.final_norm(g, h)?;
        let h = self.gather_rows(g, h)?;
        let logits = self.logits(g, h)?;
        let targets = self.tokens(g, TARGETS)?;
        let targets = g.reshape(targets, &[self.rows()])?;
        let loss_dtype = self.precision.loss_dtype();
        let total = if self.tp() == 1 {
            let ignore = luoshu_data::IGNORE_INDEX;
            let (losses, _) = g.cross_entropy(logits, targets, ignore)?;
            let losses = g.cast(losses, loss_dtype)?;
            g.sum_all(losses)?
        } else {
            self.vocab_parallel_cross_entropy(g, logits, targets)?
        };
        let scale = g.input(LOSS_SCALE, &[], loss_dtype)?;
        Ok(g.mul(total, scale)?)
    }

    /// Summed cross-entropy of logits split by vocabulary over the tensor-parallel group
    /// (Megatron): the max, the sum of exponentials and the target logit are each reduced
    /// across ranks, so no rank ever holds a full row of logits.
    fn vocab_parallel_cross_entropy(
        &self,
        g: &mut Graph,
        logits: Value,
        targets: Value,
    ) -> Result<Value> {
        let (tp, rows) = (self.tp(), self.rows());
        let z = g.cast(logits, self.precision.loss_dtype())?;
        let local_max = g.max(z, &[1], true)?;
        let max = g.all_reduce(local_max, TP_GROUP, tp, CollectiveReduce::Max)?;
        let shifted = g.sub(z, max)?;
        let exp = g.exp(shifted)?;
        let local_sum = g.sum(exp, &[1], false)?;
        let sum = g.all_reduce(local_sum, TP_GROUP, tp, CollectiveReduce::Sum)?;
        let (in_range, safe) = self.vocab_local(g, targets)?;
        let safe = g.reshape(safe, &[rows.clone(), Dim::fixed(1)])?;
        let picked = g.gather(z, 1, safe)?;
        let picked = g.reshape(picked, std::slice::from_ref(&rows))?;
        let picked = g.mul(picked, in_range)?;
        let target = g.all_reduce(picked, TP_GROUP, tp, CollectiveReduce::Sum)?;
        let log_sum = g.log(sum)?;
        let max = g.reshape(max, std::slice::from_ref(&rows))?;
        let lse = g.plus(log_sum, max)?;
        let losses = g.sub(lse, target)?;
        let ignore = g.scalar(luoshu_data::IGNORE_INDEX as f64, DType::I64)?;
        let ignored = g.compare(CompareOp::Eq, targets, ignore)?;
        let zero = g.scalar(0.0, self.precision.loss_dtype())?;
        let losses = g.select(ignored, zero, losses)?;
        Ok(g.sum_all(losses)?)
    }
}

/// The training graph of `cfg` in `precision` for rows laid out as `layout`; gradients
/// have the parameter dtype.
pub fn build_train_graph(
    cfg: &ModelConfig,
    precision: Precision,
    layout: RowLayout,
) -> Result<TrainGraph> {
    let stage = build_stage_train_graph(cfg, precision, &ModelShard::whole(cfg), layout)?;
    let outputs = stage.graph.outputs().to_vec();
    let (loss, grads) = outputs
        .split_first()
        .ok_or_else(|| Error::State("the training graph has no outputs".into()))?;
    Ok(TrainGraph {
        loss: *loss,
        grads: grads.to_vec(),
        params: stage.params.into_iter().map(|p| p.local).collect(),
        graph: stage.graph,
    })
}

/// One rank's training graph for its [`ModelShard`]. Outputs: the scaled loss (last stage
/// only), the gradient of every parameter of [`ModelShard::params`] in order, then (stages
/// after the first) the gradient of [`HIDDEN_IN`]. A stage before the last differentiates
/// `sum(output · HIDDEN_GRAD)`, so it recomputes its forward pass from its input and
/// back-propagates the next stage's gradient (activations are never kept between the
/// forward and backward passes of a micro-batch).
#[derive(Debug, Clone)]
pub struct StageTrainGraph {
    /// The stage's forward and backward graph.
    pub graph: Graph,
    /// The parameters this rank holds, in the order of the graph's gradient outputs.
    pub params: Vec<ShardedParam>,
}

/// The training graph of `shard`'s pipeline stage and tensor/context-parallel slice (see
/// [`StageTrainGraph`] for its inputs and outputs).
pub fn build_stage_train_graph(
    cfg: &ModelConfig,
    precision: Precision,
    shard: &ModelShard,
    layout: RowLayout,
) -> Result<StageTrainGraph> {
    let mut g = Graph::new();
    let model = Model::declare(&mut g, cfg, precision, shard.clone(), layout)?;
    let (input, h) = model.stage_body(&mut g)?;
    let objective = if shard.is_last_stage() {
        model.loss_of(&mut g, h)?
    } else {
        let shape = g.shape_of(h);
        let upstream = g.input(HIDDEN_GRAD, &shape, precision.compute_dtype())?;
        let weighted = g.mul(h, upstream)?;
        g.sum_all(weighted)?
    };
    let mut wrt = model.params.clone();
    if !shard.is_first_stage() {
        wrt.push(input);
    }
    let (mut g, grads) = grad(&g, objective, &wrt)?;
    let mut outputs = Vec::new();
    if shard.is_last_stage() {
        outputs.push(objective);
    }
    outputs.extend(&grads);
    g.set_outputs(outputs)?;
    Ok(StageTrainGraph {
        graph: g,
        params: shard.params(cfg),
    })
}

/// One rank's forward graph: the scaled loss on the last stage, else the stage's output
/// hidden rows (sent to the next stage).
pub fn build_stage_forward_graph(
    cfg: &ModelConfig,
    precision: Precision,
    shard: &ModelShard,
    layout: RowLayout,
) -> Result<Graph> {
    let mut g = Graph::new();
    let model = Model::declare(&mut g, cfg, precision, shard.clone(), layout)?;
    let (_, h) = model.stage_body(&mut g)?;
    let output = if shard.is_last_stage() {
        model.loss_of(&mut g, h)?
    } else {
        h
    };
    g.set_outputs(vec![output])?;
    Ok(g)
}

/// The forward graph with the scaled loss as its only output.
pub fn build_loss_graph(
    cfg: &ModelConfig,
    precision: Precision,
    layout: RowLayout,
) -> Result<LossGraph> {
    let graph = build_stage_forward_graph(cfg, precision, &ModelShard::whole(cfg), layout)?;
    let loss = graph.outputs()[0];
    Ok(LossGraph { graph, loss })
}

/// The next-token graph: logits `[batch, vocab]` (in the compute dtype) at position
/// [`POSITION`] of `tokens [batch, seq]`.
pub fn build_logits_graph(cfg: &ModelConfig, precision: Precision) -> Result<LogitsGraph> {
    let mut g = Graph::new();
    let model = Model::for_generation(&mut g, cfg, precision)?;
    let tokens = model.tokens(&mut g, TOKENS)?;
    let (h, _) = model.hidden(&mut g, tokens, None)?;
    let logits = model.logits_at(&mut g, h)?;
    g.set_outputs(vec![logits])?;
    Ok(LogitsGraph { graph: g, logits })
}

/// The incremental-decoding graph: `tokens [batch, seq]` are the new tokens at context
/// positions [`POSITIONS`] (`i64 [seq]`, with rope tables for those positions); each layer
/// reads inputs [`cache_k_name`]/[`cache_v_name`] `[batch, kv_heads, ctx, head_dim]` holding
/// the earlier keys/values and zeros at the new positions. Outputs logits at [`POSITION`]
/// (an index into the new tokens), then the filled caches, k and v per layer.
pub fn build_decode_graph(cfg: &ModelConfig, precision: Precision) -> Result<DecodeGraph> {
    let mut g = Graph::new();
    let model = Model::for_generation(&mut g, cfg, precision)?;
    let tokens = model.tokens(&mut g, TOKENS)?;
    let positions = g.input(POSITIONS, &[Dim::sym(SEQ)], DType::I64)?;
    let (h, caches) = model.hidden(&mut g, tokens, Some(positions))?;
    let logits = model.logits_at(&mut g, h)?;
    let mut outputs = vec![logits];
    outputs.extend(caches.iter().flat_map(|&(k, v)| [k, v]));
    g.set_outputs(outputs)?;
    Ok(DecodeGraph {
        graph: g,
        logits,
        caches,
    })
}

impl Model<'_> {
    /// Logits `[batch, vocab]` of the hidden rows `h [batch·seq, d]` at input [`POSITION`].
    fn logits_at(&self, g: &mut Graph, h: Value) -> Result<Value> {
        let cfg = self.cfg;
        let (batch, seq, d) = (Dim::sym(BATCH), Dim::sym(SEQ), Dim::fixed(cfg.d_model));
        let h = g.reshape(h, &[batch.clone(), seq, d.clone()])?;
        let position = g.input(POSITION, &[Dim::fixed(1)], DType::I64)?;
        let last = g.index_select(h, 1, position)?;
        let last = g.reshape(last, &[batch, d])?;
        self.logits(g, last)
    }
}
