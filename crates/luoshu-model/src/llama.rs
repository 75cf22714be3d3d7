//! The LLaMA model as graphs with symbolic `batch` and `seq` dims, so one graph serves
//! every bucket length: the training graph (loss and every parameter gradient), the loss
//! graph (evaluation), the next-token graph (logits at a chosen position) and the
//! KV-cache decode graph.

use crate::{Error, ModelConfig, Precision, Result};
use luoshu_graph::{grad, Dim, Graph, Value};
use luoshu_tensor::DType;

/// Symbolic dims bound per compiled plan.
pub const BATCH: &str = "batch";
pub const SEQ: &str = "seq";

/// Graph inputs fed at every run.
pub const TOKENS: &str = "tokens";
pub const TARGETS: &str = "targets";
pub const ROPE_COS: &str = "rope_cos";
pub const ROPE_SIN: &str = "rope_sin";
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

/// What a parameter is, which fixes how it is initialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Embedding,
    /// A projection read by the residual stream's next layer.
    Linear,
    /// A projection that writes into the residual stream (`wo`, `w_down`).
    OutputProjection,
    /// RMSNorm gain.
    Norm,
}

/// A parameter's name, shape and kind, in the model's fixed parameter order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

fn spec(name: String, shape: &[usize], kind: ParamKind) -> ParamSpec {
    ParamSpec {
        name,
        shape: shape.to_vec(),
        kind,
    }
}

/// Every parameter in order. Projections are stored `[in, out]` so `x · w` needs no
/// transpose; a tied LM head reads the embedding transposed.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    use ParamKind::*;
    let (d, kv, ff) = (cfg.d_model, cfg.kv_dim(), cfg.d_ff);
    let mut specs = vec![spec("embed".into(), &[cfg.vocab_size, d], Embedding)];
    for l in 0..cfg.n_layers {
        let p = |n: &str| format!("layers.{l}.{n}");
        specs.extend([
            spec(p("attn_norm"), &[d], Norm),
            spec(p("wq"), &[d, d], Linear),
            spec(p("wk"), &[d, kv], Linear),
            spec(p("wv"), &[d, kv], Linear),
            spec(p("wo"), &[d, d], OutputProjection),
            spec(p("mlp_norm"), &[d], Norm),
            spec(p("w_gate"), &[d, ff], Linear),
            spec(p("w_up"), &[d, ff], Linear),
            spec(p("w_down"), &[ff, d], OutputProjection),
        ]);
    }
    specs.push(spec("final_norm".into(), &[d], Norm));
    if !cfg.tie_embeddings {
        specs.push(spec("lm_head".into(), &[d, cfg.vocab_size], Linear));
    }
    specs
}

/// The training graph: outputs `[loss, grads...]` with gradients in [`param_specs`] order.
#[derive(Debug, Clone)]
pub struct TrainGraph {
    pub graph: Graph,
    pub loss: Value,
    pub grads: Vec<Value>,
    pub params: Vec<ParamSpec>,
}

/// The forward graph alone: outputs `[loss]` (for evaluation).
#[derive(Debug, Clone)]
pub struct LossGraph {
    pub graph: Graph,
    pub loss: Value,
}

/// Logits `[batch, vocab]` at input position [`POSITION`] of every row.
#[derive(Debug, Clone)]
pub struct LogitsGraph {
    pub graph: Graph,
    pub logits: Value,
}

/// Logits at [`POSITION`] and every layer's filled `(k, v)` cache (see
/// [`build_decode_graph`]).
#[derive(Debug, Clone)]
pub struct DecodeGraph {
    pub graph: Graph,
    pub logits: Value,
    pub caches: Vec<(Value, Value)>,
}

/// Parameter and input leaves shared by the graph builders.
struct Model<'a> {
    cfg: &'a ModelConfig,
    precision: Precision,
    params: Vec<Value>,
    specs: Vec<ParamSpec>,
}

