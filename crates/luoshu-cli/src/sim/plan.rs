//! `luoshu plan`: bucket edges and a strategy per bucket for one model on a cluster,
//! against the best static strategies with padding and with packing.

use super::lengths::observed_lengths;
use super::report::print_plan;
use luoshu_model::{ModelConfig, Precision};
use luoshu_sim::lengths::global_batch;
use luoshu_sim::{plan, Hardware, Simulator};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Model preset (llama-7b, llama-13b, llama-70b, …).
    #[arg(long, default_value = "llama-7b")]
    pub model: String,
    /// Hardware preset (a800-node, h100-node) or a hardware TOML file.
    #[arg(long, default_value = "a800-node")]
    pub hardware: String,
    /// Accelerators (whole nodes beyond one node).
    #[arg(long, default_value_t = 8)]
    pub devices: usize,
    /// Longest sequence in tokens; longer documents are truncated to it.
    #[arg(long, default_value_t = 32768)]
    pub context: usize,
    /// Sequences per global batch (one optimizer step).
    #[arg(long, default_value_t = 512)]
    pub global_batch: usize,
    /// Length distribution: a file of lengths (one per line), a corpus path tokenized by
    /// our tokenizer, or `default` (the Rust sources under the cargo registry).
    #[arg(long, default_value = "default")]
    pub lengths: String,
    /// Seed of the draw of the global batch from the distribution.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print every candidate of every bucket, not only the fastest.
    #[arg(long)]
    pub all_candidates: bool,
}

/// The simulator of `model` trained at `context` tokens on `devices` of `hardware`, in
/// bf16 mixed precision.
pub fn simulator(
    model: &str,
    context: usize,
    hardware: &Hardware,
    devices: usize,
) -> Result<Simulator, String> {
    let mut config = ModelConfig::preset(model).map_err(|e| e.to_string())?;
    config.max_seq_len = context;
    Simulator::new(config, hardware.clone(), devices, Precision::Bf16Mixed)
        .map_err(|e| e.to_string())
}

pub fn run(args: &PlanArgs) -> Result<ExitCode, String> {
    let hardware = Hardware::load(&args.hardware).map_err(|e| e.to_string())?;
    let sim = simulator(&args.model, args.context, &hardware, args.devices)?;
    let (observed, source) = observed_lengths(&args.lengths)?;
    let batch = global_batch(&observed, args.global_batch, args.context, args.seed)
        .map_err(|e| e.to_string())?;
    println!(
        "plan {} ({:.2} B parameters, bf16 mixed) on {} × {} ({}, {} per node), context {}, \
         global batch {} sequences ({} tokens) drawn from {source}",
        args.model,
        sim.model.num_parameters() as f64 / 1e9,
        args.devices,
        hardware.device.model,
        hardware.name,
        sim.per_node(),
        args.context,
        batch.len(),
        batch.iter().sum::<usize>()
    );
    let started = Instant::now();
    let planned = plan(&sim, &batch, args.context).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    print_plan(&planned, sim.memory_capacity(), args.all_candidates);
    println!("plan time: {:.2} s", elapsed.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
