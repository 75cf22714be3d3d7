//! Hugging Face interoperability: export then import is bit-identical, the exported files
//! compute what `transformers`' LLaMA computes (checked against a forward pass written
//! from its formulas), and what luoshu cannot import is an error naming the field.

use luoshu_backend::cpu::CpuBackend;
use luoshu_data::{train_tokenizer, Document};
use luoshu_model::generate::Decoder;
use luoshu_model::{init_params, ModelConfig, ParamStore, Precision};
use luoshu_train::hf::{export, import, HfDtype};
use safetensors::SafeTensors;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Grouped-query attention (4 query heads share 2 key/value heads) and an untied head.
fn gqa_untied() -> ModelConfig {
    ModelConfig {
        vocab_size: 300,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: 32,
        rope_theta: 500.0,
        norm_eps: 1e-5,
        tie_embeddings: false,
    }
}

fn mha_tied() -> ModelConfig {
    ModelConfig {
        n_kv_heads: 4,
        tie_embeddings: true,
        ..gqa_untied()
    }
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luoshu-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tokenizer_json() -> Vec<u8> {
    let docs: Vec<Document> = (0..20)
        .map(|i| Document {
            path: PathBuf::from(format!("doc{i}.rs")),
            text: format!("fn f{i}(x: u32) -> u32 {{ x * {i} + {} }}\n", i * i),
        })
        .collect();
    let tokenizer = train_tokenizer(&docs, 280).unwrap();
    tokenizer.to_json().unwrap().into_bytes()
}

/// Random parameters, larger than at initialization so that attention is far from uniform
/// (a wrong RoPE pairing then changes the logits clearly), with norm gains away from 1.
fn params(model: &ModelConfig) -> ParamStore {
    let init = init_params(model, 11).unwrap();
    let mut store = ParamStore::new();
    for (i, (name, t)) in init.iter().enumerate() {
        let values: Vec<f32> = t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(j, v)| 8.0 * v + 0.1 * ((i + j) % 7) as f32)
            .collect();
        let t = luoshu_tensor::Tensor::from_vec(values, t.dims()).unwrap();
        store.insert(name, t).unwrap();
    }
    store
}

/// `model` with random parameters exported (f32) into `dir/hf`.
fn exported(model: &ModelConfig, dir: &Path) -> (ParamStore, PathBuf) {
    let params = params(model);
    let hf = dir.join("hf");
    export(model, &params, &tokenizer_json(), &hf, HfDtype::F32).unwrap();
    (params, hf)
}