impl<'a> Model<'a> {
    fn declare(g: &mut Graph, cfg: &'a ModelConfig, precision: Precision) -> Result<Self> {
        cfg.validate()?;
        let specs = param_specs(cfg);
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
            params,
            specs,
        })
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

    /// Final hidden states `[batch·seq, d]` of `tokens [batch, seq]`. With `cache`
    /// (positions `i64 [seq]` of the tokens in a `ctx`-long context), each layer's keys and
    /// values are added into its cache inputs at those positions and attention reads the
    /// whole context; the filled caches are returned per layer.
    fn hidden(
        &self,
        g: &mut Graph,
        tokens: Value,
        cache: Option<Value>,
    ) -> Result<(Value, Vec<(Value, Value)>)> {
        let cfg = self.cfg;
        let (batch, seq) = (Dim::sym(BATCH), Dim::sym(SEQ));
        let rows = batch.mul(&seq);
        let half = Dim::fixed(cfg.head_dim() / 2);
        let cos = g.input(ROPE_COS, &[seq.clone(), half.clone()], DType::F32)?;
        let sin = g.input(ROPE_SIN, &[seq.clone(), half], DType::F32)?;
        let flat = g.reshape(tokens, std::slice::from_ref(&rows))?;
        // Look up rows of the master table, so its gradient accumulates in the parameter
        // dtype, then convert just those rows.
        let rows_of_table = g.index_select(self.master("embed")?, 0, flat)?;
        let mut h = g.cast(rows_of_table, self.precision.compute_dtype())?;
        let heads = |n: usize| {
            [
                batch.clone(),
                seq.clone(),
                Dim::fixed(n),
                Dim::fixed(cfg.head_dim()),
            ]
        };
        let eps = cfg.norm_eps;
        let scale = 1.0 / (cfg.head_dim() as f64).sqrt();
        let mut caches = Vec::new();
        for l in 0..cfg.n_layers {
            let p = |g: &mut Graph, n: &str| self.param(g, &format!("layers.{l}.{n}"));
            // Attention block: heads as [batch, heads, seq, head_dim] views.
            let w_attn_norm = p(g, "attn_norm")?;
            let (x, _) = g.rms_norm(h, w_attn_norm, eps)?;
            let project = |g: &mut Graph, w: Value, n: usize, rotate: bool| -> Result<Value> {
                let y = g.matmul(x, w)?;
                let mut y = g.reshape(y, &heads(n))?;
                if rotate {
                    y = g.rope(y, cos, sin, false)?;
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
                Some(positions) => {
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
            let (att, _) = g.attention(q, k, v, scale, true)?;
            let att = g.permute(att, &[0, 2, 1, 3])?;
            let att = g.reshape(att, &[rows.clone(), Dim::fixed(cfg.d_model)])?;
            let wo = p(g, "wo")?;
            let out = g.matmul(att, wo)?;
            h = g.plus(h, out)?;
            // SwiGLU MLP block.
            let w_mlp_norm = p(g, "mlp_norm")?;
            let (x, _) = g.rms_norm(h, w_mlp_norm, eps)?;
            let w_gate = p(g, "w_gate")?;
            let gate = g.matmul(x, w_gate)?;
            let w_up = p(g, "w_up")?;
            let up = g.matmul(x, w_up)?;
            let act = g.swiglu(gate, up)?;
            let w_down = p(g, "w_down")?;
            let down = g.matmul(act, w_down)?;
            h = g.plus(h, down)?;
        }
        let final_norm = self.param(g, "final_norm")?;
        let (h, _) = g.rms_norm(h, final_norm, eps)?;
        Ok((h, caches))
    }

    /// `h · head` for hidden rows `h [n, d]`: logits `[n, vocab]`.
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
        Ok(g.input(name, &[Dim::sym(BATCH), Dim::sym(SEQ)], DType::I64)?)
    }

    /// `sum(cross-entropy) · loss_scale` in the precision's loss dtype.
    fn loss(&self, g: &mut Graph) -> Result<Value> {
        let tokens = self.tokens(g, TOKENS)?;
        let targets = self.tokens(g, TARGETS)?;
        let (h, _) = self.hidden(g, tokens, None)?;
        let logits = self.logits(g, h)?;
        let rows = Dim::sym(BATCH).mul(&Dim::sym(SEQ));
        let targets = g.reshape(targets, &[rows])?;
        let ignore = crate::data::IGNORE_INDEX;
        let (losses, _) = g.cross_entropy(logits, targets, ignore)?;
        let loss_dtype = self.precision.loss_dtype();
        let losses = g.cast(losses, loss_dtype)?;
        let total = g.sum_all(losses)?;
        let scale = g.input(LOSS_SCALE, &[], loss_dtype)?;
        Ok(g.mul(total, scale)?)
    }
}

/// The training graph of `cfg` in `precision`; gradients have the parameter dtype.
pub fn build_train_graph(cfg: &ModelConfig, precision: Precision) -> Result<TrainGraph> {
    let mut graph = Graph::new();
    let model = Model::declare(&mut graph, cfg, precision)?;
    let loss = model.loss(&mut graph)?;
    let (mut graph, grads) = grad(&graph, loss, &model.params)?;
    let mut outputs = vec![loss];
    outputs.extend(&grads);
    graph.set_outputs(outputs)?;
    Ok(TrainGraph {
        graph,
        loss,
        grads,
        params: model.specs,
    })
}

/// The forward graph with the scaled loss as its only output.
pub fn build_loss_graph(cfg: &ModelConfig, precision: Precision) -> Result<LossGraph> {
    let mut graph = Graph::new();
    let model = Model::declare(&mut graph, cfg, precision)?;
    let loss = model.loss(&mut graph)?;
    graph.set_outputs(vec![loss])?;
    Ok(LossGraph { graph, loss })
}

/// The next-token graph: logits `[batch, vocab]` (in the compute dtype) at position
/// [`POSITION`] of `tokens [batch, seq]`.
pub fn build_logits_graph(cfg: &ModelConfig, precision: Precision) -> Result<LogitsGraph> {
    let mut g = Graph::new();
    let model = Model::declare(&mut g, cfg, precision)?;
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
    let model = Model::declare(&mut g, cfg, precision)?;
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
