//! The context-parallel training graphs of a cp group together compute the single-device
//! loss and gradients (each rank's part summed over the group), on packed rows whose
//! documents cross the chunk borders (length-1 documents included) and on one document per
//! row; feeding the ranks the chunks in another order than the graphs expect breaks it.
//! The chunk split covers every position once and gives every rank equal causal work.
//! Keys and values travel as a ring: no value of a rank's graph holds more of them than the
//! rank's own two chunks.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::CommCollectives;
use luoshu_graph::{eval_shape, evaluate, evaluate_with, Collectives, Op};
use luoshu_model::llama::{
    RowLayout, CP_GROUP, LOSS_SCALE, ROPE_COS, ROPE_SIN, SEGMENTS, TARGETS, TOKENS,
};
use luoshu_model::{build_stage_train_graph, init_params, rope_tables, ModelConfig, Precision};
use luoshu_model::{context_chunks, context_positions, ModelShard};
use luoshu_tensor::Tensor;
use luoshu_train::parallel::{bindings, context_bindings};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const ROWS: usize = 2;
const SEQ: usize = 16;

fn model() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: SEQ,
        ..ModelConfig::default()
    }
}

/// Document lengths of each row: borders inside chunks and on them, length-1 documents.
const DOCUMENTS: [&[usize]; ROWS] = [&[1, 6, 1, 5, 3], &[3, 1, 1, 11]];

/// A micro-batch's host data: tokens, targets, segment ids and rope positions per token.
struct Rows {
    tokens: Vec<i64>,
    targets: Vec<i64>,
    segments: Option<Vec<i64>>,
    positions: Vec<usize>,
}

fn rows(packed: bool) -> Rows {
    let tokens = (0..ROWS * SEQ).map(|i| (i as i64 * 7 + 3) % 64).collect();
    let targets = (0..ROWS * SEQ)
        .map(|i| match i % 5 {
            4 => -100,
            _ => (i as i64 * 11 + 1) % 64,
        })
        .collect();
    if !packed {
        let positions = (0..ROWS).flat_map(|_| 0..SEQ).collect();
        return Rows {
            tokens,
            targets,
            segments: None,
            positions,
        };
    }
    let (mut segments, mut positions) = (Vec::new(), Vec::new());
    for documents in DOCUMENTS {
        for (d, &len) in documents.iter().enumerate() {
            segments.extend(std::iter::repeat_n(d as i64, len));
            positions.extend(0..len);
        }
    }
    Rows {
        tokens,
        targets,
        segments: Some(segments),
        positions,
    }
}

/// Feeds holding the tokens at `local` positions of every row (all of them on one device).
fn feeds(cfg: &ModelConfig, data: &Rows, local: &[usize]) -> HashMap<String, Tensor> {
    let pick = |v: &[i64]| -> Vec<i64> {
        v.chunks(SEQ)
            .flat_map(|row| local.iter().map(|&p| row[p]))
            .collect()
    };
    let mut feeds: HashMap<String, Tensor> = init_params(cfg, 3)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let shape = [ROWS, local.len()];
    let tensor = |v: Vec<i64>| Tensor::from_slice(&v, shape.as_slice()).unwrap();
    feeds.insert(TOKENS.into(), tensor(pick(&data.tokens)));
    feeds.insert(TARGETS.into(), tensor(pick(&data.targets)));
    // Rope rows: per position for one document per row, per token for packed rows.
    let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, 0, SEQ).unwrap();
    let positions: Vec<usize> = match &data.segments {
        None => local.to_vec(),
        Some(ids) => {
            feeds.insert(
                SEGMENTS.into(),
                Tensor::from_slice(ids, [ROWS, SEQ].as_slice()).unwrap(),
            );
            data.positions
                .chunks(SEQ)
                .flat_map(|row| local.iter().map(|&p| row[p]))
                .collect()
        }
    };
    let half = cfg.head_dim() / 2;
    let rows_of = |table: &Tensor| {
        let values = table.to_vec::<f32>().unwrap();
        let picked: Vec<f32> = positions
            .iter()
            .flat_map(|&p| values[p * half..(p + 1) * half].to_vec())
            .collect();
        Tensor::from_vec(picked, [positions.len(), half].as_slice()).unwrap()
    };
    feeds.insert(ROPE_COS.into(), rows_of(&cos));
    feeds.insert(ROPE_SIN.into(), rows_of(&sin));
    feeds.insert(LOSS_SCALE.into(), Tensor::scalar(1.0f32 / 20.0));
    feeds
}

