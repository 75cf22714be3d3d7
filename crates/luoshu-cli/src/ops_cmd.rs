//! `luoshu ops`: the coverage and conformance table of a backend (being built).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Backend to check (cpu, reference).
    #[arg(long, default_value = "cpu")]
    pub backend: String,
}

pub fn run(args: &OpsArgs) -> Result<ExitCode, String> {
    Err(format!(
        "`luoshu ops --backend {}` is not built yet",
        args.backend
    ))
}
