//! The cost model on the global batches `luoshu train` really runs: each micro-batch's
//! work from its rows and documents, the phases of a step as `luoshu_train::hot` runs them
//! (each strategy's buckets as one phase, the update strategy's phase last), the planner's
//! switches and the update. `luoshu sim validate` compares these predictions with measured
//! steps; `luoshu train --hot-switch auto` chooses each bucket's strategy from them.

use crate::layout::{Candidate, Layout};
use crate::memory::{optimizer_bytes, Memory};
use crate::ops::{causal_pairs, Work};
use crate::phase::{phase, update_seconds, PhaseCost};
use crate::simulator::Simulator;
use crate::switch_cost::{Move, Switches};
use crate::Result;
use luoshu_data::{GlobalBatch, MicroBatch};
use luoshu_dist::Strategy;
use luoshu_train::hot::probe::ProbeTable;
use luoshu_train::hot::BucketStrategies;

/// A micro-batch's work: its token slots (padding included) and the causal pairs its
/// attention computes: each document's, and the padding segment's after them in a packed
/// row; an unpacked row is one causal sequence of its full length (its padding is not
/// skipped).
pub fn micro_batch_work(m: &MicroBatch) -> Work {
    let pairs = match &m.documents {
        Some(documents) => documents
            .rows
            .iter()
            .map(|row| {
                let padding = m.seq_len.saturating_sub(row.iter().sum());
                row.iter()
                    .chain([&padding])
                    .map(|&l| causal_pairs(l))
                    .sum::<f64>()
            })
            .sum(),
        None => m.rows as f64 * causal_pairs(m.seq_len),
    };
    Work {
        tokens: (m.rows * m.seq_len) as f64,
        pairs,
    }
}

/// The layout of `strategy` as the trainer runs it: pipeline stages recompute their
/// forward pass in the backward (the last stage does not, which this charges it for).
fn layout(sim: &Simulator, strategy: Strategy) -> Result<Layout> {
    Layout::new(
        &sim.model,
        Candidate {
            strategy,
            recompute: strategy.pp > 1,
        },
    )
}

/// A predicted training step.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    /// The whole step: compute, switches and update.
    pub seconds: f64,
    /// Every phase's pipeline and gradient reduction.
    pub compute_seconds: f64,
    /// Parameter switches into each phase and accumulator switches between phases (and
    /// back to the update strategy).
    pub switch_seconds: f64,
    /// The optimizer update under the update strategy.
    pub update_seconds: f64,
    /// Bytes of every rank together by kind, with every strategy's runtime resident (the
    /// hot-switching trainer keeps each strategy's parameters, gradient buffers and plans
    /// between phases); activations are the closed form's, each phase's own.
    pub memory_all_ranks: Memory,
}

