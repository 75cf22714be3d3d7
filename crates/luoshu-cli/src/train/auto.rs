//! `strategy = "auto"` (the default) and `--hot-switch auto`: each length bucket's
//! strategy is chosen at start-up by the measured probe of
//! [`luoshu_train::hot::probe`], printed as a table, and saved in
//! `runs/<name>/strategy.toml`; a later run with the same model, ranks, buckets and packing
//! (a resume, or a rerun) reuses it instead of measuring again.

use super::config::RunConfig;
use super::memory::{self, Ranks};
use luoshu_backend::Backend;
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_data::{GlobalBatch, LengthBucketLoader};
use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;
use luoshu_tensor::Tensor;
use luoshu_train::hot::probe::{candidate_strategies, probe, ProbeTable, SWITCH_MARGIN};
use luoshu_train::hot::BucketStrategies;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Global batches of the training data the probe measures (the first ones the run
/// trains on, so the buckets hold what training will see).
const PROBE_BATCHES: usize = 2;

/// `strategy.toml`: the choice, what it was measured for (another model, rank count,
/// bucketing or packing probes again), and the measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedChoice {
    buckets: String,
    update_strategy: String,
    devices: usize,
    bucket_edges: Vec<usize>,
    tokens_per_micro_batch: usize,
    packing: bool,
    model: ModelConfig,
    measured: Vec<MeasuredBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasuredBucket {
    edge: usize,
    sequences: usize,
    tokens: usize,
    /// Seconds of the bucket's sample per strategy (absent: no sample of the bucket).
    seconds: BTreeMap<String, f64>,
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Collective over `world`: the buckets' strategies and the update strategy, reused from
/// `strategy.toml` in `run_dir` when it was measured for this run, else `candidates`
/// probed on `backend` on the first batches of `loader`. The reporting rank prints the table and
/// writes the file.
pub fn choose(
    world: Arc<dyn Communicator>,
    config: &RunConfig,
    model: &ModelConfig,
    (candidates, backend): (&[Strategy], Arc<dyn Backend>),
    run_dir: &Path,
    loader: &LengthBucketLoader,
    reports: bool,
) -> Result<(BucketStrategies, Strategy), String> {
    let path = run_dir.join("strategy.toml");
    let update = config.update_strategy()?;
    let saved = read_saved(&path)
        .filter(|s| measured_for(s, config, model, world.size(), update))
        .and_then(|s| parse_choice(&s));
    // Every rank reuses the file, or every rank probes.
    let mine = Tensor::from_vec(vec![f64::from(u8::from(saved.is_none()))], [1]).map_err(text)?;
    let anyone_probes = world
        .all_reduce(&mine, ReduceOp::Max)
        .map_err(text)?
        .to_f64_vec()[0]
        > 0.0;
    if let (Some(choice), false) = (saved, anyone_probes) {
        if reports {
            println!(
                "strategies: {} (update {}), measured earlier for this model, ranks, buckets and packing \
                 in {} (delete it to probe again)",
                choice.0,
                choice.1,
                path.display()
            );
        }
        return Ok(choice);
    }
    if reports {
        let names: Vec<String> = candidates.iter().map(Strategy::to_string).collect();
        println!(
            "probing {} on {} rank{} over the first {PROBE_BATCHES} batches to choose each \
             bucket's strategy",
            names.join(", "),
            world.size(),
            if world.size() == 1 { "" } else { "s" }
        );
    }
    let mut peek = loader.clone();
    let sample: Vec<GlobalBatch> = (0..PROBE_BATCHES).map(|_| peek.next_batch()).collect();
    let table = probe(
        model,
        &config.train,
        backend,
        world.clone(),
        candidates,
        &config.data.bucket_edges,
        &sample,
        config.seed,
    )
    .map_err(text)?;
    let (buckets, update) = table.choose(update).map_err(text)?;
    if reports {
        for line in describe(&table, &buckets, update) {
            println!("{line}");
        }
        let saved = SavedChoice {
            buckets: buckets.to_string(),
            update_strategy: update.to_string(),
            devices: world.size(),
            bucket_edges: config.data.bucket_edges.clone(),
            tokens_per_micro_batch: config.data.tokens_per_micro_batch,
            packing: config.data.packing,
            model: model.clone(),
            measured: measured(&table),
        };
        write_saved(&path, &saved)?;
    }
    Ok((buckets, update))
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

/// Whether `saved` was measured for this run (and keeps its named update strategy).
fn measured_for(
    saved: &SavedChoice,
    config: &RunConfig,
    model: &ModelConfig,
    devices: usize,
    update: Option<Strategy>,
) -> bool {
    saved.devices == devices
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
/// invalid choice, is measured again and overwritten, on every rank alike).
fn read_saved(path: &Path) -> Option<SavedChoice> {
    toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_saved(path: &Path, saved: &SavedChoice) -> Result<(), String> {
    let body = toml::to_string(saved).map_err(text)?;
    let header = "# Each length bucket's strategy, chosen by `luoshu train` (strategy \"auto\")\n\
                  # from the measurements below. Reused while the model, ranks, buckets and packing\n\
                  # stay the same; delete this file to measure again.\n";
    std::fs::write(path, format!("{header}{body}")).map_err(|e| format!("{}: {e}", path.display()))
}

fn measured(table: &ProbeTable) -> Vec<MeasuredBucket> {
    (0..table.edges.len())
        .map(|b| MeasuredBucket {
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

/// The probe's table, one line per bucket (its time under each strategy, the fastest
/// starred, and the choice), then what training will do.
fn describe(table: &ProbeTable, buckets: &BucketStrategies, update: Strategy) -> Vec<String> {
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
