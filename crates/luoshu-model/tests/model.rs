//! The LLaMA graphs: they verify, their gradients match finite differences, and configs
//! that cannot work are rejected with a useful message.

use luoshu_backend::reference::ReferenceBackend;
use luoshu_graph::{evaluate, Bindings, Graph};
use luoshu_model::llama::{
    cache_k_name, cache_v_name, RowLayout, BATCH, CTX, LOSS_SCALE, POSITION, POSITIONS, ROPE_COS,
    ROPE_SIN, SEGMENTS, SEQ, TARGETS, TOKENS,
};
use luoshu_model::{
    build_decode_graph, build_logits_graph, build_loss_graph, build_train_graph, init_params,
    param_specs, rope_tables, ModelConfig, ParamRole, Precision, PRESET_NAMES,
};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;

/// One layer, grouped-query attention (2 query heads share 1 kv head), untied head.
fn micro_config() -> ModelConfig {
    ModelConfig {
        vocab_size: 11,
        d_model: 8,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 1,
        d_ff: 12,
        max_seq_len: 8,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tie_embeddings: false,
    }
}

#[test]
fn graphs_of_every_preset_shape_verify() {
    for name in ["tiny", "bench-5m"] {
        let cfg = ModelConfig::preset(name).unwrap();
        build_train_graph(&cfg, Precision::Bf16Mixed, RowLayout::OneDocument)
            .unwrap()
            .graph
            .verify()
            .unwrap();
        let train = build_train_graph(&cfg, Precision::F32, RowLayout::OneDocument).unwrap();
        train.graph.verify().unwrap();
        assert_eq!(train.grads.len(), param_specs(&cfg).len());
        for (g, spec) in train.grads.iter().zip(&train.params) {
            let shape: Vec<_> = spec.shape.iter().map(|&n| n.into()).collect();
            assert_eq!(train.graph.shape_of(*g), shape, "gradient of {}", spec.name);
        }
        build_loss_graph(&cfg, Precision::F32, RowLayout::OneDocument)
            .unwrap()
            .graph
            .verify()
            .unwrap();
        build_logits_graph(&cfg, Precision::F32)
            .unwrap()
            .graph
            .verify()
            .unwrap();
    }
}

#[test]
fn presets_validate_and_counts_agree_with_the_parameter_list() {
    for name in PRESET_NAMES {
        let cfg = ModelConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        let listed: usize = param_specs(&cfg)
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(cfg.num_parameters(), listed, "{name}");
        // 6 FLOPs per matmul weight (the LM head reads the embedding when tied) plus the
        // attention term, linear in the sequence length.
        let matmul: usize = param_specs(&cfg)
            .iter()
            .filter(|s| {
                s.shape.len() == 2 && (s.role != ParamRole::Embedding || cfg.tie_embeddings)
            })
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(cfg.flops_per_token_at(0), 6.0 * matmul as f64, "{name}");
        let attention = 12.0 * (cfg.n_layers * cfg.d_model * 100) as f64;
        assert_eq!(
            cfg.flops_per_token_at(100) - cfg.flops_per_token_at(0),
            attention
        );
    }
    let billions = |name| ModelConfig::preset(name).unwrap().num_parameters() as f64 / 1e9;
    assert!((6.5..7.0).contains(&billions("llama-7b")));
    assert!((12.5..13.5).contains(&billions("llama-13b")));
    assert!((68.5..69.5).contains(&billions("llama-70b")));
    let bench = ModelConfig::preset("bench-5m").unwrap().num_parameters() as f64 / 1e6;
    assert!(
        (4.5..6.0).contains(&bench),
        "bench-5m has {bench}M parameters"
    );
}

#[test]
fn bad_configs_say_what_is_wrong() {
    let err = |cfg: ModelConfig| cfg.validate().unwrap_err().to_string();
    let base = ModelConfig::default();
    let msg = err(ModelConfig {
        n_heads: 3,
        ..base.clone()
    });
    assert!(
        msg.contains("n_heads (3) must divide d_model (128)"),
        "{msg}"
    );
    let msg = err(ModelConfig {
        n_kv_heads: 3,
        ..base.clone()
    });
    assert!(
        msg.contains("n_kv_heads (3) must divide n_heads (4)"),
        "{msg}"
    );
    let msg = err(ModelConfig {
        d_model: 20,
        n_heads: 4,
        ..base.clone()
    });
    assert!(msg.contains("must be even"), "{msg}");
    let msg = err(ModelConfig {
        n_layers: 0,
        ..base.clone()
    });
    assert!(msg.contains("n_layers must be positive"), "{msg}");
    let msg = ModelConfig::preset("llama-700b").unwrap_err().to_string();
    assert!(msg.contains("unknown model preset `llama-700b`") && msg.contains("tiny"));
    // Graph building validates too.
    let bad = ModelConfig {
        n_kv_heads: 3,
        ..base
    };
    assert!(build_train_graph(&bad, Precision::F32, RowLayout::OneDocument).is_err());
}

