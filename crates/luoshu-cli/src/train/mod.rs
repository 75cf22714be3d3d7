//! `luoshu train`: configure, load data, train with a progress bar, evaluate, checkpoint,
//! and leave `runs/<name>/` with the config, tokenizer, metrics, loss plot and checkpoints.

pub(crate) mod auto;
pub(crate) mod config;
pub(crate) mod data;
mod lock;
pub(crate) mod memory;
mod metrics;
mod plot;
pub(crate) mod runner;
mod stop;

use crate::error::Error;
use config::RunConfig;
use indicatif::{ProgressBar, ProgressStyle};
use luoshu_backend::Backend;
use luoshu_comm::{threads, Communicator};
use luoshu_data::{GlobalBatch, LengthBucketLoader};
use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;
use luoshu_train::checkpoint::{self, CheckpointMeta};
use memory::Ranks;
use metrics::{MetricsLog, MetricsRow};
use runner::{describe_phases, Runner};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Where runs are written, relative to the working directory.
pub(crate) const RUNS_DIR: &str = "runs";

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Read the run configuration from this TOML file (see --print-config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the full configuration (defaults, then --config, then flags) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Optimizer steps to reach.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Model preset (tiny, bench-5m, llama-7b, ...), or a TOML file of model fields
    /// overriding one (`preset = "llama-7b"`, `n_layers = 48`, ...).
    #[arg(long)]
    pub model: Option<String>,
    /// Override one field of the model, e.g. `--model-field n_layers=8 --model-field
    /// d_model=512` (repeatable; applied after --model and the config's `[model]`).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub model_field: Vec<String>,
    /// Training text: a file, a directory or a glob (default: the cargo registry's Rust sources).
    #[arg(long)]
    pub data: Option<String>,
    /// Run name: output goes to runs/NAME/.
    #[arg(long)]
    pub name: Option<String>,
    /// Seed of the data split, data order and initialization.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue bit-identically from the latest checkpoint of runs/NAME (with the config
    /// saved there unless --config is given).
    #[arg(long)]
    pub resume: bool,
    /// Delete the checkpoints of an earlier run of the same name and start over.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Ranks to train on (threads in this process; default: the named strategy's, else
    /// under `auto` every core). With a static strategy in the config, `--devices N` alone
    /// means `--strategy dpN`.
    #[arg(long)]
    pub devices: Option<usize>,
    /// Parallel strategy: `single`, or a product of `dpN`, `cpN` (context parallelism:
    /// sequences split along their length; with dp and tp only), `tpN`, `ppN` and `zero1`,
    /// e.g. `dp2tp2`, `tp4`, `dp2pp2`, `dp4zero1`, `dp2cp2`; or `auto` (the default): each
    /// length bucket's strategy chosen at start-up by the cost model calibrated on this
    /// machine (`hardware/local.toml` from `luoshu sim calibrate`, else measured then); or
    /// `probe`: chosen by running each bucket under every strategy. A run may resume under
    /// another strategy.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Hot switching: `EDGE:STRATEGY,...` ascending, e.g. `256:dp2,1024:tp2` — buckets of
    /// sequences up to each edge run under its strategy, one update per step; `auto`: the
    /// calibrated cost model chooses each bucket's strategy; `probe`: a measured probe does.
    #[arg(long, conflicts_with = "strategy")]
    pub hot_switch: Option<String>,
    /// Under hot switching, the strategy that keeps the master weights and optimizer state
    /// (default: the longest bucket's; may add zero1, e.g. `dp2zero1`).
    #[arg(long, requires = "hot_switch")]
    pub update_strategy: Option<String>,
    /// How ranks talk: `threads` (ranks are threads of this process) or `mpi` (ranks are
    /// the processes of `mpirun`; needs a build with `--features mpi`).
    #[arg(long, default_value = "threads")]
    pub comm: CommBackend,
    /// Refuse to start unless one rank's estimated memory (parameters, gradients, AdamW
    /// moments, activations) fits in this many bytes, e.g. `16G`. The machine's available
    /// memory is always a limit.
    #[arg(long, value_parser = memory::parse_bytes)]
    pub memory_per_rank: Option<u64>,
    /// The operator backend: `cpu` (optimized kernels) or `reference` (the plain
    /// implementations the conformance suite checks `cpu` against; slow).
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// `on` (the default): several documents share each row of a bucket; `off`: one padded
    /// document per row.
    #[arg(long)]
    pub packing: Option<Switch>,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// The communication backend of `luoshu train --comm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommBackend {
    Threads,
    Mpi,
}

