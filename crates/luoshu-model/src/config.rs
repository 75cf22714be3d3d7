//! The shape of a LLaMA-family model: named presets, validation, parameter and FLOP counts.

use crate::{Error, Result};
use luoshu_tensor::DType;
use serde::{Deserialize, Serialize};

/// Number formats of a model graph: parameters (and gradients) are kept in
/// [`Precision::param_dtype`], activations computed in [`Precision::compute_dtype`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 activations and matmuls, f32 master weights, gradients and loss.
    Bf16Mixed,
    /// Everything in f64 (gradient checks on the reference backend).
    F64,
}

impl Precision {
    /// The dtype parameters, gradients and optimizer state are kept in.
    pub fn param_dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Bf16Mixed => DType::F32,
            Precision::F64 => DType::F64,
        }
    }

    /// The dtype activations and matmul inputs are computed in.
    pub fn compute_dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16Mixed => DType::BF16,
            Precision::F64 => DType::F64,
        }
    }

    /// The loss is summed in at least f32.
    pub fn loss_dtype(self) -> DType {
        self.param_dtype()
    }
}

/// Hyper-parameters that fix a LLaMA model's shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Tokens in the vocabulary: rows of the embedding, columns of the head.
    pub vocab_size: usize,
    /// Width of the residual stream (hidden size).
    pub d_model: usize,
    /// Transformer layers.
    pub n_layers: usize,
    /// Query heads; `d_model / n_heads` is the head dimension.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); equal to `n_heads` for plain multi-head.
    pub n_kv_heads: usize,
    /// Inner width of the SwiGLU MLP.
    pub d_ff: usize,
    /// Longest sequence the model is built and trained for.
    pub max_seq_len: usize,
    /// Base of the rotary embedding's frequencies.
    pub rope_theta: f64,
    /// ε added to the mean square in RMSNorm.
    pub norm_eps: f64,
    /// The LM head reuses the embedding matrix (transposed).
    pub tie_embeddings: bool,
}

/// Names accepted by [`ModelConfig::preset`].
pub const PRESET_NAMES: [&str; 7] = [
    "tiny",
    "bench-5m",
    "llama-3b",
    "llama-7b",
    "llama-13b",
    "llama-32b",
    "llama-70b",
];

/// A LLaMA shape with the usual 32k vocabulary, 10k RoPE base and untied head.
fn llama(n_layers: usize, d_model: usize, d_ff: usize, n_heads: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: 32_000,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_ff,
        max_seq_len: 4096,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tie_embeddings: false,
    }
}

impl Default for ModelConfig {
    /// The `tiny` preset.
    fn default() -> Self {
        ModelConfig {
            vocab_size: 2048,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 4,
            d_ff: 352,
            max_seq_len: 256,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tie_embeddings: true,
        }
    }
}

impl ModelConfig {
    /// A named preset (see [`PRESET_NAMES`]).
    pub fn preset(name: &str) -> Result<Self> {
        let config = match name {
            "tiny" => ModelConfig::default(),
            "bench-5m" => ModelConfig {
                vocab_size: 4096,
                d_model: 256,
                d_ff: 688,
                tie_embeddings: false,
                ..ModelConfig::default()
            },
            // The shape for a small switching benchmark: 0.9 B parameters, despite
            // the name (a 3 B LLaMA with this width would need ~50 layers).
            "llama-3b" => llama(16, 2048, 5120, 32),
            "llama-7b" => llama(32, 4096, 11008, 32),
            "llama-13b" => llama(40, 5120, 13824, 40),
            "llama-32b" => llama(60, 6656, 17920, 64),
            // LLaMA-2 70B: grouped-query attention with 8 kv heads.
            "llama-70b" => ModelConfig {
                n_kv_heads: 8,
                ..llama(80, 8192, 28672, 64)
            },
            other => {
                return Err(Error::ModelConfig(format!(
                    "unknown model preset `{other}`; available: {}",
                    PRESET_NAMES.join(", ")
                )))
            }
        };
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Width of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Check that the shapes fit together; the error says which field to change.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::ModelConfig(format!("{name} must be positive")));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(Error::ModelConfig(format!(
                "n_heads ({}) must divide d_model ({})",
                self.n_heads, self.d_model
            )));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::ModelConfig(format!(
                "n_kv_heads ({}) must divide n_heads ({}) for grouped-query attention",
                self.n_kv_heads, self.n_heads
            )));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(Error::ModelConfig(format!(
                "the head dimension d_model / n_heads = {} must be even for rotary embeddings",
                self.head_dim()
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(Error::ModelConfig(format!(
                "rope_theta must be a finite number above 1, got {}",
                self.rope_theta
            )));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::ModelConfig(format!(
                "norm_eps must be positive and finite, got {}",
                self.norm_eps
            )));
        }
        Ok(())
    }

    /// Parameters per transformer layer (two norms, attention, MLP).
    fn layer_parameters(&self) -> usize {
        let d = self.d_model;
        let attention = 2 * d * d + 2 * d * self.kv_dim();
        2 * d + attention + 3 * d * self.d_ff
    }

    /// Every trainable scalar.
    pub fn num_parameters(&self) -> usize {
        let embedding = self.vocab_size * self.d_model;
        let head = if self.tie_embeddings { 0 } else { embedding };
        embedding + self.n_layers * self.layer_parameters() + self.d_model + head
    }

    /// Training FLOPs (forward + backward) per token at `seq_len`: `6·N` for the matmul
    /// weights (layers and LM head; the embedding lookup is free) plus `12·L·d·seq` for
    /// the attention scores and weighted sums, counted without the causal saving, as in
    /// the PaLM paper's MFU formula.
    pub fn flops_per_token_at(&self, seq_len: usize) -> f64 {
        let d = self.d_model as f64;
        let norms = 2.0 * d;
        let matmul = self.n_layers as f64 * (self.layer_parameters() as f64 - norms)
            + (self.vocab_size * self.d_model) as f64;
        6.0 * matmul + 12.0 * self.n_layers as f64 * d * seq_len as f64
    }

    /// [`ModelConfig::flops_per_token_at`] the longest sequence, `max_seq_len`.
    pub fn flops_per_token(&self) -> f64 {
        self.flops_per_token_at(self.max_seq_len)
    }
}
