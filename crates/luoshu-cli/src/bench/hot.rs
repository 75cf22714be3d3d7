//! `luoshu bench hot --hot-switch 128:dp2,1024:tp2`: tokens/s of hot switching against
//! every static strategy it uses, on the same global batches of a real corpus (the
//! default one, or `--data`), in one process. Rounds interleave the systems, so a change
//! of machine load hits each alike. Also the share of hot switching's step time spent
//! switching, and the bytes it switches per step next to moving every rank's whole
//! destination layout (no reuse of what a rank already holds).

use super::args::BenchArgs;
use super::measurement::SEED;
use crate::error_text::text;
use crate::train::config::{HotSwitchConfig, RunConfig};
use crate::train::data;
use luoshu_comm::{threads, Communicator};
use luoshu_data::GlobalBatch;
use luoshu_dist::switch::human_bytes;
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::ModelConfig;
use luoshu_train::hot::{BucketStrategies, HotSwitchTrainer};
use luoshu_train::parallel::ParallelTrainer;
use std::sync::Arc;
use std::time::Instant;

/// What one system did over the measured steps of every round.
#[derive(Debug, Clone, Default)]
struct Totals {
    seconds: f64,
    tokens: usize,
    steps: usize,
    switch_seconds: f64,
    switch_bytes: usize,
    without_reuse: usize,
    /// Hot switching only: seconds per phase strategy, in order of first appearance.
    phases: Vec<(String, f64)>,
    last_loss: f64,
}

/// One rank's trainer of one system.
enum System {
    Hot(Box<HotSwitchTrainer>),
    Static(Box<ParallelTrainer>),
}

impl System {
    /// One step on `batch`, adding it to `totals` when `measured`.
    fn step(
        &mut self,
        batch: &GlobalBatch,
        totals: &mut Totals,
        measured: bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let (loss, switch_seconds, switch_bytes, without_reuse, phases) = match self {
            System::Hot(t) => {
                let s = t.train_step(batch).map_err(text)?;
                (
                    s.step.loss,
                    s.switch_seconds,
                    s.switch_bytes,
                    s.switch_bytes_without_reuse,
                    s.phases,
                )
            }
            System::Static(t) => (t.train_step(batch).map_err(text)?.loss, 0.0, 0, 0, vec![]),
        };
        if measured {
            for phase in phases {
                let name = phase.strategy.to_string();
                match totals.phases.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, seconds)) => *seconds += phase.seconds,
                    None => totals.phases.push((name, phase.seconds)),
                }
            }
            totals.seconds += start.elapsed().as_secs_f64();
            totals.tokens += batch.target_tokens;
            totals.steps += 1;
            totals.switch_seconds += switch_seconds;
            totals.switch_bytes += switch_bytes;
            totals.without_reuse += without_reuse;
            totals.last_loss = loss;
        }
        Ok(())
    }
}

