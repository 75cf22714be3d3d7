//! `luoshu bench train`: whole training steps (forward, backward, clipping, AdamW) of a
//! model preset, luoshu against PyTorch CPU eager on the identical model, batch and
//! thread count, measured in the same run.

use super::args::BenchArgs;
use super::measurement::{median, TrainMeasurement, SEED};
use super::profile::{self, StepTotals};
use super::strategies;
use super::torch_baseline::{self, TrainWorkload};
use crate::train::config::ModelChoice;
use luoshu_backend::profiled::Profiled;
use luoshu_backend::Backend;
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch};
use luoshu_model::Precision;
use luoshu_tensor::rng;
use luoshu_train::{LrSchedule, TrainConfig, Trainer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Random stream of the benchmark's tokens.
const TOKEN_STREAM: u64 = 0x6265_6e63_6874_6f6b;

/// `batch` rows of `seq + 1` random token ids below `vocab`, row-major.
fn random_tokens(batch: usize, seq: usize, vocab: usize) -> Vec<i64> {
    (0..batch * (seq + 1))
        .map(|i| (rng::bits(SEED, TOKEN_STREAM, i as u64) % vocab as u64) as i64)
        .collect()
}

/// One global batch of one bucket holding one full micro-batch: inputs are each row's
/// first `seq` tokens, targets its last `seq`.
fn global_batch(tokens: &[i64], batch: usize, seq: usize) -> GlobalBatch {
    let rows: Vec<&[i64]> = tokens.chunks(seq + 1).collect();
    let inputs = rows.iter().flat_map(|r| &r[..seq]).copied().collect();
    let targets = rows.iter().flat_map(|r| &r[1..]).copied().collect();
    let micro = MicroBatch {
        rows: batch,
        seq_len: seq,
        inputs,
        targets,
        target_tokens: batch * seq,
        documents: None,
    };
    GlobalBatch {
        buckets: vec![BucketBatch {
            seq_len: seq,
            micro_batches: vec![micro],
        }],
        target_tokens: batch * seq,
    }
}

/// fp32, AdamW with the default hyper-parameters, clipping at 1.0, and a constant learning
/// rate (no warmup), which the PyTorch script mirrors.
fn train_config() -> TrainConfig {
    let mut config = TrainConfig {
        precision: Precision::F32,
        grad_clip: 1.0,
        ..TrainConfig::default()
    };
    let lr = config.schedule.peak_lr;
    config.schedule = LrSchedule {
        peak_lr: lr,
        min_lr: lr,
        warmup_steps: 0,
        total_steps: 0,
    };
    config
}

/// Peak resident set of this process (`VmHWM`, Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// luoshu's measurement on `backend` and the summed time of its measured steps;
/// `profiled`, when given, wraps `backend`, runs the kernels and is reset after the
/// warm-up steps.
fn measure_luoshu(
    work: &TrainWorkload,
    batch: &GlobalBatch,
    backend: Arc<dyn Backend>,
    profiled: Option<&Arc<Profiled>>,
) -> Result<(TrainMeasurement, f64), String> {
    let startup_rss_mib = peak_rss_mib();
    let backend: Arc<dyn Backend> = match profiled {
        Some(p) => p.clone(),
        None => backend,
    };
    let mut trainer = Trainer::new(work.model.clone(), work.train.clone(), backend, SEED)
        .map_err(|e| e.to_string())?;
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for step in 0..work.warmup + work.steps {
        if let Some(p) = profiled.filter(|_| step == work.warmup) {
            p.reset();
        }
        let start = Instant::now();
        let stats = trainer.train_step(batch).map_err(|e| e.to_string())?;
        let elapsed = start.elapsed().as_secs_f64();
        losses.push(stats.loss);
        if step >= work.warmup {
            times.push(elapsed);
        }
    }
    let measured_seconds = times.iter().sum();
    let step_seconds = median(&mut times);
    let best_step_seconds = times.iter().copied().fold(f64::INFINITY, f64::min);
    let measurement = TrainMeasurement {
        system: "luoshu".into(),
        step_seconds,
        best_step_seconds,
        tokens_per_second: work.tokens_per_step() as f64 / step_seconds,
        peak_rss_mib: peak_rss_mib(),
        startup_rss_mib,
        first_loss: losses.first().copied().unwrap_or(f64::NAN),
        last_loss: losses.last().copied().unwrap_or(f64::NAN),
    };
    Ok((measurement, measured_seconds))
}

fn print_row(m: &TrainMeasurement) {
    let rss = m
        .peak_rss_mib
        .map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
    println!(
        "{:<28} {:>10.0} {:>10.1} {:>10.1} {:>13} {:>11.4} {:>10.4}",
        m.system,
        m.tokens_per_second,
        m.step_seconds * 1e3,
        m.best_step_seconds * 1e3,
        rss,
        m.first_loss,
        m.last_loss
    );
}

/// The ratio rows and whether the target (≥ 1.25× tokens/s, lower peak RSS) is met.
fn print_comparison(ours: &TrainMeasurement, base: &TrainMeasurement) {
    let speed = ours.tokens_per_second / base.tokens_per_second;
    let time = ours.step_seconds / base.step_seconds;
    let best = ours.best_step_seconds / base.best_step_seconds;
    let memory = ours.peak_rss_mib.zip(base.peak_rss_mib).map(|(a, b)| a / b);
    let memory_text = memory.map_or_else(|| "-".to_string(), |m| format!("{m:.2}×"));
    println!(
        "{:<28} {:>9.2}× {:>9.2}× {:>9.2}× {:>13}",
        "luoshu / PyTorch", speed, time, best, memory_text
    );
    let mib = |m: Option<f64>| m.map_or_else(|| "-".to_string(), |m| format!("{m:.0} MiB"));
    println!(
        "peak RSS before building the model: luoshu {}, PyTorch {} (after `import torch`)",
        mib(ours.startup_rss_mib),
        mib(base.startup_rss_mib)
    );
    let fast = speed >= 1.25;
    let lean = memory.is_some_and(|m| m < 1.0);
    println!(
        "target luoshu ≥ 1.25× PyTorch tokens/s with lower peak RSS: {} (speed {}, memory {})",
        if fast && lean { "met" } else { "NOT met" },
        if fast { "met" } else { "not met" },
        if lean { "met" } else { "not met" },
    );
}

pub fn run(args: &BenchArgs, backend: Arc<dyn Backend>) -> Result<(), String> {
    if args.batch == 0 || args.steps == 0 {
        return Err(format!(
            "bench train needs --batch and --steps of at least 1, got {} and {}",
            args.batch, args.steps
        ));
    }
    let model = ModelChoice::from_arg(&args.config)?.resolve()?;
    let work = TrainWorkload {
        seq: model.max_seq_len,
        model,
        train: train_config(),
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        threads: args.threads,
        seed: SEED,
    };
    let tokens = random_tokens(work.batch, work.seq, work.model.vocab_size);
    let batch = global_batch(&tokens, work.batch, work.seq);
    println!(
        "training step, model {} ({:.2} M parameters), batch {} × seq {} = {} tokens/step, \
         fp32, AdamW, clip {}; {} backend, {} threads; median of {} steps after {} warm-up",
        args.config,
        work.model.num_parameters() as f64 / 1e6,
        work.batch,
        work.seq,
        work.tokens_per_step(),
        work.train.grad_clip,
        args.backend,
        work.threads,
        work.steps,
        work.warmup
    );
    // Measured first and in-process: its peak RSS is read before Python runs, and the
    // child's memory never counts towards ours anyway.
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let peak = args
        .profile
        .then(|| profile::measure_peak(budget))
        .transpose()?;
    let profiled = peak.map(|_| Arc::new(Profiled::new(backend.clone())));
    let (ours, measured_seconds) =
        measure_luoshu(&work, &batch, backend.clone(), profiled.as_ref())?;
    let base = if args.no_baseline {
        None
    } else {
        match torch_baseline::measure(&work, &tokens) {
            Ok(m) => Some(m),
            Err(why) => {
                println!("PyTorch baseline unavailable: {why}");
                None
            }
        }
    };
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>13} {:>11} {:>10}",
        "system", "tokens/s", "step ms", "best ms", "peak RSS MiB", "first loss", "last loss"
    );
    print_row(&ours);
    if let Some(base) = &base {
        print_row(base);
        print_comparison(&ours, base);
    }
    if let (Some(p), Some(before)) = (&profiled, peak) {
        // Load from other processes moves the GEMM rate too: measured again right after the
        // steps, and the step compared with the higher of the two.
        let after = profile::measure_peak(budget)?;
        let totals = StepTotals {
            seconds: measured_seconds,
            best_step_seconds: ours.best_step_seconds,
            steps: work.steps,
            model_flops: work.model.flops_per_token_at(work.seq) * work.tokens_per_step() as f64,
            peaks: (before, after),
        };
        profile::print(p, &totals);
    }
    if !args.strategies.is_empty() {
        compare_strategies(args, &work, &batch, &backend)?;
    }
    Ok(())
}