/// One step of `batch` with each bucket under its strategy of `buckets`, updating under
/// `update` (a static strategy: one bucket edge, its strategy the update strategy).
pub fn predict_step(
    sim: &Simulator,
    buckets: &BucketStrategies,
    update: Strategy,
    batch: &GlobalBatch,
) -> Result<Predicted> {
    let update_layout = layout(sim, update)?;
    let optimizer = optimizer_bytes(&update_layout, sim.bytes);
    // Phases in the order the trainer runs them: strategies by first bucket, update last.
    let mut phases: Vec<(Strategy, Vec<Work>)> = Vec::new();
    for bucket in &batch.buckets {
        let strategy = buckets.strategy_for(bucket.seq_len)?;
        let works = bucket.micro_batches.iter().map(micro_batch_work);
        match phases.iter_mut().find(|(s, _)| *s == strategy) {
            Some((_, rows)) => rows.extend(works),
            None => phases.push((strategy, works.collect())),
        }
    }
    phases.sort_by_key(|(s, _)| *s == update);
    let mut costs: Vec<(Strategy, PhaseCost)> = Vec::new();
    for (strategy, rows) in &phases {
        costs.push((
            *strategy,
            phase(sim, &layout(sim, *strategy)?, rows, optimizer)?,
        ));
    }
    let mut switches = Switches::new(&sim.model, &sim.topology, sim.bytes.param as usize);
    let mut switch_seconds = 0.0;
    let mut previous = None;
    for (strategy, _) in &costs {
        if *strategy != update {
            switch_seconds += switches.cost(update, *strategy, Move::Params)?.seconds;
        }
        if let Some(from) = previous.filter(|from| from != strategy) {
            switch_seconds += switches.cost(from, *strategy, Move::Accumulator)?.seconds;
        }
        previous = Some(*strategy);
    }
    if let Some(last) = previous.filter(|last| *last != update) {
        switch_seconds += switches.cost(last, update, Move::Accumulator)?.seconds;
    }
    let compute_seconds = costs.iter().map(|(_, c)| c.seconds).sum::<f64>();
    let update_seconds = update_seconds(sim, &update_layout);
    // Every phase's total holds the optimizer state of all ranks once; the runtimes are
    // resident together, the optimizer state exists once.
    let optimizer_all = optimizer * update.devices() as f64;
    let mut memory_all_ranks = Memory::default();
    for (_, c) in &costs {
        memory_all_ranks += c.memory_all_ranks;
    }
    memory_all_ranks.optimizer -= optimizer_all * costs.len().saturating_sub(1) as f64;
    Ok(Predicted {
        seconds: compute_seconds + switch_seconds + update_seconds,
        compute_seconds,
        switch_seconds,
        update_seconds,
        memory_all_ranks,
    })
}

