//! `strategy = "auto"` (the default) and `--hot-switch auto`: each length bucket's
//! strategy is chosen at start-up from the cost model of `luoshu-sim` calibrated on this
//! machine (`hardware/local.toml` when it describes this many ranks, else measured now);
//! `probe` chooses from the measured probe of [`luoshu_train::hot::probe`] instead. Both
//! fill the same table (seconds per bucket and strategy) and choose from it alike; the
//! table is printed and saved in `runs/<name>/strategy.toml`, and a later run with the
//! same model, ranks, buckets, packing and chooser (a resume, or a rerun) reuses it.

use super::config::{Chooser, RunConfig};
use super::memory::{self, Ranks};
use crate::error_text::text;
use luoshu_backend::Backend;
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_data::{GlobalBatch, LengthBucketLoader};
use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;
use luoshu_sim::real_step::predicted_table;
use luoshu_sim::{Hardware, Simulator};
use luoshu_tensor::Tensor;
use luoshu_train::hot::probe::{candidate_strategies, probe, ProbeGrid, ProbeTable, SWITCH_MARGIN};
use luoshu_train::hot::BucketStrategies;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Global batches of the training data the choice is made on (the first ones the run
/// trains on, so the buckets hold what training will see).
const SAMPLE_BATCHES: usize = 2;

/// The calibration `auto` uses when it describes as many ranks as the run has.
pub const LOCAL_HARDWARE: &str = "hardware/local.toml";

/// Seconds each kernel is timed for when `auto` calibrates at start-up.
const STARTUP_CALIBRATION_SECONDS: f64 = 0.25;

/// What a choice is made for and from: the run, its model, the strategies that fit, the
/// backend the probe runs on and the run directory that keeps the choice.
pub struct ChoiceSetup<'a> {
    pub config: &'a RunConfig,
    pub model: &'a ModelConfig,
    pub candidates: &'a [Strategy],
    pub backend: Arc<dyn Backend>,
    pub run_dir: &'a Path,
}

/// `strategy.toml`: the choice, what it was made for (another model, rank count,
/// bucketing, packing or chooser chooses again), and the table it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedChoice {
    buckets: String,
    update_strategy: String,
    /// `cost model` or `probe`.
    chosen_by: String,
    devices: usize,
    bucket_edges: Vec<usize>,
    tokens_per_micro_batch: usize,
    packing: bool,
    model: ModelConfig,
    timings: Vec<BucketTimings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketTimings {
    edge: usize,
    sequences: usize,
    tokens: usize,
    /// Seconds of the bucket's sample per strategy, predicted or measured (absent: no
    /// sample of the bucket).
    seconds: BTreeMap<String, f64>,
}

/// Collective over `world`: the buckets' strategies and the update strategy, reused from
/// `strategy.toml` in `run_dir` when it was made for this run, else chosen among
/// the setup's candidates by `chooser` on the first batches of `loader` (the probe runs
/// them on the setup's backend). The reporting rank prints the table and writes the file.
pub fn choose(
    world: Arc<dyn Communicator>,
    setup: &ChoiceSetup,
    chooser: Chooser,
    loader: &LengthBucketLoader,
    reports: bool,
) -> Result<(BucketStrategies, Strategy), String> {
    let (config, model, candidates) = (setup.config, setup.model, setup.candidates);
    let path = setup.run_dir.join("strategy.toml");
    let update = config.update_strategy()?;
    let saved = read_saved(&path)
        .filter(|s| made_for(s, config, chooser, model, world.size(), update))
        .and_then(|s| parse_choice(&s));
    // Every rank reuses the file, or every rank chooses again.
    if let (Some(choice), false) = (&saved, any_rank(world.as_ref(), saved.is_none())?) {
        if reports {
            println!(
                "strategies: {} (update {}), chosen earlier by the {} for this model, ranks, \
                 buckets and packing in {} (delete it to choose again)",
                choice.0,
                choice.1,
                chooser.name(),
                path.display()
            );
        }
        return Ok(choice.clone());
    }
    let mut peek = loader.clone();
    let sample: Vec<GlobalBatch> = (0..SAMPLE_BATCHES).map(|_| peek.next_batch()).collect();
    let names: Vec<String> = candidates.iter().map(Strategy::to_string).collect();
    let ranks = match world.size() {
        1 => "1 rank".to_string(),
        n => format!("{n} ranks"),
    };
    let table = match chooser {
        Chooser::CostModel => {
            let hardware = local_hardware(world.as_ref(), reports)?;
            if reports {
                println!(
                    "predicting {} on {ranks} with the cost model to choose each bucket's \
                     strategy (`--hot-switch probe` measures them instead)",
                    names.join(", ")
                );
            }
            cost_model_table(config, model, &hardware, candidates, &sample)?
        }
        Chooser::Probe => {
            if reports {
                println!(
                    "probing {} on {ranks} over the first {SAMPLE_BATCHES} batches to choose \
                     each bucket's strategy",
                    names.join(", ")
                );
            }
            let grid = ProbeGrid {
                candidates,
                edges: &config.data.bucket_edges,
                sample: &sample,
            };
            probe(
                model,
                &config.train,
                setup.backend.clone(),
                world.clone(),
                grid,
                config.seed,
            )
            .map_err(text)?
        }
    };
    let (buckets, update) = table.choose(update).map_err(text)?;
    if reports {
        for line in describe_table(&table, &buckets, update) {
            println!("{line}");
        }
        let saved = SavedChoice {
            buckets: buckets.to_string(),
            update_strategy: update.to_string(),
            chosen_by: chooser.name().to_string(),
            devices: world.size(),
            bucket_edges: config.data.bucket_edges.clone(),
            tokens_per_micro_batch: config.data.tokens_per_micro_batch,
            packing: config.data.packing,
            model: model.clone(),
            timings: timings(&table),
        };
        write_saved(&path, &saved)?;
    }
    Ok((buckets, update))
}

