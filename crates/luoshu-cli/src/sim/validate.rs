//! `luoshu sim validate`: the cost model against this machine. It calibrates on 1 and on
//! 2 threads ranks, then trains a few steps of each model under `single` (1 rank), `dp2`,
//! `tp2`, `pp2` and a hot-switching table (2 ranks), each system in a fresh child process
//! so that its peak memory is its own, and prints predicted against measured step time
//! (target: within 25 %) and memory (within 15 %). Last, on the default model, it runs the
//! measured probe and the cost model on the same sample and says whether they choose the
//! same strategies, and where not, why.

use super::calibrate::{budget, calibrate};
use crate::bench::measurement::median;
use crate::error_text::text;
use crate::train::auto::{cost_model_table, describe_table, probe_table};
use crate::train::config::{HotSwitchConfig, ModelChoice, RunConfig};
use crate::train::data;
use crate::train::runner::Runner;
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_data::GlobalBatch;
use luoshu_dist::Strategy;
use luoshu_sim::compiled::{plan_arena_bytes_all_ranks, plan_shapes};
use luoshu_sim::real_step::predict_step;
use luoshu_sim::{Hardware, Simulator};
use luoshu_train::hot::probe::{candidate_strategies, ProbeTable};
use luoshu_train::hot::BucketStrategies;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

/// Predicted step time within this fraction of the measured one.
const TIME_TARGET: f64 = 0.25;
/// Predicted memory within this fraction of the measured one.
const MEMORY_TARGET: f64 = 0.15;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Models (presets or model TOML files); `default` is `luoshu train`'s.
    #[arg(long, value_delimiter = ',', default_value = "bench-5m,default")]
    pub models: Vec<String>,
    /// The hot-switching table validated beside the static strategies.
    #[arg(long, default_value = "64:dp2,256:tp2")]
    pub hot_switch: String,
    /// Unmeasured steps first (plans compiled, buffers allocated).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Measured steps; the median counts.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Seconds each calibration kernel is timed for.
    #[arg(long, default_value_t = 0.5)]
    pub calibrate_seconds: f64,
    /// Where the two calibrations are written (`local-1.toml`, `local-2.toml`).
    #[arg(long, default_value = "hardware")]
    pub hardware_dir: PathBuf,
    /// Corpus (default: `luoshu train`'s).
    #[arg(long)]
    pub data: Option<String>,
    /// Internal: measure one `MODEL|SYSTEM|HARDWARE` in this process (a child of validate;
    /// `|` because a hot-switching table holds commas).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

/// A system validated: a static strategy, or the hot-switching table.
#[derive(Debug, Clone, PartialEq)]
enum System {
    Static(Strategy),
    Hot(String),
}

impl System {
    fn parse(spec: &str) -> Result<Self, String> {
        match spec.strip_prefix("hot:") {
            Some(table) => Ok(System::Hot(table.to_string())),
            None => spec.parse().map(System::Static).map_err(text),
        }
    }

    fn name(&self) -> String {
        match self {
            System::Static(s) => s.to_string(),
            System::Hot(table) => format!("hot:{table}"),
        }
    }
}

/// The run configuration of `model` under `system` on `data`.
fn config_for(model: &str, system: &System, data: Option<&str>) -> Result<RunConfig, String> {
    let mut config = RunConfig::default();
    if model != "default" {
        config.model = ModelChoice::from_arg(model)?;
    }
    if let Some(path) = data {
        config.data.path = Some(path.to_string());
    }
    match system {
        System::Static(s) => config.strategy = s.to_string(),
        System::Hot(table) => {
            config.hot_switch = Some(HotSwitchConfig {
                buckets: table.clone(),
                update_strategy: None,
            })
        }
    }
    config.validate()?;
    Ok(config)
}

