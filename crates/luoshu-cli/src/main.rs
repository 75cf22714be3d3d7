//! `luoshu`: the command-line entry point of the luoshu training system.

mod bench;
mod ops_cmd;

use clap::{Parser, Subcommand};
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
    /// Train a model (not built yet: see the README's status section).
    Train,
    /// Print the operator coverage table of a backend and run its conformance suite.
    Ops(ops_cmd::OpsArgs),
    /// Benchmarks of kernels against a baseline measured in the same run.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train => Err(
            "`luoshu train` is not built yet: the graph, model and training layers are still \
             being written (see README.md, \"Status\"). `luoshu ops` and `luoshu bench` work today."
                .to_string(),
        ),
        Command::Ops(args) => ops_cmd::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