/// Each bucket of `edges` under each of `candidates`, on the micro-batches `sample` holds
/// for it: the predicted seconds of its phase (forward, backward and the gradient
/// reduction), in the table the measured probe fills, so both choose alike.
pub fn predicted_table(
    sim: &Simulator,
    candidates: &[Strategy],
    edges: &[usize],
    sample: &[GlobalBatch],
) -> Result<ProbeTable> {
    let layouts = candidates
        .iter()
        .map(|&c| layout(sim, c))
        .collect::<Result<Vec<_>>>()?;
    let mut seconds = Vec::with_capacity(edges.len());
    let (mut sequences, mut tokens) = (Vec::new(), Vec::new());
    for (b, &edge) in edges.iter().enumerate() {
        let low = if b == 0 { 0 } else { edges[b - 1] };
        let micro: Vec<&MicroBatch> = sample
            .iter()
            .flat_map(|batch| &batch.buckets)
            .filter(|bucket| bucket.seq_len > low && bucket.seq_len <= edge)
            .flat_map(|bucket| &bucket.micro_batches)
            .collect();
        sequences.push(micro.iter().map(|m| m.rows).sum());
        tokens.push(micro.iter().map(|m| m.target_tokens).sum());
        let rows: Vec<Work> = micro.iter().map(|m| micro_batch_work(m)).collect();
        seconds.push(if rows.is_empty() {
            vec![None; candidates.len()]
        } else {
            layouts
                .iter()
                .map(|l| phase(sim, l, &rows, 0.0).map(|c| Some(c.seconds)))
                .collect::<Result<Vec<_>>>()?
        });
    }
    Ok(ProbeTable {
        edges: edges.to_vec(),
        sequences,
        tokens,
        candidates: candidates.to_vec(),
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Hardware;
    use luoshu_data::{BucketBatch, RowDocuments};
    use luoshu_model::{ModelConfig, Precision};

    fn micro(rows: usize, seq_len: usize, documents: Option<Vec<Vec<usize>>>) -> MicroBatch {
        MicroBatch {
            rows,
            seq_len,
            inputs: vec![0; rows * seq_len],
            targets: vec![0; rows * seq_len],
            target_tokens: rows * seq_len,
            documents: documents.map(|rows| RowDocuments { rows }),
        }
    }

    #[test]
    fn work_of_padded_and_packed_micro_batches_by_hand() {
        // Two unpacked rows of 4: 2 · (4·5/2) pairs.
        let w = micro_batch_work(&micro(2, 4, None));
        assert_eq!((w.tokens, w.pairs), (8.0, 20.0));
        // One packed row of 8 holding 3 + 2 tokens and 3 of padding: 6 + 3 + 6 pairs.
        let w = micro_batch_work(&micro(1, 8, Some(vec![vec![3, 2]])));
        assert_eq!((w.tokens, w.pairs), (8.0, 15.0));
    }

    fn sim() -> Simulator {
        let model = ModelConfig::preset("tiny").unwrap();
        let hardware = Hardware::preset("a800-node").unwrap();
        Simulator::new(model, hardware, 2, Precision::F32).unwrap()
    }

    fn batch() -> GlobalBatch {
        GlobalBatch::of_buckets(vec![
            BucketBatch {
                seq_len: 32,
                micro_batches: vec![micro(4, 32, None)],
            },
            BucketBatch {
                seq_len: 128,
                micro_batches: vec![micro(1, 128, None), micro(1, 128, None)],
            },
        ])
    }

    #[test]
    fn a_static_step_is_its_phase_plus_the_update_and_never_switches() {
        let sim = sim();
        let dp2: Strategy = "dp2".parse().unwrap();
        let buckets = BucketStrategies::new(vec![(128, dp2)]).unwrap();
        let p = predict_step(&sim, &buckets, dp2, &batch()).unwrap();
        let rows: Vec<Work> = batch()
            .buckets
            .iter()
            .flat_map(|b| b.micro_batches.iter().map(micro_batch_work))
            .collect();
        let l = layout(&sim, dp2).unwrap();
        let cost = phase(&sim, &l, &rows, optimizer_bytes(&l, sim.bytes)).unwrap();
        assert_eq!(p.switch_seconds, 0.0);
        assert_eq!(p.compute_seconds, cost.seconds);
        assert_eq!(p.seconds, cost.seconds + update_seconds(&sim, &l));
        assert_eq!(p.memory_all_ranks, cost.memory_all_ranks);
    }

    #[test]
    fn a_hot_step_pays_the_planned_switches_and_keeps_both_runtimes() {
        let sim = sim();
        let (dp2, tp2): (Strategy, Strategy) = ("dp2".parse().unwrap(), "tp2".parse().unwrap());
        let buckets = BucketStrategies::new(vec![(32, dp2), (128, tp2)]).unwrap();
        let p = predict_step(&sim, &buckets, tp2, &batch()).unwrap();
        let mut switches = Switches::new(&sim.model, &sim.topology, 4);
        let expected = switches.cost(tp2, dp2, Move::Params).unwrap().seconds
            + switches.cost(dp2, tp2, Move::Accumulator).unwrap().seconds;
        assert!(expected > 0.0);
        assert_eq!(p.switch_seconds, expected);
        let static_tp2 = BucketStrategies::new(vec![(128, tp2)]).unwrap();
        let alone = predict_step(&sim, &static_tp2, tp2, &batch()).unwrap();
        assert!(p.memory_all_ranks.total() > alone.memory_all_ranks.total());
        // The optimizer state exists once, the update strategy's.
        assert_eq!(
            p.memory_all_ranks.optimizer,
            alone.memory_all_ranks.optimizer
        );
    }

    #[test]
    fn the_predicted_table_has_every_bucket_and_candidate() {
        let sim = sim();
        let candidates: Vec<Strategy> = vec!["dp2".parse().unwrap(), "tp2".parse().unwrap()];
        let table = predicted_table(&sim, &candidates, &[32, 64, 128], &[batch()]).unwrap();
        assert_eq!(table.sequences, vec![4, 0, 2]);
        assert!(table.seconds[1].iter().all(Option::is_none));
        assert!(table.seconds[0]
            .iter()
            .chain(&table.seconds[2])
            .all(|s| s.unwrap() > 0.0));
    }
}
