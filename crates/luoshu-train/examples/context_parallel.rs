//! Context parallelism against one device on one long sequence: a training step on one
//! `1 × seq` micro-batch of the `bench-5m` shapes (default 8192 tokens) by the
//! single-device trainer and by `cp2` over two threads (each rank computes two of the four
//! chunks of the sequence). Run with
//! `cargo run --release -p luoshu-train --example context_parallel -- [seq] [steps]`.
//! Prints the median step time of each after one warm-up step (which compiles the plans)
//! and the losses, which must agree.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch};
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::ModelConfig;
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::{StepStats, TrainConfig, Trainer};
use std::sync::Arc;

const SEED: u64 = 5;

/// One row of `seq` tokens with a learnable pattern.
fn batch(seq: usize, vocab: usize) -> GlobalBatch {
    let token = |i: usize| ((i * 7 + i / 13) % vocab) as i64;
    let micro = MicroBatch {
        rows: 1,
        seq_len: seq,
        inputs: (0..seq).map(token).collect(),
        targets: (1..=seq).map(token).collect(),
        target_tokens: seq,
        documents: None,
    };
    GlobalBatch::of_buckets(vec![BucketBatch {
        seq_len: seq,
        micro_batches: vec![micro],
    }])
}

/// Median seconds of `steps` steps after a warm-up step, and the last loss.
fn measure(steps: usize, mut step: impl FnMut() -> StepStats) -> (f64, f64) {
    step();
    let mut seconds = Vec::new();
    let mut loss = 0.0;
    for _ in 0..steps {
        let stats = step();
        seconds.push(stats.seconds);
        loss = stats.loss;
    }
    seconds.sort_by(f64::total_cmp);
    (seconds[seconds.len() / 2], loss)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seq: usize = args.next().map_or(8192, |a| a.parse().expect("seq"));
    let steps: usize = args.next().map_or(3, |a| a.parse().expect("steps"));
    let model = ModelConfig {
        max_seq_len: seq,
        ..ModelConfig::preset("bench-5m").expect("preset")
    };
    let config = TrainConfig::default();
    let data = batch(seq, model.vocab_size);
    let backend = || -> Arc<dyn Backend> { Arc::new(CpuBackend::new()) };

    let mut single = Trainer::new(model.clone(), config.clone(), backend(), SEED).expect("trainer");
    let (single_s, single_loss) = measure(steps, || single.train_step(&data).expect("step"));

    let strategy: Strategy = "cp2".parse().expect("strategy");
    let ranks = threads::run(strategy.devices(), |comm| {
        let mesh = Mesh::new(strategy, comm).expect("mesh");
        let mut trainer =
            ParallelTrainer::new(model.clone(), config.clone(), backend(), mesh, SEED)
                .expect("trainer");
        measure(steps, || trainer.train_step(&data).expect("step"))
    });
    let (cp_s, cp_loss) = ranks[0];
    println!("bench-5m, 1 × {seq} tokens, median of {steps} steps after a warm-up:");
    println!(
        "  single device: {single_s:.3} s/step ({:.0} tokens/s), loss {single_loss:.6}",
        seq as f64 / single_s
    );
    println!(
        "  cp2 (2 threads): {cp_s:.3} s/step ({:.0} tokens/s), loss {cp_loss:.6}, speedup {:.2}×",
        seq as f64 / cp_s,
        single_s / cp_s
    );
}