/// Tokens/s of the step under each of `--strategies`, with the batch split into one
/// micro-batch per data-parallel rank of the widest strategy.
fn compare_strategies(
    args: &BenchArgs,
    work: &TrainWorkload,
    batch: &GlobalBatch,
    backend: &Arc<dyn Backend>,
) -> Result<(), String> {
    let strategies = args
        .strategies
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|e: luoshu_dist::Error| e.to_string())
        })
        .collect::<Result<Vec<luoshu_dist::Strategy>, String>>()?;
    let parts = strategies.iter().map(|s| s.dp).max().unwrap_or(1);
    let batch = strategies::split_rows(batch, parts)?;
    println!(
        "strategies (ranks are threads sharing the {} cores; the batch as {parts} micro-batches):",
        work.threads
    );
    let overlaps: &[bool] = match args.overlap.as_str() {
        "on" => &[true],
        "off" => &[false],
        "both" => &[false, true],
        other => return Err(format!("--overlap takes on, off or both, not `{other}`")),
    };
    println!(
        "{:<16} {:>8} {:>10} {:>10}",
        "strategy", "overlap", "tokens/s", "step ms"
    );
    for strategy in strategies {
        // Overlap only changes how data-parallel replicas reduce gradients.
        let choices = if strategy.replicas() > 1 {
            overlaps
        } else {
            &overlaps[..1]
        };
        for &overlap in choices {
            let train = TrainConfig {
                overlap_reduction: overlap,
                ..work.train.clone()
            };
            let (seconds, overlapped) = strategies::measure(
                &work.model,
                &train,
                &batch,
                strategy,
                work.warmup,
                work.steps,
                backend,
            )?;
            println!(
                "{:<16} {:>8} {:>10.0} {:>10.1}",
                strategy.to_string(),
                if overlapped { "on" } else { "off" },
                work.tokens_per_step() as f64 / seconds,
                seconds * 1e3
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_shifts_targets_by_one_and_counts_every_token() {
        let tokens = random_tokens(3, 5, 17);
        assert!(tokens.iter().all(|&t| (0..17).contains(&t)));
        let batch = global_batch(&tokens, 3, 5);
        let micro = &batch.buckets[0].micro_batches[0];
        assert_eq!((micro.rows, micro.seq_len, batch.target_tokens), (3, 5, 15));
        for r in 0..3 {
            let row = &tokens[r * 6..][..6];
            assert_eq!(&micro.inputs[r * 5..][..5], &row[..5]);
            assert_eq!(&micro.targets[r * 5..][..5], &row[1..]);
        }
    }

    #[test]
    fn the_learning_rate_is_constant() {
        let config = train_config();
        config.validate().unwrap();
        let lr = config.schedule.peak_lr;
        assert!([0, 1, 100].iter().all(|&s| config.schedule.lr_at(s) == lr));
    }
}
