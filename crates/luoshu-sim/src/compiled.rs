//! Activation memory as the trainer holds it, from the memory planner of the graphs it
//! compiles. A rank compiles one plan per stage graph (the forward graph too on pipeline
//! stages before the last), row layout and micro-batch shape, each with its own arena,
//! and keeps them all; so its activation memory is the sum of those arenas over the
//! shapes it has run. This builds and plans the real graphs, so it is for models that
//! train on this machine (`luoshu sim validate`), not for `plan`'s 70B models.

use crate::Result;
use luoshu_data::MicroBatch;
use luoshu_dist::Strategy;
use luoshu_graph::memory::plan_memory;
use luoshu_graph::passes::{run_pipeline, DEFAULT_PIPELINE};
use luoshu_graph::schedule::schedule;
use luoshu_graph::Graph;
use luoshu_model::llama::{build_stage_forward_graph, build_stage_train_graph, RowLayout};
use luoshu_model::{ModelConfig, ModelShard, Precision};
use luoshu_train::parallel::{context_bindings, pad_multiple};
use luoshu_train::placement::stage_layers;
use std::collections::BTreeSet;

/// A compiled plan's key: packed rows or not, rows, and the sequence length after the
/// padding tensor and context parallelism add.
type PlanShape = (bool, usize, usize);

/// The shapes a rank under `strategy` compiles for `micro_batches`.
pub fn plan_shapes<'a>(
    micro_batches: impl IntoIterator<Item = &'a MicroBatch>,
    strategy: Strategy,
) -> BTreeSet<PlanShape> {
    let multiple = pad_multiple(strategy.tp, strategy.cp);
    micro_batches
        .into_iter()
        .map(|m| {
            (
                m.documents.is_some(),
                m.rows,
                m.seq_len.div_ceil(multiple) * multiple,
            )
        })
        .collect()
}

/// Bytes of the arenas every rank of `strategy` holds after compiling `shapes`. Data
/// parallel ranks are counted as if each had met every shape (each meets the micro-batches
/// dealt to it; over a few steps that is nearly all of them), so this is an upper bound
/// there and exact for one replica.
pub fn plan_arena_bytes_all_ranks(
    model: &ModelConfig,
    precision: Precision,
    strategy: Strategy,
    shapes: &BTreeSet<PlanShape>,
) -> Result<f64> {
    let stages = stage_layers(model, strategy.pp)?;
    let mut total = 0.0;
    for (stage, layers) in stages.iter().enumerate() {
        // Tensor- and context-parallel ranks of a stage hold graphs of the same shapes.
        let shard = ModelShard::new(model, strategy.tp, 0, strategy.pp, stage, layers.clone())?
            .with_context_parallel(strategy.cp, 0)?;
        let mut stage_bytes = 0.0;
        for packed in [false, true] {
            if !shapes.iter().any(|s| s.0 == packed) {
                continue;
            }
            let layout = match packed {
                true => RowLayout::Packed,
                false => RowLayout::OneDocument,
            };
            let mut graphs = vec![build_stage_train_graph(model, precision, &shard, layout)?.graph];
            if !shard.is_last_stage() {
                graphs.push(build_stage_forward_graph(model, precision, &shard, layout)?);
            }
            for graph in &graphs {
                let graph = run_pipeline(graph, DEFAULT_PIPELINE)?.0;
                for &(_, rows, seq) in shapes.iter().filter(|s| s.0 == packed) {
                    stage_bytes += arena_bytes(&graph, rows, seq, strategy)?;
                }
            }
        }
        total += stage_bytes * (strategy.replicas() * strategy.tp) as f64;
    }
    Ok(total)
}

/// The arena of `graph` compiled for `rows × seq` (what `luoshu_graph::compile` allocates).
fn arena_bytes(graph: &Graph, rows: usize, seq: usize, strategy: Strategy) -> Result<f64> {
    let bindings = context_bindings(rows, seq, strategy.tp, strategy.cp);
    let order = schedule(graph, &bindings)?;
    Ok(plan_memory(graph, &order, &bindings)?.report.arena_bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(rows: usize, seq_len: usize) -> MicroBatch {
        MicroBatch {
            rows,
            seq_len,
            inputs: vec![1; rows * seq_len],
            targets: vec![1; rows * seq_len],
            target_tokens: rows * seq_len,
            documents: None,
        }
    }

    #[test]
    fn every_shape_adds_its_own_arena_and_every_rank_holds_them() {
        let model = ModelConfig::preset("tiny").unwrap();
        let single = Strategy::SINGLE;
        let (a, b) = (micro(2, 32), micro(1, 64));
        let arena = |ms: &[&MicroBatch], s: Strategy| {
            plan_arena_bytes_all_ranks(&model, Precision::F32, s, &plan_shapes(ms.to_vec(), s))
                .unwrap()
        };
        let (only_a, only_b, both) = (
            arena(&[&a], single),
            arena(&[&b], single),
            arena(&[&a, &b, &a], single),
        );
        assert!(only_a > 0.0 && only_b > 0.0);
        assert_eq!(both, only_a + only_b);
        // Two data-parallel replicas hold the same plans each.
        assert_eq!(arena(&[&a], "dp2".parse().unwrap()), 2.0 * only_a);
        // tp2 pads 63 tokens to 64: one shape, as for 64.
        let odd = micro(1, 63);
        let tp2: Strategy = "tp2".parse().unwrap();
        assert_eq!(plan_shapes([&odd], tp2), plan_shapes([&b], tp2));
        // cp2 pads to 2·cp = 4 positions and plans each rank's two chunks: less than the
        // whole row's arena on each of its two ranks.
        let cp2: Strategy = "cp2".parse().unwrap();
        assert_eq!(plan_shapes([&odd], cp2), plan_shapes([&b], cp2));
        let context = arena(&[&b], cp2);
        assert!(
            context > 0.0 && context / 2.0 < only_b,
            "{context} vs {only_b}"
        );
    }
}
