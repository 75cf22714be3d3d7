//! `luoshu`: the command-line entry point of the luoshu training system.

mod bench;
mod error;
mod error_text;
mod export;
mod generate;
mod import;
mod logging;
mod ops_cmd;
mod probe;
mod sim;
mod switch;
mod train;

use clap::{Parser, Subcommand};
use error::Error;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "luoshu",
    version,
    about = "Train transformer language models with parallelism hot switching"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a LLaMA model on one device or many (`--strategy dp2tp2`, threads or MPI).
    /// Writes runs/NAME/.
    Train(train::TrainArgs),
    /// Continue a prompt with a trained run's latest checkpoint.
    Generate(generate::GenerateArgs),
    /// Write a run's checkpoint as a Hugging Face LLaMA directory (transformers loads it).
    Export(export::ExportArgs),
    /// Read a Hugging Face LLaMA directory into runs/NAME/ (generate, fine-tune).
    Import(import::ImportArgs),
    /// Plan (and with --execute run) switching a model's state between two strategies'
    /// layouts; prints the planner next to the naive plan.
    Switch(switch::SwitchArgs),
    /// Print the operator coverage table of a backend and run its conformance suite.
    Ops(ops_cmd::OpsArgs),
    /// Benchmarks (kernels, training steps, strategies) against a baseline measured in the
    /// same run.
    Bench(bench::BenchArgs),
    /// Pick bucket edges and a strategy per bucket with the cost model; print candidates,
    /// switches and the step time against the best static padded and packed strategies.
    Plan(sim::plan::PlanArgs),
    /// `plan` over models × device counts × contexts; writes simulate.csv and simulate.png.
    Simulate(sim::simulate::SimulateArgs),
    /// The cost model on this machine: `calibrate` measures it, `validate` compares
    /// predictions with measured training steps.
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::install();
    let result = match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Generate(args) => generate::run(&args).map_err(Error::from),
        Command::Export(args) => export::run(&args).map_err(Error::from),
        Command::Import(args) => import::run(&args).map_err(Error::from),
        Command::Switch(args) => switch::run(&args).map_err(Error::from),
        Command::Ops(args) => ops_cmd::run(&args).map_err(Error::from),
        Command::Bench(args) => bench::run(&args).map_err(Error::from),
        Command::Plan(args) => sim::plan::run(&args).map_err(Error::from),
        Command::Simulate(args) => sim::simulate::run(&args).map_err(Error::from),
        Command::Sim(command) => sim::run(&command).map_err(Error::from),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
