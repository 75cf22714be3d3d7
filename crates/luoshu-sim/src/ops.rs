//! FLOPs and bytes of every operation of a LLaMA micro-batch on one tensor-parallel rank,
//! in closed form from the model config (the shapes the builder creates; formulas next to
//! each op). Closed forms, not the compiled graph: a 70B model at 32K tokens is never
//! built, and the formulas are exact for the matmuls and flash attention that dominate.
//!
//! Tensor parallelism follows Megatron with sequence parallelism: q/k/v, gate and up are
//! split by columns, out and down by rows, and the norms, residuals and embedding work on
//! `1/tp` of the tokens, so every op's work divides by `tp`.

use luoshu_model::ModelConfig;

/// Which efficiency of the hardware applies to an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// Matrix products: the matmul share of peak FLOP/s, the memory-bound share of
    /// bandwidth.
    Matmul,
    /// Fused (flash) attention: the attention share of peak FLOP/s, the memory-bound share
    /// of bandwidth.
    Attention,
    /// Fused elementwise kernels (norms, rope, SwiGLU, residuals, loss): the elementwise
    /// share of bandwidth.
    Elementwise,
    /// Copies and gathers (the embedding lookup): the memory-bound share of bandwidth.
    MemoryBound,
}

/// One operation's work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCost {
    /// Short label for reports (`qkv`, `attention`, ...).
    pub name: &'static str,
    /// Which efficiency of the hardware applies.
    pub class: OpClass,
    /// Floating-point operations.
    pub flops: f64,
    /// Bytes read and written in device memory.
    pub bytes: f64,
}

/// A micro-batch: the tokens every linear op runs over (a row, padding included) and the
/// causal (query, key) pairs attention computes, `Σ len·(len+1)/2` over the row's
/// documents (block-diagonal attention of packing; a padded row counts its full length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    /// Tokens of the row, padding included.
    pub tokens: f64,
    /// Causal (query, key) pairs attention computes.
    pub pairs: f64,
}

impl Work {
    /// One row of `row_len` tokens holding documents of `lengths` (padding to `row_len`).
    pub fn packed(row_len: usize, lengths: &[usize]) -> Self {
        Work {
            tokens: row_len as f64,
            pairs: lengths.iter().map(|&l| causal_pairs(l)).sum(),
        }
    }
}

/// Query-key pairs of causal attention over `len` tokens.
pub fn causal_pairs(len: usize) -> f64 {
    let len = len as f64;
    len * (len + 1.0) / 2.0
}

/// A `[tokens, k] × [k, n]` matmul: `2·tokens·k·n` FLOPs; reads both operands, writes the
/// result, `e` bytes per element.
fn matmul(name: &'static str, tokens: f64, k: f64, n: f64, e: f64) -> OpCost {
    OpCost {
        name,
        class: OpClass::Matmul,
        flops: 2.0 * tokens * k * n,
        bytes: e * (tokens * k + k * n + tokens * n),
    }
}

/// An elementwise kernel moving `elements` values.
fn elementwise(name: &'static str, elements: f64, e: f64) -> OpCost {
    OpCost {
        name,
        class: OpClass::Elementwise,
        flops: 0.0,
        bytes: e * elements,
    }
}

/// Flash attention over `work` with queries `d` and keys/values `kv` values wide per
/// token: QKᵀ and PV, 2·head_dim FLOPs each per pair and head; reads q, k, v once and
/// writes the output (no s×s matrix in memory).
pub fn attention(work: Work, d: f64, kv: f64, e: f64) -> OpCost {
    OpCost {
        name: "attention",
        class: OpClass::Attention,
        flops: 4.0 * work.pairs * d,
        bytes: e * work.tokens * (2.0 * d + 2.0 * kv),
    }
}

/// The forward ops of one transformer layer on `work`, on one of `tp` ranks, `e` bytes
/// per activation element.
pub fn layer_forward(cfg: &ModelConfig, work: Work, tp: usize, e: f64) -> Vec<OpCost> {
    let (t, tp) = (work.tokens, tp as f64);
    let (d, kv, ff) = (cfg.d_model as f64, cfg.kv_dim() as f64, cfg.d_ff as f64);
    vec![
        // RMSNorm (twice per layer): read x, write y, d values per token each.
        elementwise("rmsnorm ×2", 2.0 * 2.0 * t * d / tp, e),
        matmul("qkv", t, d, (d + 2.0 * kv) / tp, e),
        // Rotary embedding reads and writes q and k.
        elementwise("rope", 2.0 * t * (d + kv) / tp, e),
        attention(work, d / tp, kv / tp, e),
        matmul("out", t, d / tp, d, e),
        matmul("gate+up", t, d, 2.0 * ff / tp, e),
        // SwiGLU reads gate and up, writes their product.
        elementwise("swiglu", 3.0 * t * ff / tp, e),
        matmul("down", t, ff / tp, d, e),
        // Two residual adds: read two, write one.
        elementwise("residual ×2", 2.0 * 3.0 * t * d / tp, e),
    ]
}

