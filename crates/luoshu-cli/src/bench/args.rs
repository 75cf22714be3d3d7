//! The flags of `luoshu bench`.

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to benchmark: `gemm`, `attention`, `train` or `hot`.
    pub what: String,
    /// Threads for our kernels (rayon) and for the baseline (OpenBLAS, PyTorch).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// `gemm`, `attention`: minimum measuring time per case, in seconds (the best run is
    /// reported).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// `train`, `hot`: the operator backend, `cpu` or `reference` (as `luoshu train
    /// --backend`); `gemm` and `attention` time the cpu backend's own kernels.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// `train`, `hot`: the model preset (tiny, bench-5m, ...); `train` also takes a model
    /// file (`*.toml`, as `luoshu train --model`), e.g. `bench/bench-30m.toml`.
    #[arg(long, default_value = "bench-5m")]
    pub config: String,
    /// `train`: sequences per step (each the preset's max_seq_len tokens long).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// `train`: measured steps (the median step time is reported); `hot`: measured steps
    /// per round and system.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// `train`, `hot`: unmeasured steps before them (plan compilation, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// `train`: time luoshu's kernels per op family and compare the step with the FP32
    /// peak (our 1024³ GEMM, measured first for --seconds).
    #[arg(long)]
    pub profile: bool,
    /// `train`: measure luoshu only, without the PyTorch baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// `train`: also measure these strategies, comma-separated (e.g. `single,dp2,tp2`;
    /// ranks are threads of this process).
    #[arg(long, default_value = "")]
    pub strategies: String,
    /// `train --strategies`: overlap the data-parallel gradient reduction with backward,
    /// `on`, `off`, or `both` (each data-parallel strategy measured without, then with; as
    /// `[train] overlap_reduction`).
    #[arg(long, default_value = "on")]
    pub overlap: String,
    /// `hot`: the hot-switching plan, `EDGE:STRATEGY,...` (as `luoshu train --hot-switch`).
    #[arg(long)]
    pub hot_switch: Option<String>,
    /// `hot`: the update strategy (default: the longest bucket's).
    #[arg(long)]
    pub update_strategy: Option<String>,
    /// `hot`: rounds; each runs every system for --steps steps, one system after another.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// `hot`: training text (default: the cargo registry's Rust sources, as `luoshu train`).
    #[arg(long)]
    pub data: Option<String>,
    /// `hot`: longest sequence; longer documents are cut.
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// `hot`: the length buckets, ascending, ending at --max-len.
    #[arg(long, default_value = "128,256,512,1024")]
    pub bucket_edges: String,
}
