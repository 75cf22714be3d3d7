//! `luoshu bench`: kernel benchmarks against a baseline in the same run (being built).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to benchmark.
    pub what: String,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    Err(format!("`luoshu bench {}` is not built yet", args.what))
}