/// The forward ops of the LM head and loss (last stage): final norm, the vocabulary
/// projection (split over `tp`) and cross-entropy over the logits.
pub fn head_forward(cfg: &ModelConfig, work: Work, tp: usize, e: f64) -> Vec<OpCost> {
    let (t, tp) = (work.tokens, tp as f64);
    let (d, v) = (cfg.d_model as f64, cfg.vocab_size as f64);
    vec![
        elementwise("final rmsnorm", 2.0 * t * d / tp, e),
        matmul("lm head", t, d, v / tp, e),
        // Softmax and loss read the logits twice (max, then sum) and write the gradient.
        elementwise("cross-entropy", 3.0 * t * v / tp, e),
    ]
}

/// The forward op of the embedding lookup (first stage): gathers `d` values per token.
pub fn embedding_forward(cfg: &ModelConfig, work: Work, tp: usize, e: f64) -> Vec<OpCost> {
    vec![OpCost {
        name: "embedding",
        class: OpClass::MemoryBound,
        flops: 0.0,
        bytes: 2.0 * e * work.tokens * cfg.d_model as f64 / tp as f64,
    }]
}

/// The backward of a forward op: a matmul computes the gradients of both operands (2× the
/// FLOPs and bytes); flash attention recomputes the scores and runs five matmuls against
/// the forward's two (2.5×, FlashAttention-2 paper); elementwise kernels read the
/// forward's inputs and the output gradient and write the input gradients (2× bytes).
pub fn backward(op: &OpCost) -> OpCost {
    let (flops, bytes) = match op.class {
        OpClass::Matmul => (2.0, 2.0),
        OpClass::Attention => (2.5, 2.0),
        OpClass::Elementwise | OpClass::MemoryBound => (2.0, 2.0),
    };
    OpCost {
        flops: op.flops * flops,
        bytes: op.bytes * bytes,
        ..*op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_matmul_flops_are_six_n_per_token_with_the_backward() {
        // 6·(matmul parameters) FLOPs per token for forward + backward, as in
        // `ModelConfig::flops_per_token_at` without attention.
        let cfg = ModelConfig::preset("llama-70b").unwrap();
        let work = Work {
            tokens: 1.0,
            pairs: 0.0,
        };
        let forward = layer_forward(&cfg, work, 1, 2.0);
        let total: f64 = forward
            .iter()
            .filter(|op| op.class == OpClass::Matmul)
            .map(|op| op.flops + backward(op).flops)
            .sum();
        let (d, kv, ff) = (8192.0, 1024.0, 28672.0);
        assert_eq!(total, 6.0 * (2.0 * d * d + 2.0 * d * kv + 3.0 * d * ff));
    }

    #[test]
    fn attention_flops_by_hand() {
        // Two documents of 3 and 1 tokens: 6 + 1 causal pairs; 4·pairs·d FLOPs.
        let cfg = ModelConfig::preset("tiny").unwrap();
        let work = Work::packed(8, &[3, 1]);
        assert_eq!(work.pairs, 7.0);
        let attention = layer_forward(&cfg, work, 2, 2.0)
            .into_iter()
            .find(|op| op.class == OpClass::Attention)
            .unwrap();
        assert_eq!(attention.flops, 4.0 * 7.0 * 128.0 / 2.0);
        assert_eq!(backward(&attention).flops, 2.5 * attention.flops);
    }

    #[test]
    fn closed_forms_count_the_flops_of_the_graph_the_trainer_runs() {
        use luoshu_graph::cost::graph_flops;
        use luoshu_graph::Bindings;
        use luoshu_model::llama::{build_train_graph, RowLayout, BATCH, SEQ};
        use luoshu_model::Precision;
        // `tiny`: tied embeddings, full heads; `bench-5m`: untied, grouped KV heads.
        for preset in ["tiny", "bench-5m"] {
            let cfg = ModelConfig::preset(preset).unwrap();
            let train = build_train_graph(&cfg, Precision::F32, RowLayout::OneDocument).unwrap();
            let (rows, seq) = (3, 40);
            let bindings = Bindings::from([(BATCH.to_string(), rows), (SEQ.to_string(), seq)]);
            let counted = graph_flops(&train.graph, &bindings).unwrap();
            let work = Work {
                tokens: (rows * seq) as f64,
                pairs: rows as f64 * causal_pairs(seq),
            };
            let forward: Vec<OpCost> = (0..cfg.n_layers)
                .flat_map(|_| layer_forward(&cfg, work, 1, 4.0))
                .chain(head_forward(&cfg, work, 1, 4.0))
                .chain(embedding_forward(&cfg, work, 1, 4.0))
                .collect();
            let closed = |class: OpClass| -> f64 {
                forward
                    .iter()
                    .filter(|op| op.class == class)
                    .map(|op| op.flops + backward(op).flops)
                    .sum()
            };
            assert_eq!(counted.matmul, closed(OpClass::Matmul), "{preset}");
            assert_eq!(counted.attention, closed(OpClass::Attention), "{preset}");
        }
    }
}