fn bits(store: &ParamStore, name: &str) -> Vec<u32> {
    let t = store.get(name).unwrap();
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn export_then_import_is_bit_identical() {
    for (tag, model) in [("gqa", gqa_untied()), ("tied", mha_tied())] {
        let dir = temp_dir(&format!("round-{tag}"));
        let (params, hf) = exported(&model, &dir);
        let imported = import(&hf).unwrap();
        assert_eq!(imported.model, model);
        assert_eq!(imported.tokenizer_json, tokenizer_json());
        assert_eq!(imported.state.step, 0);
        assert_eq!(imported.state.params.names(), params.names());
        for name in params.names() {
            assert_eq!(
                bits(&imported.state.params, name),
                bits(&params, name),
                "{name}"
            );
            let zeros = vec![0; params.get(name).unwrap().numel()];
            assert_eq!(bits(&imported.state.adam_m, name), zeros, "{name}");
            assert_eq!(bits(&imported.state.adam_v, name), zeros, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bf16_export_rounds_every_value_to_nearest_even() {
    let dir = temp_dir("bf16");
    let model = gqa_untied();
    let params = params(&model);
    let hf = dir.join("hf");
    export(&model, &params, &tokenizer_json(), &hf, HfDtype::Bf16).unwrap();
    assert_eq!(config(&hf)["torch_dtype"], "bfloat16");
    let imported = import(&hf).unwrap();
    for name in params.names() {
        let rounded: Vec<u32> = params
            .get(name)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32().to_bits())
            .collect();
        assert_eq!(bits(&imported.state.params, name), rounded, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_refuses_a_directory_with_files() {
    let dir = temp_dir("nonempty");
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let model = gqa_untied();
    let err = export(
        &model,
        &params(&model),
        &tokenizer_json(),
        &dir,
        HfDtype::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not empty"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// HF tensors of `dir/model.safetensors` as f64, by name.
fn hf_tensors(dir: &Path) -> HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect();
            (name, values)
        })
        .collect()
}

fn config(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// `x · Wᵀ` for an `nn.Linear` weight `w [out, in]` (row-major) and a vector `x [in]`.
fn linear(w: &[f64], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// `LlamaRMSNorm`: `weight · x / sqrt(mean(x²) + eps)`.
fn rms_norm(x: &[f64], weight: &[f64], eps: f64) -> Vec<f64> {
    let mean_square = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (mean_square + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * r * w).collect()
}

/// `apply_rotary_pos_emb` on one head at position `pos`: `x · cos + rotate_half(x) · sin`
/// with `emb = cat(freqs, freqs)` and `rotate_half(x) = cat(-x2, x1)`.
fn rotary(x: &[f64], pos: usize, theta: f64) -> Vec<f64> {
    let d = x.len();
    let freqs: Vec<f64> = (0..d / 2)
        .map(|i| pos as f64 / theta.powf((2 * i) as f64 / d as f64))
        .collect();
    let emb: Vec<f64> = freqs.iter().chain(&freqs).copied().collect();
    let (x1, x2) = x.split_at(d / 2);
    let rotated: Vec<f64> = x2.iter().map(|v| -v).chain(x1.iter().copied()).collect();
    (0..d)
        .map(|i| x[i] * emb[i].cos() + rotated[i] * emb[i].sin())
        .collect()
}

/// Logits after every token of `tokens`, computed from an exported directory the way
/// `transformers`' `LlamaForCausalLM` does (in f64).
fn hf_reference_logits(dir: &Path, tokens: &[u32]) -> Vec<Vec<f64>> {
    let cfg = config(dir);
    let count = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (d, heads, kv_heads) = (
        count("hidden_size"),
        count("num_attention_heads"),
        count("num_key_value_heads"),
    );
    let hd = d / heads;
    let (eps, theta) = (
        cfg["rms_norm_eps"].as_f64().unwrap(),
        cfg["rope_theta"].as_f64().unwrap(),
    );
    let w = hf_tensors(dir);
    let t = |name: String| &w[&name];
    let embed = t("model.embed_tokens.weight".into());
    let mut h: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| embed[tok as usize * d..][..d].to_vec())
        .collect();
    for l in 0..count("num_hidden_layers") {
        let p = |n: &str| t(format!("model.layers.{l}.{n}.weight"));
        let x: Vec<Vec<f64>> = h
            .iter()
            .map(|r| rms_norm(r, p("input_layernorm"), eps))
            .collect();
        let q: Vec<Vec<f64>> = x.iter().map(|r| linear(p("self_attn.q_proj"), r)).collect();
        let k: Vec<Vec<f64>> = x.iter().map(|r| linear(p("self_attn.k_proj"), r)).collect();
        let v: Vec<Vec<f64>> = x.iter().map(|r| linear(p("self_attn.v_proj"), r)).collect();
        let head = |m: &Vec<Vec<f64>>, pos: usize, hh: usize| m[pos][hh * hd..][..hd].to_vec();
        let mut attn = vec![vec![0.0; d]; tokens.len()];
        for (pos, out) in attn.iter_mut().enumerate() {
            for hh in 0..heads {
                // repeat_kv: query head hh reads key/value head hh / (heads / kv_heads).
                let kvh = hh / (heads / kv_heads);
                let qr = rotary(&head(&q, pos, hh), pos, theta);
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let kr = rotary(&head(&k, j, kvh), j, theta);
                        qr.iter().zip(&kr).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exp.iter().sum();
                for (j, e) in exp.iter().enumerate() {
                    for (o, vv) in out[hh * hd..][..hd].iter_mut().zip(head(&v, j, kvh)) {
                        *o += e / total * vv;
                    }
                }
            }
        }
        for (r, a) in h.iter_mut().zip(&attn) {
            let o = linear(p("self_attn.o_proj"), a);
            r.iter_mut().zip(o).for_each(|(x, y)| *x += y);
            let x = rms_norm(r, p("post_attention_layernorm"), eps);
            let gate = linear(p("mlp.gate_proj"), &x);
            let up = linear(p("mlp.up_proj"), &x);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = linear(p("mlp.down_proj"), &act);
            r.iter_mut().zip(down).for_each(|(x, y)| *x += y);
        }
    }
    let head = if cfg["tie_word_embeddings"].as_bool().unwrap() {
        embed
    } else {
        t("lm_head.weight".into())
    };
    h.iter()
        .map(|r| linear(head, &rms_norm(r, t("model.norm.weight".into()), eps)))
        .collect()
}

/// luoshu's logits after every token (one KV-cached decode step per token).
fn luoshu_logits(model: &ModelConfig, params: &ParamStore, tokens: &[u32]) -> Vec<Vec<f32>> {
    let backend = Arc::new(CpuBackend::new());
    let mut decoder = Decoder::new(model, Precision::F32, params, backend).unwrap();
    tokens
        .iter()
        .map(|&t| decoder.feed(&[t]).unwrap())
        .collect()
}

#[test]
fn exported_weights_compute_what_transformers_llama_computes() {
    let tokens = [3u32, 250, 17, 17, 90, 4, 299, 0, 128, 64, 5, 200];
    for (tag, model) in [("gqa", gqa_untied()), ("tied", mha_tied())] {
        let dir = temp_dir(&format!("forward-{tag}"));
        let (params, hf) = exported(&model, &dir);
        let reference = hf_reference_logits(&hf, &tokens);
        let ours = luoshu_logits(&model, &params, &tokens);
        let mut max_diff = 0f64;
        for (a, b) in ours.iter().zip(&reference) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                max_diff = max_diff.max((*x as f64 - y).abs());
            }
        }
        assert!(
            max_diff <= 1e-4,
            "{tag}: max abs logit difference {max_diff}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn sharded_weights_import_like_a_single_file() {
    let dir = temp_dir("sharded");
    let model = gqa_untied();
    let (params, hf) = exported(&model, &dir);
    // Split model.safetensors in two shards and an index, as `save_pretrained` does for
    // large models.
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().cloned().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<_> = part
            .iter()
            .map(|n| (n.clone(), file.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, &None, &hf.join(&shard)).unwrap();
        for n in part {
            weight_map.insert(n.clone(), json!(shard));
        }
    }
    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    let index = json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(hf.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let imported = import(&hf).unwrap();
    for name in params.names() {
        assert_eq!(
            bits(&imported.state.params, name),
            bits(&params, name),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The error of importing the exported model after `edit` changed its `config.json`.
fn config_error(tag: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let dir = temp_dir(&format!("config-{tag}"));
    let (_, hf) = exported(&gqa_untied(), &dir);
    let mut cfg = config(&hf);
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.contains("config.json"),
        "the error names the file: {err}"
    );
    err
}

#[test]
fn unsupported_or_malformed_config_fields_are_named() {
    // (field, new value or `None` to remove it, what the error must say)
    let cases = [
        ("hidden_size", None, "field `hidden_size` is missing"),
        (
            "num_attention_heads",
            Some(json!("four")),
            "field `num_attention_heads` must be a positive integer, got \"four\"",
        ),
        (
            "model_type",
            Some(json!("gpt2")),
            "field `model_type` is \"gpt2\"",
        ),
        (
            "architectures",
            Some(json!(["MistralForCausalLM"])),
            "field `architectures` is [\"MistralForCausalLM\"]",
        ),
        (
            "hidden_act",
            Some(json!("gelu")),
            "field `hidden_act` is `gelu`",
        ),
        (
            "attention_bias",
            Some(json!(true)),
            "field `attention_bias` is true",
        ),
        (
            "rope_scaling",
            Some(json!({"type": "linear", "factor": 2.0})),
            "field `rope_scaling.type` is `linear`",
        ),
        (
            "rope_parameters",
            Some(json!({"rope_type": "llama3", "rope_theta": 500000.0})),
            "field `rope_parameters.rope_type` is `llama3`",
        ),
        ("head_dim", Some(json!(16)), "field `head_dim` is 16"),
        (
            "num_key_value_heads",
            Some(json!(3)),
            "field `num_key_value_heads` (3) must divide num_attention_heads (4)",
        ),
        (
            "rms_norm_eps",
            Some(json!(0.0)),
            "field `rms_norm_eps` must be positive",
        ),
    ];
    for (field, value, expected) in cases {
        let err = config_error(field, |config| match value {
            Some(value) => {
                config.insert(field.into(), value);
            }
            None => {
                config.remove(field);
            }
        });
        assert!(
            err.contains(expected),
            "{field}: expected `{expected}` in: {err}"
        );
    }
}

#[test]
fn newer_transformers_rope_parameters_and_defaults_import() {
    let dir = temp_dir("rope-parameters");
    let (_, hf) = exported(&gqa_untied(), &dir);
    let mut cfg = config(&hf);
    let fields = cfg.as_object_mut().unwrap();
    fields.remove("rope_theta");
    fields.remove("rope_scaling");
    fields.remove("num_key_value_heads");
    fields.remove("max_position_embeddings");
    fields.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": 250000.0}),
    );
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    // Without num_key_value_heads the model is multi-head, so the k/v weights no longer fit.
    let err = import(&hf).unwrap_err().to_string();
    assert!(
        err.contains("tensor `model.layers.0.self_attn.k_proj.weight` has shape [16, 32]"),
        "{err}"
    );
    cfg["num_key_value_heads"] = json!(2);
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    let model = import(&hf).unwrap().model;
    assert_eq!(model.rope_theta, 250000.0);
    assert_eq!(model.max_seq_len, 2048, "transformers' default");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_files_and_foreign_tensors_are_named() {
    let dir = temp_dir("files");
    let (_, hf) = exported(&gqa_untied(), &dir);

    std::fs::write(hf.join("config.json"), "{ not json").unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(err.contains("config.json: not valid JSON"), "{err}");
    std::fs::remove_file(hf.join("config.json")).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");

    let (_, hf) = exported(&gqa_untied(), &temp_dir("files-2"));
    let weights = std::fs::read(hf.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&weights).unwrap();
    let bias = vec![0u8; 4 * 32];
    let with_bias = file.tensors().into_iter().chain([(
        "model.layers.0.self_attn.q_proj.bias".to_string(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32], &bias).unwrap(),
    )]);
    let bytes = safetensors::serialize(with_bias, &None).unwrap();
    std::fs::write(hf.join("model.safetensors"), bytes).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(
        err.contains("no parameter for: model.layers.0.self_attn.q_proj.bias"),
        "{err}"
    );

    let without_down = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.layers.1.mlp.down_proj.weight");
    let bytes = safetensors::serialize(without_down, &None).unwrap();
    std::fs::write(hf.join("model.safetensors"), bytes).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(
        err.contains("has no tensor `model.layers.1.mlp.down_proj.weight`"),
        "{err}"
    );

    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(err.contains("has neither model.safetensors"), "{err}");

    let config = r#"{"eos_token": "</s>"}"#;
    std::fs::write(hf.join("tokenizer_config.json"), config).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(
        err.contains("field `eos_token` is `</s>`, but luoshu ends documents with `<|endoftext|>`"),
        "{err}"
    );
    std::fs::remove_file(hf.join("tokenizer.json")).unwrap();
    let err = import(&hf).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(hf.parent().unwrap()).unwrap();
}

#[test]
fn a_llama_tokenizer_ending_documents_with_eos_imports() {
    let dir = temp_dir("llama-eos");
    let (_, hf) = exported(&gqa_untied(), &dir);
    let json = std::fs::read_to_string(hf.join("tokenizer.json")).unwrap();
    let llama_json = json.replace("<|endoftext|>", "</s>");
    std::fs::write(hf.join("tokenizer.json"), &llama_json).unwrap();
    std::fs::write(hf.join("tokenizer_config.json"), r#"{"eos_token": "</s>"}"#).unwrap();
    let imported = import(&hf).unwrap();
    let tokenizer = luoshu_data::TextTokenizer::from_json(&imported.tokenizer_json).unwrap();
    assert_eq!(
        tokenizer.token(tokenizer.end_of_text()).as_deref(),
        Some("</s>")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
