//! `luoshu bench`: benchmarks against a baseline measured in the same run.
//!
//! - `gemm`: our f32 matmul against numpy/OpenBLAS (`bench/gemm_vs_numpy.py`) on the same
//!   shapes and thread count.
//! - `attention`: fused causal attention forward+backward against the time plain GEMM
//!   (our f32 matmul at 1024³, measured in the same run) needs for the same FLOPs.
//! - `train`: whole training steps of a model preset against PyTorch CPU eager
//!   (`bench/train_torch.py`) on the identical model, batch and thread count.

mod kernels;
mod strategies;
mod torch_baseline;
mod train;

use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to benchmark: `gemm`, `attention` or `train`.
    pub what: String,
    /// Threads for our kernels (rayon) and for the baseline (OpenBLAS, PyTorch).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// `gemm`, `attention`: minimum measuring time per case, in seconds (the best run is
    /// reported).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// `train`: the model preset (tiny, bench-5m, ...).
    #[arg(long, default_value = "bench-5m")]
    pub config: String,
    /// `train`: sequences per step (each the preset's max_seq_len tokens long).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// `train`: measured steps (the median step time is reported).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// `train`: unmeasured steps before them (plan compilation, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// `train`: measure luoshu only, without the PyTorch baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// `train`: also measure these strategies, comma-separated (e.g. `single,dp2,tp2`;
    /// ranks are threads of this process).
    #[arg(long, default_value = "")]
    pub strategies: String,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    // The global rayon pool is created on first use, which has not happened yet.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    match args.what.as_str() {
        "gemm" => kernels::gemm(args.threads, budget),
        "attention" => kernels::attention(budget),
        "train" => train::run(args),
        other => Err(format!(
            "unknown benchmark `{other}`; available: gemm, attention, train"
        )),
    }
    .map(|()| ExitCode::SUCCESS)
}
