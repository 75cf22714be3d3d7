//! The tensor-parallel training graph of every rank computes exactly its slice of the
//! single-device gradient (before any optimizer could amplify rounding differences).

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::CommCollectives;
use luoshu_graph::{evaluate, evaluate_with, Collectives};
use luoshu_model::llama::{RowLayout, LOSS_SCALE, ROPE_COS, ROPE_SIN, TARGETS, TOKENS, TP_GROUP};
use luoshu_model::ModelShard;
use luoshu_model::{build_stage_train_graph, init_params, rope_tables, ModelConfig, Precision};
use luoshu_tensor::Tensor;
use luoshu_train::parallel::bindings;
use std::collections::HashMap;
use std::sync::Arc;

fn model() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: 16,
        ..ModelConfig::default()
    }
}

/// Feeds of a `2 × 8` micro-batch with the whole model's parameters.
fn feeds(cfg: &ModelConfig) -> HashMap<String, Tensor> {
    let (rows, seq) = (2usize, 8usize);
    let tokens: Vec<i64> = (0..rows * seq).map(|i| (i as i64 * 7 + 3) % 64).collect();
    let targets: Vec<i64> = (0..rows * seq)
        .map(|i| {
            if i % 5 == 4 {
                -100
            } else {
                (i as i64 * 11 + 1) % 64
            }
        })
        .collect();
    let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, 0, seq).unwrap();
    let mut feeds: HashMap<String, Tensor> = init_params(cfg, 3)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let shape = [rows, seq];
    feeds.insert(
        TOKENS.into(),
        Tensor::from_slice(&tokens, shape.as_slice()).unwrap(),
    );
    feeds.insert(
        TARGETS.into(),
        Tensor::from_slice(&targets, shape.as_slice()).unwrap(),
    );
    feeds.insert(ROPE_COS.into(), cos);
    feeds.insert(ROPE_SIN.into(), sin);
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(1.0f32 / 13.0));
    feeds
}

#[test]
fn tensor_parallel_gradients_are_slices_of_the_single_device_gradients() {
    let cfg = model();
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let all = feeds(&cfg);
    let whole = build_stage_train_graph(
        &cfg,
        Precision::F32,
        &ModelShard::whole(&cfg),
        RowLayout::OneDocument,
    )
    .unwrap();
    let expected = evaluate(&whole.graph, &bindings(2, 8, 1), &all, backend.as_ref()).unwrap();
    let tp = 2;
    let per_rank = threads::run(tp, |comm| {
        let shard = ModelShard::new(&cfg, tp, comm.rank(), 1, 0, 0..cfg.n_layers).unwrap();
        let graph =
            build_stage_train_graph(&cfg, Precision::F32, &shard, RowLayout::OneDocument).unwrap();
        let mut local = all.clone();
        for p in &graph.params {
            let full = &all[&p.full.name];
            let piece = match p.split {
                Some(dim) => {
                    let r = shard.tp_range(p.full.shape[dim]);
                    full.narrow(dim, r.start, r.len())
                        .unwrap()
                        .to_contiguous()
                        .unwrap()
                }
                None => full.clone(),
            };
            local.insert(p.full.name.clone(), piece);
        }
        let groups = HashMap::from([(TP_GROUP.to_string(), comm.clone())]);
        let collectives = CommCollectives::new(groups, backend.clone());
        let outputs = evaluate_with(
            &graph.graph,
            &bindings(2, 8, tp),
            &local,
            backend.as_ref(),
            Some(&collectives as &dyn Collectives),
        )
        .unwrap();
        (shard, graph.params, outputs)
    });
    for (shard, params, outputs) in per_rank {
        let loss = outputs[0].to_f64_vec()[0];
        let expected_loss = expected[0].to_f64_vec()[0];
        assert!((loss - expected_loss).abs() <= 1e-6 * expected_loss.abs());
        for (i, p) in params.iter().enumerate() {
            let full = &expected[1 + i];
            let want = match p.split {
                Some(dim) => {
                    let r = shard.tp_range(p.full.shape[dim]);
                    full.narrow(dim, r.start, r.len()).unwrap()
                }
                None => full.clone(),
            };
            let got = &outputs[1 + i];
            let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
            let scale = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            let diff = w
                .iter()
                .zip(&g)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            // Norm gains under sequence parallelism are partial per rank: summed later.
            if p.split.is_none() && p.full.name != "embed" && p.full.name.contains("norm") {
                continue;
            }
            assert!(
                diff <= 1e-5 * scale,
                "rank {}: gradient of {} differs by {diff:e} (norm {scale:e})",
                shard.tp_rank,
                p.full.name
            );
        }
    }
}