/// The run configuration of the benchmark: the train defaults with the flags' model
/// (its context set to --max-len), corpus, lengths and plan.
fn bench_config(args: &BenchArgs) -> Result<RunConfig, String> {
    let mut config = RunConfig::default();
    // The preset with room for --max-len tokens (its other fields unchanged).
    let model = ModelConfig {
        max_seq_len: args.max_len,
        ..ModelConfig::preset(&args.config).map_err(text)?
    };
    config.model = crate::train::config::ModelChoice::Inline(model);
    config.data.path = args.data.clone();
    config.data.max_len = args.max_len;
    config.data.bucket_edges = args
        .bucket_edges
        .split(',')
        .map(|e| {
            e.trim()
                .parse()
                .map_err(|_| format!("--bucket-edges: `{e}` is not a length"))
        })
        .collect::<Result<_, _>>()?;
    config.hot_switch = Some(HotSwitchConfig {
        buckets: args
            .hot_switch
            .clone()
            .ok_or("bench hot needs --hot-switch EDGE:STRATEGY,... (e.g. 128:dp2,1024:tp2)")?,
        update_strategy: args.update_strategy.clone(),
    });
    config.validate()?;
    Ok(config)
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    if args.steps == 0 || args.rounds == 0 {
        return Err("bench hot needs --steps and --rounds of at least 1".into());
    }
    let config = bench_config(args)?;
    let model = config.model.resolve()?;
    let (buckets, update) = config
        .hot_switch_plan()?
        .ok_or("bench hot needs a named plan, not `auto`")?;
    let mut statics = buckets.strategies();
    if !statics.contains(&update) {
        statics.push(update);
    }
    let dir = std::env::temp_dir().join(format!("luoshu-bench-hot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut prepared = data::prepare(
        &config,
        model.vocab_size,
        &dir.join("tokenizer.json"),
        false,
        &mut |line| println!("{line}"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    let batches: Vec<GlobalBatch> = (0..args.warmup + args.steps)
        .map(|_| prepared.train.next_batch())
        .collect();
    println!(
        "hot {buckets} (update {update}) against {} on {} threads ranks; model {} ({:.2} M \
         parameters), buckets {:?}, {} tokens/step; {} measured steps × {} rounds after {} \
         warm-up, systems interleaved per round",
        statics
            .iter()
            .map(Strategy::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        buckets.devices(),
        args.config,
        model.num_parameters() as f64 / 1e6,
        config.data.bucket_edges,
        config.data.global_batch_tokens,
        args.steps,
        args.rounds,
        args.warmup
    );
    let mut results = threads::run(buckets.devices(), |world| {
        measure_rank(
            world,
            &config,
            &model,
            (&buckets, update),
            &statics,
            &batches,
            args,
        )
    });
    let totals = results.remove(0)?;
    report(&buckets, update, &statics, &totals);
    Ok(())
}

/// Collective: every system's totals on this rank.
fn measure_rank(
    world: Arc<dyn Communicator>,
    config: &RunConfig,
    model: &ModelConfig,
    (buckets, update): (&BucketStrategies, Strategy),
    statics: &[Strategy],
    batches: &[GlobalBatch],
    args: &BenchArgs,
) -> Result<Vec<Totals>, String> {
    let backend = luoshu_backend::backend_by_name(&args.backend).map_err(|e| e.to_string())?;
    let mut systems = vec![System::Hot(Box::new(
        HotSwitchTrainer::new(
            model.clone(),
            config.train.clone(),
            backend.clone(),
            world.clone(),
            buckets.clone(),
            update,
            SEED,
        )
        .map_err(text)?,
    ))];
    for &strategy in statics {
        let mesh = Mesh::new(strategy, world.clone()).map_err(text)?;
        systems.push(System::Static(Box::new(
            ParallelTrainer::new(
                model.clone(),
                config.train.clone(),
                backend.clone(),
                mesh,
                SEED,
            )
            .map_err(text)?,
        )));
    }
    let mut totals = vec![Totals::default(); systems.len()];
    for (system, total) in systems.iter_mut().zip(&mut totals) {
        for batch in &batches[..args.warmup] {
            system.step(batch, total, false)?;
        }
    }
    for _ in 0..args.rounds {
        for (system, total) in systems.iter_mut().zip(&mut totals) {
            for batch in &batches[args.warmup..] {
                system.step(batch, total, true)?;
            }
        }
    }
    Ok(totals)
}

fn report(buckets: &BucketStrategies, update: Strategy, statics: &[Strategy], totals: &[Totals]) {
    println!(
        "{:<36} {:>10} {:>9} {:>9} {:>16} {:>18} {:>10}",
        "system", "tokens/s", "step ms", "switch %", "switched/step", "no reuse/step", "last loss"
    );
    let names = std::iter::once(format!("hot {buckets} → {update}"))
        .chain(statics.iter().map(|s| format!("static {s}")));
    for (name, t) in names.zip(totals) {
        let steps = t.steps.max(1);
        let (share, switched, no_reuse) = match name.starts_with("hot") {
            true => (
                format!("{:.1}", 100.0 * t.switch_seconds / t.seconds.max(1e-9)),
                human_bytes(t.switch_bytes / steps),
                human_bytes(t.without_reuse / steps),
            ),
            false => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{name:<36} {:>10.0} {:>9.1} {share:>9} {switched:>16} {no_reuse:>18} {:>10.4}",
            t.tokens as f64 / t.seconds.max(1e-9),
            1e3 * t.seconds / steps as f64,
            t.last_loss
        );
    }
    let hot = &totals[0];
    let phase_total: f64 = hot.phases.iter().map(|(_, s)| s).sum();
    let split: Vec<String> = hot
        .phases
        .iter()
        .map(|(name, s)| format!("{name} phases {:.0}%", 100.0 * s / hot.seconds.max(1e-9)))
        .collect();
    println!(
        "hot switching's time: {}, switching {:.0}%, the update and the rest {:.0}%",
        split.join(", "),
        100.0 * hot.switch_seconds / hot.seconds.max(1e-9),
        100.0 * (hot.seconds - phase_total - hot.switch_seconds).max(0.0) / hot.seconds.max(1e-9)
    );
    let hot = hot.tokens as f64 / hot.seconds.max(1e-9);
    if let Some((best, s)) = statics
        .iter()
        .zip(&totals[1..])
        .map(|(s, t)| (t.tokens as f64 / t.seconds.max(1e-9), s))
        .max_by(|a, b| a.0.total_cmp(&b.0))
    {
        println!(
            "hot switching: {:.2}× the best static strategy ({s}, {best:.0} tokens/s)",
            hot / best
        );
    }
}