/// The configuration's data: `count` global batches of its training loader.
fn batches(config: &RunConfig, vocab: usize, count: usize) -> Result<Vec<GlobalBatch>, String> {
    let dir = std::env::temp_dir().join(format!("luoshu-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let prepared = data::prepare(
        config,
        vocab,
        &dir.join("tokenizer.json"),
        false,
        &mut |_| {},
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut prepared = prepared?;
    Ok((0..count).map(|_| prepared.train.next_batch()).collect())
}

/// Resident and peak resident bytes of this process (Linux `VmRSS`, `VmHWM`).
fn resident() -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("memory is measured from /proc/self/status: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or(format!("/proc/self/status has no {name}"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("unreadable {line}"))?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One system measured and predicted, as the child prints it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    measured_seconds: f64,
    predicted_seconds: f64,
    measured_bytes: f64,
    predicted_bytes: f64,
}

/// The child: trains `system` on `model` for warm-up + measured steps and predicts the
/// same steps on `hardware`.
fn run_child(spec: &str, args: &ValidateArgs) -> Result<Outcome, String> {
    let parts: Vec<&str> = spec.splitn(3, '|').collect();
    let [model, system, hardware] = parts[..] else {
        return Err(format!("--child takes MODEL|SYSTEM|HARDWARE, got {spec}"));
    };
    let system = System::parse(system)?;
    let config = config_for(model, &system, args.data.as_deref())?;
    let model = config.model.resolve()?;
    let batches = batches(&config, model.vocab_size, args.warmup + args.steps)?;
    let (strategy, plan) = match config.hot_switch_plan()? {
        Some((buckets, update)) => (update, Some((buckets, update))),
        None => (config.strategy()?, None),
    };
    let devices = strategy.devices();
    // Peak memory from here on: the kernel resets VmHWM to the current resident set.
    std::fs::write("/proc/self/clear_refs", "5")
        .map_err(|e| format!("cannot reset the peak resident set: {e}"))?;
    let (before, _) = resident()?;
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let mut times = threads::run(devices, |world| -> Result<Vec<f64>, String> {
        let mut runner = Runner::new(
            &config,
            &model,
            (Some(strategy), plan.clone()),
            backend.clone(),
            world.clone(),
        )?;
        let mut times = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            world.barrier().map_err(text)?;
            let started = Instant::now();
            runner.train_step(batch)?;
            world.barrier().map_err(text)?;
            if i >= args.warmup {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        Ok(times)
    });
    let mut times = times.remove(0)?;
    let (_, peak) = resident()?;

    let hardware = Hardware::load(hardware).map_err(text)?;
    let sim = Simulator::new(model, hardware, devices, config.train.precision).map_err(text)?;
    let (buckets, update) = match plan {
        Some(plan) => plan,
        None => (
            BucketStrategies::new(vec![(config.data.max_len, strategy)]).map_err(text)?,
            strategy,
        ),
    };
    let mut predicted = Vec::new();
    let mut state_bytes = 0.0f64;
    for batch in &batches[args.warmup..] {
        let p = predict_step(&sim, &buckets, update, batch).map_err(text)?;
        predicted.push(p.seconds);
        state_bytes = state_bytes.max(p.memory_all_ranks.state());
    }
    // Activations as the runtimes hold them: every strategy keeps a compiled plan (and
    // its arena) per micro-batch shape it ran, warm-up included.
    let mut arena_bytes = 0.0;
    for strategy in buckets.strategies() {
        let micro_batches = batches
            .iter()
            .flat_map(|b| &b.buckets)
            .filter(|b| buckets.strategy_for(b.seq_len).ok() == Some(strategy));
        let shapes = plan_shapes(micro_batches.flat_map(|b| &b.micro_batches), strategy);
        arena_bytes += plan_arena_bytes_all_ranks(&sim.model, sim.precision, strategy, &shapes)
            .map_err(text)?;
    }
    let predicted_bytes = state_bytes + arena_bytes;
    Ok(Outcome {
        measured_seconds: median(&mut times),
        predicted_seconds: median(&mut predicted),
        measured_bytes: peak.saturating_sub(before) as f64,
        predicted_bytes,
    })
}

/// Runs one system in a child process and reads its outcome.
fn measure_in_child(
    args: &ValidateArgs,
    model: &str,
    system: &System,
    hardware: &Path,
) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(text)?;
    let mut command = Command::new(exe);
    command.args(["sim", "validate", "--child"]).arg(format!(
        "{model}|{}|{}",
        system.name(),
        hardware.display()
    ));
    command.args(["--warmup", &args.warmup.to_string()]);
    command.args(["--steps", &args.steps.to_string()]);
    if let Some(data) = &args.data {
        command.arg("--data").arg(data);
    }
    let output = command.output().map_err(text)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{model} under {}: {}{}",
            system.name(),
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("outcome "))
        .ok_or(format!("no outcome line in {stdout:?}"))?;
    let values: Vec<f64> = line
        .split_whitespace()
        .map(|v| v.parse().map_err(text))
        .collect::<Result<_, String>>()?;
    let [measured_seconds, predicted_seconds, measured_bytes, predicted_bytes] = values[..] else {
        return Err(format!("bad outcome line {line:?}"));
    };
    Ok(Outcome {
        measured_seconds,
        predicted_seconds,
        measured_bytes,
        predicted_bytes,
    })
}

/// `predicted / measured − 1`.
fn error(predicted: f64, measured: f64) -> f64 {
    predicted / measured - 1.0
}

fn verdict(error: f64, target: f64) -> &'static str {
    match error.abs() <= target {
        true => "ok",
        false => "MISS",
    }
}

