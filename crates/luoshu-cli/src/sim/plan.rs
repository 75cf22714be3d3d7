//! `luoshu plan`: bucket edges and a strategy per bucket for one model on a cluster,
//! against the best static strategies with padding and with packing.

use super::report::print_plan;
use super::workload::{load, WorkloadArgs};
use crate::train::config::ModelChoice;
use luoshu_model::Precision;
use luoshu_sim::lengths::global_batch;
use luoshu_sim::{plan, Hardware, Simulator};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Model preset (llama-7b, llama-13b, llama-70b, …), or a TOML file of model fields
    /// overriding one (`preset = "llama-7b"`, `n_layers = 48`, ...).
    #[arg(long, default_value = "llama-7b")]
    pub model: String,
    /// Override one field of the model, e.g. `--model-field n_layers=48` (repeatable).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub model_field: Vec<String>,
    /// Accelerators (whole nodes beyond one node).
    #[arg(long, default_value_t = 8)]
    pub devices: usize,
    /// Longest sequence in tokens; longer documents are truncated to it.
    #[arg(long, default_value_t = 32768)]
    pub context: usize,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Print every candidate of every bucket, not only the fastest.
    #[arg(long)]
    pub all_candidates: bool,
}

/// The simulator of `model` (with `fields` overridden) trained at `context` tokens on
/// `devices` of `hardware` in `precision`.
pub fn simulator(
    (model, fields): (&str, &[String]),
    context: usize,
    (hardware, devices): (&Hardware, usize),
    precision: Precision,
) -> Result<Simulator, String> {
    let mut config = ModelChoice::from_arg(model)?
        .with_fields(fields)?
        .resolve()?;
    config.max_seq_len = context;
    Simulator::new(config, hardware.clone(), devices, precision).map_err(|e| e.to_string())
}

pub fn run(args: &PlanArgs) -> Result<ExitCode, String> {
    let (hardware, observed, source) = load(&args.workload)?;
    let sim = simulator(
        (&args.model, &args.model_field),
        args.context,
        (&hardware, args.devices),
        args.workload.precision,
    )?;
    let w = &args.workload;
    let batch =
        global_batch(&observed, w.global_batch, args.context, w.seed).map_err(|e| e.to_string())?;
    println!(
        "plan {} ({:.2} B parameters, {}) on {} × {} ({}, {} per node), context {}, \
         global batch {} sequences ({} tokens) drawn from {source}",
        args.model,
        sim.model.num_parameters() as f64 / 1e9,
        match sim.precision {
            Precision::Bf16Mixed => "bf16 mixed",
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        },
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
