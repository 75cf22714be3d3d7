//! `luoshu train`: configure, load data, train with a progress bar, evaluate, checkpoint,
//! and leave `runs/<name>/` with the config, tokenizer, metrics, loss plot and checkpoints.

mod config;
mod data;
mod metrics;
mod plot;

use config::RunConfig;
use indicatif::{ProgressBar, ProgressStyle};
use luoshu_model::checkpoint::{self, CheckpointMeta};
use luoshu_model::data::GlobalBatch;
use luoshu_model::Trainer;
use metrics::{MetricsLog, MetricsRow};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Where runs are written, relative to the working directory.
const RUNS_DIR: &str = "runs";

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
    /// Model preset (tiny, bench-5m, ...).
    #[arg(long)]
    pub model: Option<String>,
    /// Training text: a file, a directory or a glob (default: the cargo registry's Rust sources).
    #[arg(long)]
    pub data: Option<String>,
    /// Run name: output goes to runs/<name>/.
    #[arg(long)]
    pub name: Option<String>,
    /// Seed of the data split, data order and initialization.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue bit-identically from the latest checkpoint of runs/<name> (with the config
    /// saved there unless --config is given).
    #[arg(long)]
    pub resume: bool,
    /// Delete the checkpoints of an earlier run of the same name and start over.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
}

/// The configuration: defaults, or `--config` (else the run's own config when resuming),
/// then the command-line overrides.
fn build_config(args: &TrainArgs) -> Result<RunConfig, String> {
    let saved = args.resume.then(|| {
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| RunConfig::default().name);
        Path::new(RUNS_DIR).join(name).join("config.toml")
    });
    let mut config = match args.config.as_ref().or(saved.as_ref()) {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the config {}: {e}", path.display()))?;
            RunConfig::from_toml(&text, &path.display().to_string())?
        }
        None => RunConfig::default(),
    };
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(model) = &args.model {
        config.model = config::ModelChoice::Preset(model.clone());
    }
    if let Some(data) = &args.data {
        config.data.path = Some(data.clone());
    }
    if let Some(name) = &args.name {
        config.name = name.clone();
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    Ok(config)
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

pub fn run(args: &TrainArgs) -> Result<ExitCode, String> {
    let config = build_config(args)?;
    let model = config.validate()?;
    if args.print_config {
        print!("{}", config::annotated_toml(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let run_dir = Path::new(RUNS_DIR).join(&config.name);
    let checkpoint_dir = run_dir.join("checkpoint");
    let previous = checkpoint_dir
        .is_dir()
        .then(|| checkpoint::list_steps(&checkpoint_dir))
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if args.overwrite {
        std::fs::remove_dir_all(&checkpoint_dir).or_else(|e| match e.kind() {
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
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;

    println!(
        "luoshu train `{}`: {} parameters on 1 device (CPU backend), {} steps of {} tokens",
        config.name,
        model.num_parameters(),
        config.steps,
        config.data.global_batch_tokens
    );
    let tokenizer_path = run_dir.join("tokenizer.json");
    let mut data = data::prepare(
        &config,
        model.vocab_size,
        &tokenizer_path,
        args.resume,
        &mut |line| println!("{line}"),
    )?;

    let backend: Arc<dyn luoshu_backend::Backend> =
        Arc::new(luoshu_backend::cpu::CpuBackend::new());
    let mut trainer = Trainer::new(model.clone(), config.train.clone(), backend, config.seed)
        .map_err(|e| e.to_string())?;
    let resumed_at = if args.resume {
        let saved = checkpoint::load_latest(&checkpoint_dir).map_err(|e| e.to_string())?;
        saved.check_model(&model).map_err(|e| e.to_string())?;
        saved
            .check_tokenizer(&data.tokenizer_hash)
            .map_err(|e| e.to_string())?;
        if saved.seed != config.seed {
            return Err(format!(
                "the checkpoint in {} was trained with seed {} but this run has seed {}; \
                 resume with --seed {}",
                saved.dir.display(),
                saved.seed,
                config.seed,
                saved.seed
            ));
        }
        data.train.seek(saved.data).map_err(|e| e.to_string())?;
        let step = saved.state.step;
        trainer.restore(saved.state).map_err(|e| e.to_string())?;
        println!("resuming from {} (step {step})", saved.dir.display());
        Some(step)
    } else {
        None
    };
    let start = trainer.step();
    if start >= config.steps {
        return Err(format!(
            "the run is already at step {start}; pass a larger --steps to continue it"
        ));
    }
    let config_path = run_dir.join("config.toml");
    std::fs::write(&config_path, config.to_toml()?)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut log = MetricsLog::open(&run_dir.join("metrics.csv"), resumed_at)?;

    let bar = progress_bar(start, config.steps)?;
    let (mut tokens, mut seconds) = (0usize, 0f64);
    let mut last_val = None;
    let mut last_checkpoint = None;
    let wall = Instant::now();
    for step in start + 1..=config.steps {
        let batch = data.train.next_batch();
        let buckets = describe_buckets(&batch);
        let stats = trainer.train_step(&batch).map_err(|e| e.to_string())?;
        tokens += stats.tokens;
        seconds += stats.seconds;
        let tokens_per_s = stats.tokens as f64 / stats.seconds.max(1e-9);
        let last = step == config.steps;
        let val_loss = if step % config.eval_every == 0 || last {
            let v = trainer.evaluate(&data.val).map_err(|e| e.to_string())?;
            say(
                &bar,
                format!(
                    "step {step}: train loss {:.4}, validation loss {v:.4}",
                    stats.loss
                ),
            );
            last_val = Some(v);
            Some(v)
        } else {
            None
        };
        log.push(MetricsRow {
            step,
            loss: stats.loss,
            val_loss,
            lr: stats.lr,
            tokens_per_s,
            grad_norm: stats.grad_norm,
        })?;
        if step % config.checkpoint_every == 0 || last {
            let state = trainer.state().map_err(|e| e.to_string())?;
            let meta = CheckpointMeta {
                model: &model,
                data: data.train.position(),
                seed: config.seed,
                tokenizer_hash: &data.tokenizer_hash,
            };
            let dir = checkpoint::save(&checkpoint_dir, &state, &meta, config.keep_checkpoints)
                .map_err(|e| e.to_string())?;
            last_checkpoint = Some(dir);
        }
        bar.set_message(format!(
            "loss {:.3} | {:.0} tok/s | buckets {buckets}",
            stats.loss,
            tokens as f64 / seconds.max(1e-9)
        ));
        bar.set_position(step);
    }
    bar.finish_and_clear();

    let plot_path = run_dir.join("loss.png");
    if let Err(e) = plot::plot_loss(log.rows(), &plot_path) {
        eprintln!("warning: {e}");
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
    println!(
        "wrote {}/{{config.toml, tokenizer.json, metrics.csv, loss.png}} and {}",
        run_dir.display(),
        last_checkpoint
            .as_deref()
            .unwrap_or(&checkpoint_dir)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}