/// The configuration: defaults, or `--config` (else the run's own config when resuming),
/// then the command-line overrides.
fn build_config(args: &TrainArgs) -> Result<RunConfig, Error> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| RunConfig::default().name);
    let saved = args
        .resume
        .then(|| Path::new(RUNS_DIR).join(&name).join("config.toml"));
    let mut config = match (&args.config, &saved) {
        (Some(path), _) => read_config(path)?,
        (None, Some(path)) if !path.exists() => {
            return Err(Error::NoRunToResume {
                run: name,
                saved_config: path.clone(),
            })
        }
        (None, Some(path)) => read_config(path).map_err(|e| match e {
            unreadable @ Error::ConfigUnreadable { .. } => unreadable,
            damaged => Error::Message(format!(
                "{damaged}. The run's saved configuration is damaged or from another version \
                 of luoshu: fix the line named, or resume with --config FILE"
            )),
        })?,
        (None, None) => RunConfig::default(),
    };
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(model) = &args.model {
        config.model = config::ModelChoice::from_arg(model)?;
    }
    config.model = config.model.with_fields(&args.model_field)?;
    if let Some(data) = &args.data {
        config.data.path = Some(data.clone());
    }
    if let Some(name) = &args.name {
        config.name = name.clone();
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(packing) = args.packing {
        config.data.packing = packing == Switch::On;
    }
    if let Some(buckets) = &args.hot_switch {
        config.hot_switch = Some(config::HotSwitchConfig {
            buckets: buckets.clone(),
            update_strategy: args.update_strategy.clone(),
        });
    }
    match (&args.strategy, args.devices) {
        (Some(strategy), _) => {
            config.strategy = strategy.clone();
            // An explicit strategy replaces a saved hot-switching plan.
            config.hot_switch = None;
        }
        // Without a strategy, `--devices N` is data parallelism on N ranks, or the
        // automatic choice on N ranks.
        (None, Some(devices)) if config.hot_switch.is_none() && !config.is_auto() => {
            config.strategy = format!("dp{devices}")
        }
        _ => {}
    }
    // A named hot-switching plan updates (and checkpoints) under the update strategy.
    if let Some((_, update)) = config.hot_switch_plan()? {
        config.strategy = update.to_string();
    }
    if !config.is_auto() {
        let strategy = config.strategy()?;
        if let Some(devices) = args.devices.filter(|&d| d != strategy.devices()) {
            return Err(Error::DevicesMismatch {
                devices,
                strategy: strategy.to_string(),
                needs: strategy.devices(),
            });
        }
    }
    Ok(config)
}

fn read_config(path: &Path) -> Result<RunConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(RunConfig::from_toml(&text, &path.display().to_string())?)
}

