//! Text generation: KV-cache decoding agrees with recomputing the whole prefix, sampling is
//! reproducible and follows the softmax, and bad requests are refused with the reason.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_data::{train_tokenizer, Document};
use luoshu_graph::{evaluate, Bindings};
use luoshu_model::generate::{generate, generate_tokens, Decoder, GenerateOptions};
use luoshu_model::llama::{BATCH, POSITION, ROPE_COS, ROPE_SIN, SEQ, TOKENS};
use luoshu_model::sampling::Sampler;
use luoshu_model::Precision;
use luoshu_model::{build_logits_graph, init_params, rope_tables, ModelConfig, ParamStore};
use luoshu_tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Two layers with grouped-query attention and an untied head.
fn tiny_config() -> ModelConfig {
    ModelConfig {
        vocab_size: 23,
        d_model: 16,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 24,
        max_seq_len: 12,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tie_embeddings: false,
    }
}

/// Seeded parameters with the matrices scaled up, so logits are far apart and the argmax
/// does not hinge on rounding.
fn tiny_params(cfg: &ModelConfig) -> ParamStore {
    let init = init_params(cfg, 11).unwrap();
    let mut params = ParamStore::new();
    for (name, t) in init.iter() {
        let scale = if t.rank() == 1 { 1.0 } else { 25.0 };
        let values: Vec<f32> = t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v * scale)
            .collect();
        params
            .insert(name, Tensor::from_vec(values, t.dims()).unwrap())
            .unwrap();
    }
    params
}

fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

fn options(
    max_new_tokens: usize,
    temperature: f64,
    top_k: Option<usize>,
    seed: u64,
) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        temperature,
        top_k,
        seed,
    }
}