pub fn run(args: &ValidateArgs) -> Result<ExitCode, String> {
    if let Some(spec) = &args.child {
        let o = run_child(spec, args)?;
        println!(
            "outcome {} {} {} {}",
            o.measured_seconds, o.predicted_seconds, o.measured_bytes, o.predicted_bytes
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    let budget = budget(args.calibrate_seconds, "--calibrate-seconds")?;
    let mut hardware = Vec::new();
    for devices in [1, 2] {
        let path = args.hardware_dir.join(format!("local-{devices}.toml"));
        println!(
            "calibrating on {devices} threads rank(s) into {} ...",
            path.display()
        );
        calibrate(devices, budget, &path)?;
        hardware.push(path);
    }
    let systems = [
        System::Static(Strategy::SINGLE),
        System::Static("dp2".parse().map_err(text)?),
        System::Static("tp2".parse().map_err(text)?),
        System::Static("pp2".parse().map_err(text)?),
        System::Hot(args.hot_switch.clone()),
    ];
    println!(
        "{:<10} {:<22} {:>10} {:>10} {:>7} {:>4}  {:>10} {:>10} {:>7} {:>4}",
        "model", "system", "step ms", "predicted", "error", "", "MiB", "predicted", "error", ""
    );
    let (mut time_ok, mut memory_ok, mut total) = (0, 0, 0);
    for model in &args.models {
        for system in &systems {
            let devices = match system {
                System::Static(s) => s.devices(),
                System::Hot(_) => 2,
            };
            let o = measure_in_child(args, model, system, &hardware[devices - 1])?;
            let time_error = error(o.predicted_seconds, o.measured_seconds);
            let memory_error = error(o.predicted_bytes, o.measured_bytes);
            time_ok += usize::from(time_error.abs() <= TIME_TARGET);
            memory_ok += usize::from(memory_error.abs() <= MEMORY_TARGET);
            total += 1;
            println!(
                "{:<10} {:<22} {:>10.1} {:>10.1} {:>+6.0}% {:>4}  {:>10.1} {:>10.1} {:>+6.0}% {:>4}",
                model,
                system.name(),
                1e3 * o.measured_seconds,
                1e3 * o.predicted_seconds,
                100.0 * time_error,
                verdict(time_error, TIME_TARGET),
                o.measured_bytes / (1 << 20) as f64,
                o.predicted_bytes / (1 << 20) as f64,
                100.0 * memory_error,
                verdict(memory_error, MEMORY_TARGET),
            );
        }
    }
    println!(
        "step time within {:.0}%: {time_ok} of {total}; memory within {:.0}%: {memory_ok} of \
         {total} (memory: the peak resident set's growth while the ranks train, against the \
         model's parameters, gradients, optimizer state and activations of every rank)",
        100.0 * TIME_TARGET,
        100.0 * MEMORY_TARGET
    );
    compare_choices(args, &hardware[1])?;
    Ok(match time_ok == total && memory_ok == total {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// The cost model's and the measured probe's choice on `luoshu train`'s default run (its
/// model, buckets and first batches, 2 ranks), side by side.
fn compare_choices(args: &ValidateArgs, hardware: &Path) -> Result<(), String> {
    let mut config = RunConfig::default();
    if let Some(path) = &args.data {
        config.data.path = Some(path.clone());
    }
    let model = config.validate()?;
    let sample = batches(&config, model.vocab_size, 2)?;
    let candidates = candidate_strategies(&model, 2);
    let hardware = Hardware::load(&hardware.display().to_string()).map_err(text)?;
    let predicted = cost_model_table(&config, &model, &hardware, &candidates, &sample)?;
    let measured = probe_table(&config, &model, &candidates, &sample)?;
    let update = config.update_strategy()?;
    let (model_choice, model_update) = predicted.choose(update).map_err(text)?;
    let (probe_choice, probe_update) = measured.choose(update).map_err(text)?;
    println!("\nthe default run's choice on 2 ranks (predicted seconds, then measured):");
    for line in describe_table(&predicted, &model_choice, model_update) {
        println!("  cost model  {line}");
    }
    for line in describe_table(&measured, &probe_choice, probe_update) {
        println!("  probe       {line}");
    }
    match (model_choice == probe_choice, model_update == probe_update) {
        (true, true) => println!("the cost model and the probe agree: {model_choice}"),
        _ => {
            println!(
                "they disagree: cost model {model_choice} (update {model_update}), probe \
                 {probe_choice} (update {probe_update}):"
            );
            for line in disagreements(&predicted, &measured, &model_choice, &probe_choice) {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

/// Per bucket where the choices differ: how far apart the two strategies are by the
/// model and by the probe (a gap inside the model's error, or a probe time inside the
/// noise of one timed run, explains the disagreement).
fn disagreements(
    predicted: &ProbeTable,
    measured: &ProbeTable,
    model_choice: &BucketStrategies,
    probe_choice: &BucketStrategies,
) -> Vec<String> {
    let seconds = |table: &ProbeTable, b: usize, s: Strategy| {
        let i = table.candidates.iter().position(|c| *c == s)?;
        table.seconds[b][i]
    };
    let mut lines = Vec::new();
    for (b, &edge) in predicted.edges.iter().enumerate() {
        let (Ok(ours), Ok(theirs)) = (
            model_choice.strategy_for(edge),
            probe_choice.strategy_for(edge),
        ) else {
            continue;
        };
        let times = (
            seconds(predicted, b, ours),
            seconds(predicted, b, theirs),
            seconds(measured, b, ours),
            seconds(measured, b, theirs),
        );
        if let (Some(p_ours), Some(p_theirs), Some(m_ours), Some(m_theirs)) = times {
            if ours != theirs {
                lines.push(format!(
                    "≤{edge}: predicted {theirs} {:+.0}% against {ours}; measured {ours} \
                     {:+.0}% against {theirs} (the model is validated to {:.0}%)",
                    100.0 * (p_theirs / p_ours - 1.0),
                    100.0 * (m_ours / m_theirs - 1.0),
                    100.0 * TIME_TARGET
                ));
            }
        }
    }
    if lines.is_empty() {
        lines.push(
            "every sampled bucket gets the same strategy; the update strategies differ".into(),
        );
    }
    lines
}