/// Collective: whether `mine` holds on any rank.
fn any_rank(world: &dyn Communicator, mine: bool) -> Result<bool, String> {
    let flag = Tensor::from_vec(vec![f64::from(u8::from(mine))], [1]).map_err(text)?;
    Ok(world
        .all_reduce(&flag, ReduceOp::Max)
        .map_err(text)?
        .to_f64_vec()[0]
        > 0.0)
}

/// Collective: this machine as `world`'s ranks see it: [`LOCAL_HARDWARE`] when every rank
/// finds it describing this many ranks, else calibrated now (a few seconds) by every rank
/// at once.
fn local_hardware(world: &dyn Communicator, reports: bool) -> Result<Hardware, String> {
    let path = Path::new(LOCAL_HARDWARE);
    let saved = path
        .is_file()
        .then(|| Hardware::load(LOCAL_HARDWARE))
        .transpose()
        .map_err(text)?
        .filter(|h| h.devices_per_node == world.size());
    if let (Some(hardware), false) = (&saved, any_rank(world, saved.is_none())?) {
        if reports {
            println!("cost model: this machine as calibrated in {LOCAL_HARDWARE}");
        }
        return Ok(hardware.clone());
    }
    if reports {
        println!(
            "cost model: calibrating this machine for {} ranks (`luoshu sim calibrate --devices \
             {}` saves a calibration in {LOCAL_HARDWARE} for later runs)",
            world.size(),
            world.size()
        );
    }
    let budget = std::time::Duration::from_secs_f64(STARTUP_CALIBRATION_SECONDS);
    let measured = crate::sim::calibrate::measure_collective(world, budget)?;
    measured.to_hardware("local").map_err(text)
}

/// The cost model's table: each bucket of the config's edges under each of `candidates`
/// on `sample`, predicted on `hardware` (whose devices are the candidates' ranks).
pub fn cost_model_table(
    config: &RunConfig,
    model: &ModelConfig,
    hardware: &Hardware,
    candidates: &[Strategy],
    sample: &[GlobalBatch],
) -> Result<ProbeTable, String> {
    let devices = candidates.first().map_or(1, Strategy::devices);
    let sim = Simulator::new(
        model.clone(),
        hardware.clone(),
        devices,
        config.train.precision,
    )
    .map_err(text)?;
    predicted_table(&sim, candidates, &config.data.bucket_edges, sample).map_err(text)
}

/// The measured probe's table on threads ranks of this process (as many as the
/// candidates use), on the CPU backend.
pub fn probe_table(
    config: &RunConfig,
    model: &ModelConfig,
    candidates: &[Strategy],
    sample: &[GlobalBatch],
) -> Result<ProbeTable, String> {
    let devices = candidates.first().map_or(1, Strategy::devices);
    let backend: Arc<dyn Backend> = Arc::new(luoshu_backend::cpu::CpuBackend::new());
    luoshu_comm::threads::run(devices, |world| {
        let grid = ProbeGrid {
            candidates,
            edges: &config.data.bucket_edges,
            sample,
        };
        probe(
            model,
            &config.train,
            backend.clone(),
            world,
            grid,
            config.seed,
        )
        .map_err(text)
    })
    .remove(0)
}