/// `32×12 64×5`: sequence length × rows of each bucket in a batch.
fn describe_buckets(batch: &GlobalBatch) -> String {
    batch
        .buckets
        .iter()
        .map(|b| {
            let rows: usize = b.micro_batches.iter().map(|m| m.rows).sum();
            format!("{}×{rows}", b.seq_len)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Print a line above the progress bar (or plainly when the bar is hidden).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn progress_bar(start: u64, steps: u64) -> Result<ProgressBar, String> {
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "step {pos}/{len} [{bar:30}] {msg} | {elapsed_precise}, ETA {eta}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    bar.set_position(start);
    bar.reset_eta();
    Ok(bar)
}

pub fn run(args: &TrainArgs) -> Result<ExitCode, Error> {
    let config = build_config(args)?;
    let model = config.validate()?;
    if args.print_config {
        print!("{}", config::annotated_toml(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    // A named strategy, or none when the probe chooses at start-up.
    let strategy = (!config.is_auto()).then(|| config.strategy()).transpose()?;
    let stop = stop::StopRequest::install()?;
    let outcome = match args.comm {
        CommBackend::Threads => {
            let devices = match strategy {
                Some(s) => s.devices(),
                None => args.devices.unwrap_or_else(machine_cores),
            };
            // Threads share this process's memory.
            let ranks = Ranks {
                devices,
                local: devices,
            };
            let setup = Setup::new(args, config, model, strategy, ranks, true)?;
            let results = threads::run(devices, |comm| {
                let loader = setup.data.train.clone();
                train_rank(comm, &setup, loader, &stop)
            });
            // Rank 0's error first: a failing rank makes its peers fail too.
            let outcomes = results.into_iter().collect::<Result<Vec<_>, String>>()?;
            outcomes.into_iter().next().unwrap_or(Outcome::Finished)
        }
        CommBackend::Mpi => run_mpi(args, config, model, strategy, &stop)?,
    };
    match outcome {
        Outcome::Finished => Ok(ExitCode::SUCCESS),
        // The conventional status of a process ended by the signal.
        Outcome::Stopped { signal } => Ok(ExitCode::from(128 + signal as u8)),
    }
}

/// The cores this machine offers this process (1 when unknown).
fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a rank's training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It reached the configured number of steps.
    Finished,
    /// A stop signal arrived; the step it was in finished and was checkpointed.
    Stopped { signal: i32 },
}

#[cfg(feature = "mpi")]
fn run_mpi(
    args: &TrainArgs,
    config: RunConfig,
    model: ModelConfig,
    strategy: Option<Strategy>,
    stop: &stop::StopRequest,
) -> Result<Outcome, Error> {
    let world = luoshu_comm::mpi::MpiComm::world(luoshu_comm::DEFAULT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    if let Some(strategy) = strategy.filter(|s| s.devices() != world.size()) {
        return Err(Error::Message(format!(
            "strategy {strategy} needs {} ranks but mpirun started {}",
            strategy.devices(),
            world.size()
        )));
    }
    // An MPI process holds one rank.
    let ranks = Ranks {
        devices: world.size(),
        local: 1,
    };
    // Rank 0 prepares the run directory and trains the tokenizer; the others then reuse it.
    let leader = world.rank() == 0;
    let setup = if leader {
        let setup = Setup::new(args, config, model, strategy, ranks, true);
        world.barrier().map_err(|e| e.to_string())?;
        setup?
    } else {
        world.barrier().map_err(|e| e.to_string())?;
        Setup::new(args, config, model, strategy, ranks, false)?
    };
    let loader = setup.data.train.clone();
    let result = train_rank(world, &setup, loader, stop);
    luoshu_comm::mpi::finalize().map_err(|e| e.to_string())?;
    result.map_err(Error::from)
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(
    _: &TrainArgs,
    _: RunConfig,
    _: ModelConfig,
    _: Option<Strategy>,
    _: &stop::StopRequest,
) -> Result<Outcome, Error> {
    Err(Error::Message(
        "this luoshu was built without MPI: rebuild with `cargo build --release --features mpi` \
         (needs libopenmpi-dev, openmpi-bin and libclang-dev) and launch it with mpirun"
            .into(),
    ))
}

/// What every rank shares: the configuration, the prepared data and the checkpoint to
/// resume from.
struct Setup {
    config: RunConfig,
    model: ModelConfig,
    /// The named strategy (the update strategy of a named hot-switching plan), or `None`
    /// when the strategies are chosen at start-up.
    strategy: Option<Strategy>,
    /// Under `auto` / `probe`: the strategies that can run the model on these ranks and
    /// fit in memory, among which the cost model or the probe chooses.
    candidates: Vec<Strategy>,
    /// The operator backend every rank computes with.
    backend: Arc<dyn Backend>,
    /// For the memory check of the chosen plan.
    ranks: Ranks,
    memory_per_rank: Option<u64>,
    run_dir: PathBuf,
    checkpoint_dir: PathBuf,
    data: data::RunData,
    resume: Option<checkpoint::Checkpoint>,
    /// Whether this process writes the run directory (rank 0 of an MPI job, or the
    /// threads launcher).
    writes: bool,
    /// Held until the training ends, so no other training writes the run directory.
    _run_lock: Option<lock::RunLock>,
}

impl Setup {
    fn new(
        args: &TrainArgs,
        config: RunConfig,
        model: ModelConfig,
        strategy: Option<Strategy>,
        ranks: Ranks,
        writes: bool,
    ) -> Result<Self, Error> {
        // An unknown backend, and then what cannot fit, are refused before the run
        // directory or the data are touched.
        let backend = luoshu_backend::backend_by_name(&args.backend).map_err(|e| e.to_string())?;
        let candidates = match strategy {
            Some(strategy) => {
                match config.hot_switch_plan()? {
                    Some((buckets, update)) => memory::check_plan(
                        &config,
                        &model,
                        (&buckets, update),
                        ranks,
                        args.memory_per_rank,
                    )?,
                    None => memory::check(&config, &model, strategy, ranks, args.memory_per_rank)?,
                };
                Vec::new()
            }
            None => auto::fitting_candidates(&config, &model, ranks, args.memory_per_rank)?,
        };
        let run_dir = Path::new(RUNS_DIR).join(&config.name);
        let checkpoint_dir = run_dir.join("checkpoint");
        if args.resume && !checkpoint::has_checkpoint(&checkpoint_dir) {
            let saved_config = run_dir.join("config.toml");
            return Err(Error::NothingToResume {
                run: config.name.clone(),
                checkpoint_every: config.checkpoint_every,
                saved_config: (args.config.is_none() && saved_config.is_file())
                    .then_some(saved_config),
            });
        }
        let run_lock = match writes {
            true => Some(lock::RunLock::acquire(&run_dir, &mut |w| {
                tracing::warn!("{w}")
            })?),
            false => None,
        };
        if writes {
            prepare_run_dir(args, &run_dir, &checkpoint_dir)?;
        }
        let log = |line: String| {
            if writes {
                println!("{line}");
            }
        };
        let running = match strategy {
            Some(s) => s.to_string(),
            None => "strategies chosen per bucket at start-up".into(),
        };
        log(format!(
            "luoshu train `{}`: {} parameters on {} device{} ({running}, {} backend), {} steps \
             of {} tokens",
            config.name,
            model.num_parameters(),
            ranks.devices,
            if ranks.devices == 1 { "" } else { "s" },
            args.backend,
            config.steps,
            config.data.global_batch_tokens
        ));
        let tokenizer_path = run_dir.join("tokenizer.json");
        let mut data = data::prepare(
            &config,
            model.vocab_size,
            &tokenizer_path,
            args.resume || !writes,
            &mut |line| log(line),
        )?;
        let resume = if args.resume {
            let saved = checkpoint::load_latest(&checkpoint_dir).map_err(|e| e.to_string())?;
            saved.check_model(&model).map_err(|e| e.to_string())?;
            saved
                .check_tokenizer(&data.tokenizer_hash)
                .map_err(|e| e.to_string())?;
            if saved.seed != config.seed {
                return Err(Error::Message(format!(
                    "the checkpoint in {} was trained with seed {} but this run has seed {}; \
                     resume with --seed {}",
                    saved.dir.display(),
                    saved.seed,
                    config.seed,
                    saved.seed
                )));
            }
            data.train.seek(saved.data).map_err(|e| e.to_string())?;
            log(format!(
                "resuming from {} (step {}) under {running}",
                saved.dir.display(),
                saved.state.step
            ));
            Some(saved)
        } else {
            None
        };
        let start = resume.as_ref().map_or(0, |s| s.state.step);
        if start >= config.steps {
            return Err(Error::Message(format!(
                "the run is already at step {start}; pass a larger --steps to continue it"
            )));
        }
        if writes {
            let config_path = run_dir.join("config.toml");
            std::fs::write(&config_path, config.to_toml()?)
                .map_err(|e| format!("{}: {e}", config_path.display()))?;
        }
        Ok(Setup {
            config,
            model,
            strategy,
            candidates,
            backend,
            ranks,
            memory_per_rank: args.memory_per_rank,
            run_dir,
            checkpoint_dir,
            data,
            resume,
            writes,
            _run_lock: run_lock,
        })
    }
}

/// Refuse to mix with an earlier run unless `--resume` or `--overwrite` says how.
fn prepare_run_dir(args: &TrainArgs, run_dir: &Path, checkpoint_dir: &Path) -> Result<(), String> {
    let previous = checkpoint_dir
        .is_dir()
        .then(|| checkpoint::list_steps(checkpoint_dir))
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if args.overwrite {
        std::fs::remove_dir_all(checkpoint_dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(format!("{}: {e}", checkpoint_dir.display())),
        })?;
    } else if !args.resume && !previous.is_empty() {
        return Err(format!(
            "{} already holds checkpoints (latest step {}): pass --resume to continue that run, \
             --overwrite to start it over, or --name to start another",
            run_dir.display(),
            previous.last().copied().unwrap_or_default()
        ));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))
}

/// The training loop of one rank; rank 0 of a writing process reports and checkpoints.
fn train_rank(
    comm: Arc<dyn Communicator>,
    setup: &Setup,
    mut loader: LengthBucketLoader,
    stop: &stop::StopRequest,
) -> Result<Outcome, String> {
    let config = &setup.config;
    let reports = setup.writes && comm.rank() == 0;
    let plan = match setup.strategy {
        Some(_) => config.hot_switch_plan()?,
        None => {
            let chooser = config.chooser().ok_or("no strategy to train under")?;
            let choice = auto::ChoiceSetup {
                config,
                model: &setup.model,
                candidates: &setup.candidates,
                backend: setup.backend.clone(),
                run_dir: &setup.run_dir,
            };
            let (buckets, update) = auto::choose(comm.clone(), &choice, chooser, &loader, reports)?;
            // Each candidate fits alone; the chosen strategies must fit together.
            memory::check_plan(
                config,
                &setup.model,
                (&buckets, update),
                setup.ranks,
                setup.memory_per_rank,
            )?;
            Some((buckets, update))
        }
    };
    let mut trainer = Runner::new(
        config,
        &setup.model,
        (setup.strategy, plan),
        setup.backend.clone(),
        comm.clone(),
    )?;
    if let Some(saved) = &setup.resume {
        trainer.restore(&saved.state)?;
    }
    let running = trainer.describe();
    let start = trainer.step();
    let mut log = match reports {
        true => Some(MetricsLog::open(
            &setup.run_dir.join("metrics.csv"),
            setup.resume.as_ref().map(|s| s.state.step),
        )?),
        false => None,
    };
    let bar = match reports {
        true => progress_bar(start, config.steps)?,
        false => ProgressBar::hidden(),
    };
    let (mut tokens, mut seconds) = (0usize, 0f64);
    let mut last_val = None;
    let mut last_checkpoint = None;
    let wall = Instant::now();
    for step in start + 1..=config.steps {
        let batch = loader.next_batch();
        let buckets = describe_buckets(&batch);
        let step_result = trainer.train_step(&batch)?;
        let stats = step_result.stats;
        let switch_share = step_result.switch_seconds / stats.seconds.max(1e-9);
        tokens += stats.tokens;
        seconds += stats.seconds;
        let tokens_per_s = stats.tokens as f64 / stats.seconds.max(1e-9);
        let last = step == config.steps;
        let val_loss = if step % config.eval_every == 0 || last {
            let v = trainer.evaluate(&setup.data.val)?;
            if reports {
                say(
                    &bar,
                    format!(
                        "step {step}: train loss {:.4}, validation loss {v:.4}",
                        stats.loss
                    ),
                );
            }
            last_val = Some(v);
            Some(v)
        } else {
            None
        };
        if let Some(log) = log.as_mut() {
            log.push(MetricsRow {
                step,
                loss: stats.loss,
                val_loss,
                lr: stats.lr,
                tokens_per_s,
                grad_norm: stats.grad_norm,
                seconds: stats.seconds,
                phases: describe_phases(&step_result.phases),
                switch_seconds: step_result.switch_seconds,
                switch_bytes: step_result.switch_bytes as u64,
            })?;
        }
        let stop_signal = stop.agreed(comm.as_ref())?;
        if step % config.checkpoint_every == 0 || last || stop_signal.is_some() {
            // Collective: every rank contributes its shards; rank 0 writes one canonical
            // (unsharded) checkpoint that any strategy can resume.
            let gathered = trainer.gather_state()?;
            if let (Some(state), true) = (gathered, reports) {
                let meta = CheckpointMeta {
                    model: &setup.model,
                    data: loader.position(),
                    seed: config.seed,
                    tokenizer_hash: &setup.data.tokenizer_hash,
                };
                let dir = checkpoint::save(
                    &setup.checkpoint_dir,
                    &state,
                    &meta,
                    config.keep_checkpoints,
                )
                .map_err(|e| {
                    format!(
                        "{e}. Free space on that disk or make {} writable, then continue with \
                         `luoshu train --resume --name {}`",
                        setup.checkpoint_dir.display(),
                        config.name
                    )
                })?;
                last_checkpoint = Some(dir);
            }
        }
        let phases: Vec<String> = step_result
            .phases
            .iter()
            .map(|p| format!("{}×{}", p.strategy, p.sequences))
            .collect();
        let switching = match phases.is_empty() {
            true => String::new(),
            false => format!(
                " | {} | switch {:.0}%",
                phases.join(" "),
                100.0 * switch_share
            ),
        };
        bar.set_message(format!(
            "{running} | loss {:.3} | {:.0} tok/s | buckets {buckets}{switching}",
            stats.loss,
            tokens as f64 / seconds.max(1e-9)
        ));
        bar.set_position(step);
        if let Some(signal) = stop_signal {
            bar.finish_and_clear();
            if reports {
                eprintln!(
                    "stopped by {} after step {step}; the checkpoint is in {}. Resume with \
                     `luoshu train --resume --name {}`",
                    stop::signal_name(signal),
                    last_checkpoint
                        .as_deref()
                        .unwrap_or(&setup.checkpoint_dir)
                        .display(),
                    config.name
                );
            }
            return Ok(Outcome::Stopped { signal });
        }
    }
    bar.finish_and_clear();
    let Some(log) = log else {
        return Ok(Outcome::Finished);
    };
    let plot_path = setup.run_dir.join("loss.png");
    if let Err(e) = plot::plot_loss(log.rows(), &plot_path) {
        tracing::warn!("{e}");
    }
    let time_path = setup.run_dir.join("time.png");
    if let Err(e) = plot::plot_time(log.rows(), &time_path) {
        tracing::warn!("{e}");
    }
    let rows = log.rows();
    let first = rows.first().map_or(f64::NAN, |r| r.loss);
    let final_loss = rows.last().map_or(f64::NAN, |r| r.loss);
    println!(
        "done: steps {}..{} in {:.1} s; train loss {first:.4} → {final_loss:.4}, validation loss {:.4}; {:.0} tokens/s",
        start + 1,
        config.steps,
        wall.elapsed().as_secs_f64(),
        last_val.unwrap_or(f64::NAN),
        tokens as f64 / seconds.max(1e-9)
    );
    let choice = match setup.strategy {
        None => "strategy.toml, ",
        Some(_) => "",
    };
    println!(
        "wrote {}/{{config.toml, {choice}tokenizer.json, metrics.csv, loss.png, time.png}} and {}",
        setup.run_dir.display(),
        last_checkpoint
            .as_deref()
            .unwrap_or(&setup.checkpoint_dir)
            .display()
    );
    Ok(Outcome::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn build(args: &[&str]) -> Result<RunConfig, Error> {
        let command = Command::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
            .map_err(|e| Error::Message(e.to_string()))?;
        build_config(&command.train)
    }

    #[test]
    fn config_and_resume_refusals_are_typed() {
        let missing = Path::new("/nonexistent/luoshu-config.toml");
        let err = build(&["--config", "/nonexistent/luoshu-config.toml"]).unwrap_err();
        assert!(
            matches!(&err, Error::ConfigUnreadable { path, .. } if path == missing),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with("cannot read the config /nonexistent"));

        let err = build(&["--resume", "--name", "no-such-run-luoshu-test"]).unwrap_err();
        assert!(
            matches!(&err, Error::NoRunToResume { run, saved_config }
                if run == "no-such-run-luoshu-test"
                    && saved_config.ends_with("no-such-run-luoshu-test/config.toml")),
            "{err}"
        );

        let err = build(&["--strategy", "dp2", "--devices", "3"]).unwrap_err();
        assert!(
            matches!(&err, Error::DevicesMismatch { devices: 3, needs: 2, strategy } if strategy == "dp2"),
            "{err}"
        );
        assert!(build(&["--strategy", "dp2", "--devices", "2"]).is_ok());
    }
}
