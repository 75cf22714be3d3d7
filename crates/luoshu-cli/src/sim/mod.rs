//! `luoshu plan`, `luoshu simulate` and `luoshu sim calibrate|validate`: the cost model of
//! `luoshu-sim` on a model, a hardware description and a length distribution, and the
//! cost model against this machine.

pub mod calibrate;
pub mod lengths;
pub mod plan;
pub mod report;
pub mod simulate;
pub mod validate;
pub mod workload;

/// `luoshu sim …`.
#[derive(clap::Subcommand)]
pub enum SimCommand {
    /// Measure this machine (GEMM, attention, elementwise, copy, all-reduce on threads
    /// ranks) and write it as a hardware description (`hardware/local.toml`).
    Calibrate(calibrate::CalibrateArgs),
    /// Predicted against measured step time and memory on this machine (single, dp2, tp2,
    /// pp2 and a hot-switching table), and the cost model's choice against the probe's.
    Validate(validate::ValidateArgs),
}

pub fn run(command: &SimCommand) -> Result<std::process::ExitCode, String> {
    match command {
        SimCommand::Calibrate(args) => calibrate::run(args),
        SimCommand::Validate(args) => validate::run(args),
    }
}