/// The strategies that can run `model` on `ranks` and fit in memory (see
/// [`memory::check`]), or why none can.
pub fn fitting_candidates(
    config: &RunConfig,
    model: &ModelConfig,
    ranks: Ranks,
    memory_per_rank: Option<u64>,
) -> Result<Vec<Strategy>, String> {
    let all = candidate_strategies(model, ranks.devices);
    let mut refusal = None;
    let mut fitting = Vec::new();
    for &strategy in &all {
        match memory::check(config, model, strategy, ranks, memory_per_rank) {
            Ok(_) => fitting.push(strategy),
            Err(e) => refusal = Some((strategy, e)),
        }
    }
    match (fitting.is_empty(), refusal) {
        (false, _) => Ok(fitting),
        (true, Some((last, why))) => {
            let names: Vec<String> = all.iter().map(Strategy::to_string).collect();
            Err(format!(
                "no strategy on {} rank(s) fits ({} checked); {last}: {why}",
                ranks.devices,
                names.join(", ")
            ))
        }
        (true, None) => Err(format!(
            "no data × tensor × pipeline product on {} rank(s) can split this model (tensor \
             parallelism must divide the heads, kv heads, vocabulary and FFN size; every \
             pipeline stage needs a layer): pass --devices or --strategy",
            ranks.devices
        )),
    }
}

/// Whether `saved` was made for this run by `chooser` (and keeps its named update
/// strategy).
fn made_for(
    saved: &SavedChoice,
    config: &RunConfig,
    chooser: Chooser,
    model: &ModelConfig,
    devices: usize,
    update: Option<Strategy>,
) -> bool {
    saved.devices == devices
        && saved.chosen_by == chooser.name()
        && saved.bucket_edges == config.data.bucket_edges
        && saved.tokens_per_micro_batch == config.data.tokens_per_micro_batch
        && saved.packing == config.data.packing
        && &saved.model == model
        && match update {
            Some(u) => saved.update_strategy == u.to_string(),
            None => true,
        }
}

/// The choice `saved` names (`None` when it does not parse: measured again).
fn parse_choice(saved: &SavedChoice) -> Option<(BucketStrategies, Strategy)> {
    Some((
        saved.buckets.parse().ok()?,
        saved.update_strategy.parse().ok()?,
    ))
}

/// The saved choice, if the file exists and parses (one that does not, or that names an
/// invalid choice, is chosen again and overwritten, on every rank alike).
fn read_saved(path: &Path) -> Option<SavedChoice> {
    toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_saved(path: &Path, saved: &SavedChoice) -> Result<(), String> {
    let body = toml::to_string(saved).map_err(text)?;
    let header =
        "# Each length bucket's strategy, chosen by `luoshu train` (strategy \"auto\" or\n\
                  # \"probe\") from the seconds below (predicted by the cost model, or measured).\n\
                  # Reused while the model, ranks, buckets, packing and chooser stay the same;\n\
                  # delete this file to choose again.\n";
    std::fs::write(path, format!("{header}{body}")).map_err(|e| format!("{}: {e}", path.display()))
}

fn timings(table: &ProbeTable) -> Vec<BucketTimings> {
    (0..table.edges.len())
        .map(|b| BucketTimings {
            edge: table.edges[b],
            sequences: table.sequences[b],
            tokens: table.tokens[b],
            seconds: table
                .candidates
                .iter()
                .zip(&table.seconds[b])
                .filter_map(|(c, s)| s.map(|s| (c.to_string(), s)))
                .collect(),
        })
        .collect()
}

/// A choice's table, one line per bucket (its time under each strategy, the fastest
/// starred, and the choice), then what training will do.
pub fn describe_table(
    table: &ProbeTable,
    buckets: &BucketStrategies,
    update: Strategy,
) -> Vec<String> {
    let mut header = format!("{:>8} {:>6} {:>8}", "bucket", "seqs", "tokens");
    for c in &table.candidates {
        header.push_str(&format!(" {:>10}", c.to_string()));
    }
    header.push_str("  chosen");
    let mut lines = vec![header];
    for b in 0..table.edges.len() {
        let best = table.seconds[b]
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let mut line = format!(
            "{:>8} {:>6} {:>8}",
            format!("≤{}", table.edges[b]),
            table.sequences[b],
            table.tokens[b]
        );
        for s in &table.seconds[b] {
            let cell = match s {
                Some(s) if *s == best => format!("{s:.3}s*"),
                Some(s) => format!("{s:.3}s"),
                None => "-".into(),
            };
            line.push_str(&format!(" {cell:>10}"));
        }
        let chosen = buckets
            .strategy_for(table.edges[b])
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        line.push_str(&format!("  {chosen}"));
        lines.push(line);
    }
    let strategies = buckets.strategies();
    lines.push(match strategies.as_slice() {
        [only] => format!(
            "{only} is the fastest for every bucket, or no other strategy saves more than \
             {:.0}% of the sample's time on any (not worth a switch): training under {only} \
             without switching",
            100.0 * SWITCH_MARGIN
        ),
        _ => format!(
            "hot switching {buckets}, updating under {update} (a bucket leaves {update} only \
             where another strategy saves more than {:.0}% of the sample's time)",
            100.0 * SWITCH_MARGIN
        ),
    });
    lines
}
