//! `luoshu ops`: run the conformance suite on a backend and print its coverage table (op,
//! native or fallback, dtypes, cases, pass/FAIL, worst error) and a summary line.
use luoshu_backend::conformance::{run_conformance_with, Options};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Backend to check (cpu, reference).
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Check only this op (e.g. `exp`, `matmul`, `softmax`).
    #[arg(long)]
    pub op: Option<String>,
    /// Fewer shapes and layouts per op (large tensors in one layout only).
    #[arg(long)]
    pub quick: bool,
    /// Seed of the random inputs.
    #[arg(long)]
    pub seed: Option<u64>,
}

pub fn run(args: &OpsArgs) -> Result<ExitCode, String> {
    let backend = luoshu_backend::backend_by_name(&args.backend).map_err(|e| e.to_string())?;
    let defaults = Options::default();
    let options = Options {
        seed: args.seed.unwrap_or(defaults.seed),
        quick: args.quick,
        only: args.op.clone(),
    };
    let report = run_conformance_with(backend.as_ref(), &options);
    if report.ops.is_empty() {
        return Err(format!(
            "no op is called `{}`; run `luoshu ops` without --op to see them all",
            args.op.as_deref().unwrap_or_default()
        ));
    }
    println!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
