//! `luoshu bench train --strategies single,dp2,tp2`: tokens/s of the same training step under
//! parallel strategies (ranks as threads of this process), against the single-device step.

use super::measurement::{median, SEED};
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch};
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::ModelConfig;
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::TrainConfig;
use std::sync::Arc;
use std::time::Instant;

/// `batch` (one micro-batch) split into `parts` micro-batches of consecutive rows, so data
/// parallelism has one per rank.
pub fn split_rows(batch: &GlobalBatch, parts: usize) -> Result<GlobalBatch, String> {
    let whole = batch
        .buckets
        .first()
        .and_then(|b| b.micro_batches.first())
        .ok_or("the benchmark batch is empty")?;
    if parts == 0 || !whole.rows.is_multiple_of(parts) {
        return Err(format!(
            "cannot split {} rows into {parts} equal micro-batches",
            whole.rows
        ));
    }
    let (rows, seq) = (whole.rows / parts, whole.seq_len);
    let micro_batches = (0..parts)
        .map(|p| {
            let span = p * rows * seq..(p + 1) * rows * seq;
            MicroBatch {
                rows,
                seq_len: seq,
                inputs: whole.inputs[span.clone()].to_vec(),
                targets: whole.targets[span].to_vec(),
                target_tokens: rows * seq,
                documents: None,
            }
        })
        .collect();
    Ok(GlobalBatch {
        buckets: vec![BucketBatch {
            seq_len: seq,
            micro_batches,
        }],
        target_tokens: batch.target_tokens,
    })
}

/// Median step time of `strategy` on `batch` after `warmup` steps on `backend` (rank 0's
/// clock; every step ends with collectives, so all ranks finish it together), and whether
/// the trainer overlapped its gradient reduction with backward.
pub fn measure(
    model: &ModelConfig,
    train: &TrainConfig,
    batch: &GlobalBatch,
    strategy: Strategy,
    warmup: usize,
    steps: usize,
    backend: &Arc<dyn Backend>,
) -> Result<(f64, bool), String> {
    let results = threads::run(strategy.devices(), |comm| -> Result<(f64, bool), String> {
        let mesh = Mesh::new(strategy, comm).map_err(|e| e.to_string())?;
        let mut trainer =
            ParallelTrainer::new(model.clone(), train.clone(), backend.clone(), mesh, SEED)
                .map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        for step in 0..warmup + steps {
            let start = Instant::now();
            trainer.train_step(batch).map_err(|e| e.to_string())?;
            if step >= warmup {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        Ok((median(&mut times), trainer.overlaps_reduction()))
    });
    results
        .into_iter()
        .next()
        .unwrap_or(Err("no rank ran".into()))
}