/// Feeds of the micro config in f64: parameters scaled up from the seeded init so every
/// gradient is large enough to check, 2 rows of 5 tokens with some ignored targets.
fn f64_feeds(cfg: &ModelConfig) -> HashMap<String, Tensor> {
    let params = init_params(cfg, 7).unwrap();
    let mut feeds: HashMap<String, Tensor> = params
        .iter()
        .map(|(name, t)| {
            let scale = if t.rank() == 1 { 1.0 } else { 20.0 };
            let values: Vec<f64> = t.to_f64_vec().iter().map(|v| v * scale).collect();
            let feed = Tensor::from_f64(&values, DType::F64, t.dims()).unwrap();
            (name.to_string(), feed)
        })
        .collect();
    let tokens: Vec<i64> = vec![1, 4, 9, 2, 7, 3, 3, 0, 10, 5];
    let targets: Vec<i64> = vec![4, 9, 2, 7, 6, 3, 0, 10, -100, -100];
    feeds.insert(
        TOKENS.into(),
        Tensor::from_slice(&tokens, [2, 5].as_slice()).unwrap(),
    );
    feeds.insert(
        TARGETS.into(),
        Tensor::from_slice(&targets, [2, 5].as_slice()).unwrap(),
    );
    let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, 0, 5).unwrap();
    feeds.insert(ROPE_COS.into(), cos);
    feeds.insert(ROPE_SIN.into(), sin);
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(1.0f64 / 8.0));
    feeds
}

fn bindings(batch: usize, seq: usize) -> Bindings {
    [(BATCH.to_string(), batch), (SEQ.to_string(), seq)].into()
}

fn loss_of(graph: &Graph, feeds: &HashMap<String, Tensor>) -> f64 {
    let out = evaluate(graph, &bindings(2, 5), feeds, &ReferenceBackend).unwrap();
    out[0].to_f64_vec()[0]
}

#[test]
fn gradients_match_finite_differences() {
    let cfg = micro_config();
    let train = build_train_graph(&cfg, Precision::F64, RowLayout::OneDocument).unwrap();
    let loss_graph = build_loss_graph(&cfg, Precision::F64, RowLayout::OneDocument)
        .unwrap()
        .graph;
    let feeds = f64_feeds(&cfg);
    let outputs = evaluate(&train.graph, &bindings(2, 5), &feeds, &ReferenceBackend).unwrap();
    let loss = outputs[0].to_f64_vec()[0];
    assert!((loss - loss_of(&loss_graph, &feeds)).abs() < 1e-12);
    let eps = 1e-3;
    for (spec, grad) in train.params.iter().zip(&outputs[1..]) {
        let grad = grad.to_f64_vec();
        // The element with the largest gradient, and one in the middle of the tensor.
        let largest = (0..grad.len())
            .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
            .unwrap();
        for index in [largest, grad.len() / 2] {
            let base = feeds[&spec.name].to_f64_vec();
            let at = |delta: f64| {
                let mut values = base.clone();
                values[index] += delta;
                let mut perturbed = feeds.clone();
                let t = Tensor::from_f64(&values, DType::F64, spec.shape.as_slice()).unwrap();
                perturbed.insert(spec.name.clone(), t);
                loss_of(&loss_graph, &perturbed)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let analytic = grad[index];
            let err = (numeric - analytic).abs();
            assert!(
                err <= 2e-3 * analytic.abs() + 2e-4,
                "{}[{index}]: analytic {analytic}, numeric {numeric}",
                spec.name
            );
        }
        assert!(
            grad[largest].abs() > 1e-2,
            "{} has a vanishing gradient",
            spec.name
        );
    }
}

#[test]
fn logits_graph_agrees_with_the_training_loss() {
    // The loss of one row is -log softmax(logits)[target] at every position; check the
    // last position through the next-token graph.
    let cfg = micro_config();
    let logits_graph = build_logits_graph(&cfg, Precision::F64).unwrap().graph;
    let loss_graph = build_loss_graph(&cfg, Precision::F64, RowLayout::OneDocument)
        .unwrap()
        .graph;
    let mut feeds = f64_feeds(&cfg);
    let tokens: Vec<i64> = vec![1, 4, 9, 2, 7];
    let mut targets = vec![-100i64; 5];
    targets[4] = 6;
    feeds.insert(
        TOKENS.into(),
        Tensor::from_slice(&tokens, [1, 5].as_slice()).unwrap(),
    );
    feeds.insert(
        TARGETS.into(),
        Tensor::from_slice(&targets, [1, 5].as_slice()).unwrap(),
    );
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(1.0f64));
    feeds.insert(
        POSITION.into(),
        Tensor::from_slice(&[4i64], [1].as_slice()).unwrap(),
    );
    let b = bindings(1, 5);
    let logits = evaluate(&logits_graph, &b, &feeds, &ReferenceBackend).unwrap()[0].to_f64_vec();
    assert_eq!(logits.len(), cfg.vocab_size);
    let lse = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
    let loss = evaluate(&loss_graph, &b, &feeds, &ReferenceBackend).unwrap()[0].to_f64_vec()[0];
    assert!(
        (loss - (lse - logits[6])).abs() < 1e-5,
        "{loss} vs {}",
        lse - logits[6]
    );
}

