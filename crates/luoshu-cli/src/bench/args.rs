//! The flags of `luoshu bench`.

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