/// The summed loss and gradients of a `cp`-rank group whose rank `r` is fed the positions
/// `order(r)`, against one device's.
fn group_minus_whole(cp: usize, packed: bool, order: impl Fn(usize) -> Vec<usize> + Sync) -> f64 {
    let cfg = model();
    let layout = if packed {
        RowLayout::Packed
    } else {
        RowLayout::OneDocument
    };
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let data = rows(packed);
    let whole = ModelShard::whole(&cfg);
    let graph = build_stage_train_graph(&cfg, Precision::F32, &whole, layout).unwrap();
    let all: Vec<usize> = (0..SEQ).collect();
    let expected = evaluate(
        &graph.graph,
        &bindings(ROWS, SEQ, 1),
        &feeds(&cfg, &data, &all),
        backend.as_ref(),
    )
    .unwrap();
    let per_rank = threads::run(cp, |comm| {
        let shard = whole
            .clone()
            .with_context_parallel(cp, comm.rank())
            .unwrap();
        let graph = build_stage_train_graph(&cfg, Precision::F32, &shard, layout).unwrap();
        let groups = HashMap::from([(CP_GROUP.to_string(), comm.clone())]);
        let collectives = CommCollectives::new(groups, backend.clone());
        evaluate_with(
            &graph.graph,
            &context_bindings(ROWS, SEQ, 1, cp),
            &feeds(&cfg, &data, &order(comm.rank())),
            backend.as_ref(),
            Some(&collectives as &dyn Collectives),
        )
        .unwrap()
    });
    // The worst relative difference of the loss and every gradient.
    let mut worst: f64 = 0.0;
    for (i, want) in expected.iter().enumerate() {
        let want = want.to_f64_vec();
        let mut got = vec![0.0; want.len()];
        for outputs in &per_rank {
            for (g, x) in got.iter_mut().zip(outputs[i].to_f64_vec()) {
                *g += x;
            }
        }
        let norm = want.iter().map(|x| x * x).sum::<f64>().sqrt();
        let diff = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        worst = worst.max(diff / norm.max(1e-30));
    }
    worst
}

#[test]
fn a_context_parallel_group_computes_the_single_device_loss_and_gradients() {
    for cp in [2, 4] {
        for packed in [true, false] {
            let worst = group_minus_whole(cp, packed, |r| context_positions(SEQ, cp, r));
            assert!(worst <= 1e-5, "cp{cp} packed {packed}: off by {worst:e}");
        }
    }
}

#[test]
fn chunks_fed_in_another_order_than_the_graphs_expect_break_it() {
    // Contiguous halves (rank r holds chunks 2r and 2r + 1) instead of r and 3 − r.
    let contiguous = |r: usize| (r * SEQ / 2..(r + 1) * SEQ / 2).collect();
    for packed in [true, false] {
        let worst = group_minus_whole(2, packed, contiguous);
        assert!(worst > 1e-2, "packed {packed}: only off by {worst:e}");
    }
}

#[test]
fn no_value_of_a_ring_holds_more_keys_or_values_than_one_block() {
    let (cp, seq) = (4, 512);
    let cfg = ModelConfig {
        max_seq_len: seq,
        ..model()
    };
    let head_dim = cfg.d_model / cfg.n_heads;
    let bindings = context_bindings(ROWS, seq, 1, cp);
    for packed in [true, false] {
        let layout = if packed {
            RowLayout::Packed
        } else {
            RowLayout::OneDocument
        };
        let shard = ModelShard::whole(&cfg)
            .with_context_parallel(cp, 1)
            .unwrap();
        let graph = build_stage_train_graph(&cfg, Precision::F32, &shard, layout).unwrap();
        let (mut shifts, mut largest) = (0, 0);
        for node in graph.graph.nodes() {
            shifts += usize::from(matches!(node.op, Op::RingShift { .. }));
            for output in &node.outputs {
                let dims = eval_shape(&output.shape, &bindings).unwrap();
                // Keys, values and their gradients: [rows, kv heads, positions, head dim].
                if dims.len() == 4 && dims[1] == cfg.n_kv_heads && dims[3] == head_dim {
                    largest = largest.max(dims[2]);
                }
            }
        }
        // One block is this rank's two chunks: seq / cp positions (an all-gather would
        // hold all seq of them).
        assert_eq!(largest, seq / cp, "packed {packed}");
        // Keys and values shifted cp − 1 times per layer forward, their gradients back.
        assert_eq!(shifts, 2 * 2 * (cp - 1) * cfg.n_layers, "packed {packed}");
    }
}

proptest! {
    /// Every position of a sequence belongs to exactly one rank, each rank's two chunks are
    /// in sequence order within themselves, and the causal work (keys before each query,
    /// counted in chunk blocks) is the same on every rank.
    #[test]
    fn the_chunk_split_covers_every_position_once_with_equal_work(
        cp in 1usize..9,
        chunk in 1usize..6,
    ) {
        let len = 2 * cp * chunk;
        let mut seen = vec![0; len];
        for rank in 0..cp {
            let positions = context_positions(len, cp, rank);
            prop_assert_eq!(positions.len(), len / cp);
            for &p in &positions {
                seen[p] += 1;
            }
            let work: usize = context_chunks(cp, rank).iter().map(|c| c + 1).sum();
            prop_assert_eq!(work, 2 * cp + 1);
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "{:?}", seen);
    }
}