#[test]
fn decoding_with_a_kv_cache_matches_the_full_forward_pass() {
    let cfg = micro_config();
    let full = build_logits_graph(&cfg, Precision::F64).unwrap().graph;
    let decode = build_decode_graph(&cfg, Precision::F64).unwrap();
    decode.graph.verify().unwrap();
    let params = f64_feeds(&cfg);
    let tokens = [1i64, 4, 9, 2, 7];
    let i64s = |v: &[i64]| Tensor::from_slice(v, [v.len()].as_slice()).unwrap();
    let (dh, kvh) = (cfg.head_dim(), cfg.n_kv_heads);
    let f64s = |v: &[f64], ctx: usize| {
        Tensor::from_f64(v, DType::F64, [1, kvh, ctx, dh].as_slice()).unwrap()
    };
    let mut caches: Vec<Vec<f64>> = vec![vec![0.0; kvh * 3 * dh]; 2 * cfg.n_layers];
    // Prefill three tokens, then decode one at a time; compare with the full pass.
    let mut start = 0;
    for new in [3usize, 1, 1] {
        let end = start + new;
        let mut feeds = params.clone();
        let (cos, sin) = rope_tables(dh, cfg.rope_theta, start, new).unwrap();
        feeds.insert(ROPE_COS.into(), cos);
        feeds.insert(ROPE_SIN.into(), sin);
        let new_tokens = Tensor::from_slice(&tokens[start..end], [1, new].as_slice()).unwrap();
        feeds.insert(TOKENS.into(), new_tokens);
        feeds.insert(
            POSITIONS.into(),
            i64s(&(start as i64..end as i64).collect::<Vec<_>>()),
        );
        feeds.insert(POSITION.into(), i64s(&[new as i64 - 1]));
        for l in 0..cfg.n_layers {
            feeds.insert(cache_k_name(l), f64s(&caches[2 * l], end));
            feeds.insert(cache_v_name(l), f64s(&caches[2 * l + 1], end));
        }
        let mut b = bindings(1, new);
        b.insert(CTX.to_string(), end);
        let out = evaluate(&decode.graph, &b, &feeds, &ReferenceBackend).unwrap();
        let cached = out[0].to_f64_vec();

        let mut feeds = params.clone();
        let (cos, sin) = rope_tables(dh, cfg.rope_theta, 0, end).unwrap();
        feeds.insert(ROPE_COS.into(), cos);
        feeds.insert(ROPE_SIN.into(), sin);
        feeds.insert(
            TOKENS.into(),
            Tensor::from_slice(&tokens[..end], [1, end].as_slice()).unwrap(),
        );
        feeds.insert(POSITION.into(), i64s(&[end as i64 - 1]));
        let reference = evaluate(&full, &bindings(1, end), &feeds, &ReferenceBackend).unwrap();
        for (a, r) in cached.iter().zip(reference[0].to_f64_vec()) {
            assert!(
                (a - r).abs() < 1e-6 * r.abs().max(1.0),
                "after {end} tokens: {a} vs {r}"
            );
        }
        // The filled caches, with a zero slot for the next token (batch 1, one kv head:
        // the context dim is the outermost non-trivial one).
        caches = out[1..]
            .iter()
            .map(|t| {
                let mut v = t.to_f64_vec();
                v.extend(vec![0.0; kvh * dh]);
                v
            })
            .collect();
        start = end;
    }
}

