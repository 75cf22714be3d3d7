//! Every parameter of the LLaMA model with its name, shape, layer and role.

use crate::ModelConfig;

/// What a parameter does in the model. Everything that depends on it — initialization,
/// the tensor-parallel split, the pipeline stage, the tied embedding — is derived from the
/// role and the layer, never from the parameter's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// Token embedding `[vocab, d_model]` (also the head when embeddings are tied).
    Embedding,
    /// RMSNorm gain before attention.
    AttentionNorm,
    /// Attention projections `[d_model, heads · head_dim]` (query) and
    /// `[d_model, kv_heads · head_dim]` (key, value).
    Query,
    /// Key projection `[d_model, kv_heads · head_dim]`.
    Key,
    /// Value projection `[d_model, kv_heads · head_dim]`.
    Value,
    /// Attention output projection `[d_model, d_model]`, written into the residual stream.
    AttentionOut,
    /// RMSNorm gain before the MLP.
    MlpNorm,
    /// SwiGLU gate and up projections `[d_model, d_ff]`.
    MlpGate,
    /// SwiGLU up projection `[d_model, d_ff]`.
    MlpUp,
    /// SwiGLU down projection `[d_ff, d_model]`, written into the residual stream.
    MlpDown,
    /// RMSNorm gain after the last layer.
    FinalNorm,
    /// Untied output head `[d_model, vocab]`.
    LmHead,
}

impl ParamRole {
    /// The dim Megatron's layout splits over a tensor-parallel group: q/k/v, gate and up
    /// are column-parallel (output features), the attention output and down projection
    /// row-parallel (input features), the embedding and the untied head split by
    /// vocabulary; norm gains are replicated (`None`).
    pub fn tp_split_dim(self) -> Option<usize> {
        use ParamRole::*;
        match self {
            Query | Key | Value | MlpGate | MlpUp | LmHead => Some(1),
            AttentionOut | MlpDown | Embedding => Some(0),
            AttentionNorm | MlpNorm | FinalNorm => None,
        }
    }

    /// Whether the parameter writes into the residual stream (its init is scaled down
    /// with depth).
    pub fn writes_residual(self) -> bool {
        matches!(self, ParamRole::AttentionOut | ParamRole::MlpDown)
    }

    /// Whether the parameter is a norm gain (initialized to one).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            ParamRole::AttentionNorm | ParamRole::MlpNorm | ParamRole::FinalNorm
        )
    }
}

/// A parameter's name, shape, layer (`None` outside the transformer layers) and role, in
/// the model's fixed parameter order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Unique name, e.g. `layers.0.wq` (checkpoints and exports key tensors by it).
    pub name: String,
    /// Shape of the whole parameter.
    pub shape: Vec<usize>,
    /// The transformer layer it belongs to; `None` for the embedding, final norm and head.
    pub layer: Option<usize>,
    /// What it does in the model, which fixes its tensor-parallel split and init.
    pub role: ParamRole,
}

fn spec(name: String, shape: &[usize], layer: Option<usize>, role: ParamRole) -> ParamSpec {
    ParamSpec {
        name,
        shape: shape.to_vec(),
        layer,
        role,
    }
}

/// Every parameter in order. Projections are stored `[in, out]` so `x · w` needs no
/// transpose; a tied LM head reads the embedding transposed.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    use ParamRole::*;
    let (d, kv, ff) = (cfg.d_model, cfg.kv_dim(), cfg.d_ff);
    let mut specs = vec![spec("embed".into(), &[cfg.vocab_size, d], None, Embedding)];
    for l in 0..cfg.n_layers {
        let p =
            |n: &str, shape: &[usize], role| spec(format!("layers.{l}.{n}"), shape, Some(l), role);
        specs.extend([
            p("attn_norm", &[d], AttentionNorm),
            p("wq", &[d, d], Query),
            p("wk", &[d, kv], Key),
            p("wv", &[d, kv], Value),
            p("wo", &[d, d], AttentionOut),
            p("mlp_norm", &[d], MlpNorm),
            p("w_gate", &[d, ff], MlpGate),
            p("w_up", &[d, ff], MlpUp),
            p("w_down", &[ff, d], MlpDown),
        ]);
    }
    specs.push(spec("final_norm".into(), &[d], None, FinalNorm));
    if !cfg.tie_embeddings {
        specs.push(spec("lm_head".into(), &[d, cfg.vocab_size], None, LmHead));
    }
    specs
}
