//! `luoshu bench`: benchmarks against a baseline measured in the same run.
//!
//! - `gemm`: our f32 matmul against numpy/OpenBLAS (`bench/gemm_vs_numpy.py`) on the same
//!   shapes and thread count.
//! - `attention`: fused causal attention forward+backward against the time plain GEMM
//!   (our f32 matmul at 1024³, measured in the same run) needs for the same FLOPs.
//! - `train`: whole training steps of a model preset against PyTorch CPU eager
//!   (`bench/train_torch.py`) on the identical model, batch and thread count.
//! - `hot`: hot switching against every static strategy it uses, on the same batches of a
//!   real corpus, interleaved in one process.

mod args;
mod hot;
pub(crate) mod kernels;
pub(crate) mod measurement;
mod profile;
mod strategies;
mod torch_baseline;
mod train;

pub use args::BenchArgs;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    // The global rayon pool is created on first use, which has not happened yet.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    // An unknown backend is refused, with the list, before anything is measured.
    let backend = luoshu_backend::backend_by_name(&args.backend).map_err(|e| e.to_string())?;
    let cpu_kernels_only = || {
        if args.backend == "cpu" {
            Ok(())
        } else {
            Err(format!(
                "`bench {}` times the cpu backend's own kernels; --backend {} applies to \
                 `bench train` and `bench hot`",
                args.what, args.backend
            ))
        }
    };
    match args.what.as_str() {
        "gemm" => cpu_kernels_only().and_then(|()| kernels::gemm(args.threads, budget)),
        "attention" => cpu_kernels_only().and_then(|()| kernels::attention(budget)),
        "train" => train::run(args, backend),
        "hot" => hot::run(args),
        other => Err(format!(
            "unknown benchmark `{other}`; available: gemm, attention, train, hot"
        )),
    }
    .map(|()| ExitCode::SUCCESS)
}