/// Documents `(tokens, targets)` as one packed row must give exactly the loss and
/// gradients of the same documents one per row: attention stays inside a document and RoPE
/// positions restart at each one.
#[test]
fn a_packed_row_trains_like_one_document_per_row() {
    let cfg = micro_config();
    let documents: [(&[i64], &[i64]); 3] = [
        (&[1, 4, 9], &[4, 9, 2]),
        (&[3, 3, 0], &[3, 0, 10]),
        (&[2, 7], &[7, 6]),
    ];
    let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, 0, 3).unwrap();
    let mut one_per_row = f64_feeds(&cfg);
    let (mut tokens, mut targets) = (vec![0i64; 9], vec![-100i64; 9]);
    for (row, (t, y)) in documents.iter().enumerate() {
        tokens[row * 3..row * 3 + t.len()].copy_from_slice(t);
        targets[row * 3..row * 3 + y.len()].copy_from_slice(y);
    }
    let rows = |values: &[i64], dims: [usize; 2]| Tensor::from_slice(values, dims.as_slice());
    one_per_row.insert(TOKENS.into(), rows(&tokens, [3, 3]).unwrap());
    one_per_row.insert(TARGETS.into(), rows(&targets, [3, 3]).unwrap());
    one_per_row.insert(ROPE_COS.into(), cos.clone());
    one_per_row.insert(ROPE_SIN.into(), sin.clone());

    let mut packed = one_per_row.clone();
    let tokens: Vec<i64> = documents.iter().flat_map(|d| d.0.iter().copied()).collect();
    let targets: Vec<i64> = documents.iter().flat_map(|d| d.1.iter().copied()).collect();
    packed.insert(TOKENS.into(), rows(&tokens, [1, 8]).unwrap());
    packed.insert(TARGETS.into(), rows(&targets, [1, 8]).unwrap());
    let ids = [0i64, 0, 0, 1, 1, 1, 2, 2];
    packed.insert(SEGMENTS.into(), rows(&ids, [1, 8]).unwrap());
    let positions = [0usize, 1, 2, 0, 1, 2, 0, 1];
    let half = cfg.head_dim() / 2;
    let per_token = |table: &Tensor| {
        let table = table.to_f64_vec();
        let values: Vec<f64> = positions
            .iter()
            .flat_map(|&p| table[p * half..(p + 1) * half].to_vec())
            .collect();
        Tensor::from_f64(&values, DType::F32, [8, half].as_slice()).unwrap()
    };
    packed.insert(ROPE_COS.into(), per_token(&cos));
    packed.insert(ROPE_SIN.into(), per_token(&sin));

    let run = |layout: RowLayout, feeds: &HashMap<String, Tensor>, (batch, seq)| {
        let train = build_train_graph(&cfg, Precision::F64, layout).unwrap();
        train.graph.verify().unwrap();
        evaluate(
            &train.graph,
            &bindings(batch, seq),
            feeds,
            &ReferenceBackend,
        )
        .unwrap()
    };
    let want = run(RowLayout::OneDocument, &one_per_row, (3, 3));
    let got = run(RowLayout::Packed, &packed, (1, 8));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for (a, b) in g.to_f64_vec().iter().zip(w.to_f64_vec()) {
            assert!(
                (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                "output {i}: {a} vs {b}"
            );
        }
    }
    // Without restarting positions the packed row is a different computation.
    packed.insert(
        ROPE_COS.into(),
        rope_tables(cfg.head_dim(), cfg.rope_theta, 0, 8)
            .unwrap()
            .0
            .reshape([8, half])
            .unwrap(),
    );
    let shifted = run(RowLayout::Packed, &packed, (1, 8));
    let loss = |outputs: &[Tensor]| outputs[0].to_f64_vec()[0];
    assert!((loss(&shifted) - loss(&want)).abs() > 1e-6);
}