/// Tokens after `prompt` from the KV-cache decoder.
fn decode(
    cfg: &ModelConfig,
    params: &ParamStore,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Vec<u32> {
    let mut decoder = Decoder::new(cfg, Precision::F32, params, cpu()).unwrap();
    let mut streamed = Vec::new();
    let out = generate_tokens(&mut decoder, prompt, opts, cfg.vocab_size, None, |t| {
        streamed.push(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed, out, "every token is streamed as it is decoded");
    out
}

/// Greedy decoding that reruns the full next-token graph on the whole sequence each step.
fn greedy_by_full_forward(
    cfg: &ModelConfig,
    params: &ParamStore,
    prompt: &[u32],
    new: usize,
) -> Vec<u32> {
    let graph = build_logits_graph(cfg, Precision::F32).unwrap().graph;
    let backend = cpu();
    let mut sequence: Vec<u32> = prompt.to_vec();
    for _ in 0..new {
        let len = sequence.len();
        let mut feeds: HashMap<String, Tensor> = params
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let ids: Vec<i64> = sequence.iter().map(|&t| t as i64).collect();
        feeds.insert(
            TOKENS.into(),
            Tensor::from_slice(&ids, [1, len].as_slice()).unwrap(),
        );
        let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, 0, len).unwrap();
        feeds.insert(ROPE_COS.into(), cos);
        feeds.insert(ROPE_SIN.into(), sin);
        feeds.insert(
            POSITION.into(),
            Tensor::from_slice(&[len as i64 - 1], [1].as_slice()).unwrap(),
        );
        let bindings: Bindings = [(BATCH.to_string(), 1), (SEQ.to_string(), len)].into();
        let logits = evaluate(&graph, &bindings, &feeds, backend.as_ref()).unwrap()[0].to_f64_vec();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap();
        sequence.push(best as u32);
    }
    sequence[prompt.len()..].to_vec()
}

#[test]
fn kv_cache_greedy_decoding_matches_rerunning_the_full_prefix() {
    let cfg = tiny_config();
    let params = tiny_params(&cfg);
    let prompt = [3u32, 17, 8, 1];
    // Asking for more than fits stops when the context is full: the last token needs no
    // forward pass, so max_seq_len - prompt + 1 tokens come out.
    let cached = decode(&cfg, &params, &prompt, &options(100, 0.0, None, 0));
    assert_eq!(cached.len(), cfg.max_seq_len - prompt.len() + 1);
    let full = greedy_by_full_forward(&cfg, &params, &prompt, cached.len());
    assert_eq!(cached, full);
    let distinct: std::collections::BTreeSet<_> = cached.iter().collect();
    assert!(
        distinct.len() > 1,
        "a degenerate model would hide bugs: {cached:?}"
    );
}

#[test]
fn sampling_is_reproducible_and_top_k_one_is_greedy() {
    let cfg = tiny_config();
    let params = tiny_params(&cfg);
    let prompt = [5u32, 2];
    let sampled = |seed| decode(&cfg, &params, &prompt, &options(8, 3.0, None, seed));
    assert_eq!(sampled(42), sampled(42));
    assert_ne!(sampled(42), sampled(43), "the seed drives the draws");
    let greedy = decode(&cfg, &params, &prompt, &options(8, 0.0, None, 0));
    let top1 = decode(&cfg, &params, &prompt, &options(8, 3.0, Some(1), 9));
    assert_eq!(greedy, top1);
    assert_ne!(
        sampled(42),
        greedy,
        "a hot temperature leaves the greedy path"
    );
}

#[test]
fn samples_follow_the_tempered_softmax_within_the_top_k() {
    let logits = [2f32.ln(), 1f32.ln(), 5f32.ln(), 0.5f32.ln()];
    let counts = |sampler: Sampler| {
        let mut counts = [0usize; 4];
        for step in 0..20_000 {
            counts[sampler.sample(&logits, step).unwrap() as usize] += 1;
        }
        counts.map(|c| c as f64 / 20_000.0)
    };
    let plain = counts(Sampler {
        temperature: 1.0,
        top_k: None,
        seed: 1,
    });
    for (p, want) in plain
        .iter()
        .zip([2.0 / 8.5, 1.0 / 8.5, 5.0 / 8.5, 0.5 / 8.5])
    {
        assert!((p - want).abs() < 0.015, "{plain:?}");
    }
    // Temperature 2 takes square roots of the odds; top-2 keeps ids 2 and 0.
    let top2 = counts(Sampler {
        temperature: 2.0,
        top_k: Some(2),
        seed: 2,
    });
    let (a, b) = (5f64.sqrt(), 2f64.sqrt());
    assert!((top2[2] - a / (a + b)).abs() < 0.015, "{top2:?}");
    assert!((top2[0] - b / (a + b)).abs() < 0.015, "{top2:?}");
    assert_eq!(top2[1] + top2[3], 0.0);
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let cfg = tiny_config();
    let params = tiny_params(&cfg);
    let mut decoder = Decoder::new(&cfg, Precision::F32, &params, cpu()).unwrap();
    let long = vec![1u32; cfg.max_seq_len + 1];
    let err = generate_tokens(
        &mut decoder,
        &long,
        &options(4, 0.0, None, 0),
        23,
        None,
        |_| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("13 tokens") && err.contains("at most 12") && err.contains("max_seq_len"),
        "{err}"
    );
    for (temperature, top_k) in [(-1.0, None), (f64::NAN, None), (1.0, Some(0))] {
        let opts = options(4, temperature, top_k, 0);
        assert!(generate_tokens(&mut decoder, &[1], &opts, 23, None, |_| Ok(())).is_err());
    }
    assert!(decoder.is_empty(), "refused requests feed nothing");
    let wrong_dtype = Decoder::new(&cfg, Precision::F64, &params, cpu());
    assert!(wrong_dtype
        .err()
        .unwrap()
        .to_string()
        .contains("`embed` is f32"));
}

#[test]
fn text_generation_refuses_a_tokenizer_larger_than_the_model_and_streams_text() {
    let docs: Vec<Document> = ["fn main() { println!(\"hello\"); }", "let x = 1 + 2;"]
        .iter()
        .map(|t| Document {
            path: "doc.rs".into(),
            text: t.repeat(20),
        })
        .collect();
    let tokenizer = train_tokenizer(&docs, 300).unwrap();
    let vocab = tokenizer.vocab_size();
    let small = ModelConfig {
        vocab_size: vocab - 1,
        max_seq_len: 32,
        ..tiny_config()
    };
    let err = generate(
        &small,
        &tiny_params(&small),
        &tokenizer,
        "fn",
        &options(4, 0.0, None, 0),
        cpu(),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("tokenizer has {vocab} tokens")),
        "{err}"
    );

    let cfg = ModelConfig {
        vocab_size: vocab,
        ..small
    };
    let params = tiny_params(&cfg);
    let mut streamed = String::new();
    let text = generate(
        &cfg,
        &params,
        &tokenizer,
        "let",
        &options(10, 1.0, Some(5), 3),
        cpu(),
        |piece| streamed.push_str(piece),
    )
    .unwrap();
    assert_eq!(streamed, text);
    assert!(!text.is_empty());
}
