//! `luoshu sim calibrate`: this machine as a hardware description. `--devices` threads
//! ranks (one per core by default, as `luoshu train` runs) time the same kernels at once,
//! so each rank's rates are its share of the machine: a GEMM mix at the shapes of a small
//! LLaMA's projections and their backward products, fused causal attention forward and
//! backward, elementwise kernels (RMSNorm, SwiGLU, add), a large copy, and all-reduces of
//! 4 KiB and 16 MiB over the ranks, and a plan of tiny kernels (the fixed cost of a
//! kernel). `luoshu_sim::calibration` turns the slowest rank's
//! times into a description that reproduces them.

use crate::bench::kernels::{gemm_operand, random_f32, GEMM_SHAPES};
use crate::bench::measurement::median;
use crate::error_text::text;
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{AttentionInputs, AttentionOpts, AttentionOutputGrads, UnaryOp};
use luoshu_backend::{Backend, DType, Ops, Tensor};
use luoshu_comm::{threads, Communicator, ReduceOp};
use luoshu_graph::{compile, Bindings, CompileOptions, Dim, Graph};
use luoshu_sim::calibration::{attention_flops, Measured, Timed};
use luoshu_sim::ops::{attention, causal_pairs, Work};
use luoshu_sim::Hardware;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Threads ranks sharing the machine, the devices of the description (default: one
    /// per core, as `luoshu train` runs).
    #[arg(long)]
    pub devices: Option<usize>,
    /// Where to write the description.
    #[arg(long, default_value = "hardware/local.toml")]
    pub out: PathBuf,
    /// Seconds each kernel is timed for.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
}

/// Median seconds of `f` on this rank over `budget` (at least 3 runs after a warm-up run),
/// every rank starting together.
fn timed(
    comm: &dyn Communicator,
    budget: Duration,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    f()?;
    comm.barrier().map_err(text)?;
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < budget || times.len() < 3 {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

/// FLOPs and seconds of one pass over the GEMM mix (the projections of a d = 256 LLaMA
/// and their two backward products, 2048 tokens).
fn gemm_mix(comm: &dyn Communicator, budget: Duration) -> Result<Timed, String> {
    let ops = Ops::new(&CpuBackend);
    let mut operands = Vec::new();
    for (i, s) in GEMM_SHAPES[1..].iter().enumerate() {
        let stream = 10 * i as u64;
        let a = gemm_operand(s.m, s.k, s.a_transposed, stream)?;
        let b = gemm_operand(s.k, s.n, s.b_transposed, stream + 1)?;
        let out = ops.alloc(DType::F32, &[s.m, s.n]).map_err(text)?;
        operands.push((a, b, out));
    }
    let seconds = timed(comm, budget, || {
        for (a, b, out) in &operands {
            ops.matmul_into(a, b, out).map_err(text)?;
        }
        Ok(())
    })?;
    Ok(Timed {
        amount: GEMM_SHAPES[1..].iter().map(|s| s.flops()).sum(),
        seconds,
    })
}

/// Causal attention forward and backward over 4 heads of 64 on 512 tokens, its FLOPs as
/// the cost model counts them.
fn fused_attention(comm: &dyn Communicator, budget: Duration) -> Result<Timed, String> {
    let (b, h, s, d) = (2, 4, 512, 64);
    let ops = Ops::new(&CpuBackend);
    let dims = [b, h, s, d];
    let (q, k, v) = (
        random_f32(&dims, 3)?,
        random_f32(&dims, 4)?,
        random_f32(&dims, 5)?,
    );
    let grad_out = random_f32(&dims, 6)?;
    let opts = AttentionOpts {
        scale: 1.0 / (d as f32).sqrt(),
        causal: true,
    };
    let seconds = timed(comm, budget, || {
        let inputs = AttentionInputs::new(&q, &k, &v);
        let (out, lse) = ops.attention(inputs, opts).map_err(text)?;
        ops.attention_backward(
            inputs,
            opts,
            AttentionOutputGrads::new(&out, &lse, &grad_out),
        )
        .map(drop)
        .map_err(text)
    })?;
    let work = Work {
        tokens: (b * s) as f64,
        pairs: b as f64 * causal_pairs(s),
    };
    let width = (h * d) as f64;
    Ok(Timed {
        amount: attention_flops(&attention(work, width, width, 4.0)),
        seconds,
    })
}

/// RMSNorm (reads x, writes y), SwiGLU and add (read two, write one) on 8192 tokens of
/// widths 256 and 688; bytes as the cost model counts them.
fn elementwise(comm: &dyn Communicator, budget: Duration) -> Result<Timed, String> {
    let (t, d, ff) = (8192, 256, 688);
    let ops = Ops::new(&CpuBackend);
    let x = random_f32(&[t, d], 7)?;
    let weight = random_f32(&[d], 8)?;
    let (gate, up) = (random_f32(&[t, ff], 9)?, random_f32(&[t, ff], 10)?);
    let seconds = timed(comm, budget, || {
        ops.rms_norm(&x, &weight, 1e-5).map_err(text)?;
        ops.swiglu(&gate, &up).map_err(text)?;
        ops.add(&x, &x).map(drop).map_err(text)
    })?;
    let values = (2 * t * d + 3 * t * ff + 3 * t * d) as f64;
    Ok(Timed {
        amount: 4.0 * values,
        seconds,
    })
}

/// A 64 MiB copy: bytes read plus bytes written.
fn copy(comm: &dyn Communicator, budget: Duration) -> Result<Timed, String> {
    let len = 64 << 20;
    let source = vec![1u8; len];
    let mut destination = vec![0u8; len];
    let seconds = timed(comm, budget, || {
        destination.copy_from_slice(&source);
        std::hint::black_box(&destination);
        Ok(())
    })?;
    Ok(Timed {
        amount: 2.0 * len as f64,
        seconds,
    })
}

/// Median of `runs` all-reduces (sum) of `values` f32 over every rank.
fn all_reduce(comm: &dyn Communicator, values: usize, runs: usize) -> Result<Timed, String> {
    let x = Tensor::from_vec(vec![1.0f32; values], [values]).map_err(text)?;
    comm.all_reduce(&x, ReduceOp::Sum).map_err(text)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        comm.barrier().map_err(text)?;
        let t = Instant::now();
        comm.all_reduce(&x, ReduceOp::Sum).map_err(text)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(Timed {
        amount: 4.0 * values as f64,
        seconds: median(&mut times),
    })
}

/// Kernels of 64 elements, each negating the previous one's output, run as one compiled
/// plan: the fixed cost of every kernel the trainer's plans launch (the executor's step,
/// the backend's checks), which the roofline of their work does not see.
fn dispatch(comm: &dyn Communicator, budget: Duration) -> Result<Timed, String> {
    const KERNELS: usize = 256;
    let mut g = Graph::new();
    let x = g.input("x", &[Dim::fixed(64)], DType::F32).map_err(text)?;
    let mut y = x;
    for _ in 0..KERNELS {
        y = g.unary(UnaryOp::Neg, y).map_err(text)?;
    }
    g.set_outputs(vec![y]).map_err(text)?;
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend);
    let mut plan =
        compile(&g, &Bindings::new(), backend, CompileOptions::default()).map_err(text)?;
    if plan.kernel_count() != KERNELS {
        return Err(format!(
            "the dispatch plan launches {} kernels, not {KERNELS}",
            plan.kernel_count()
        ));
    }
    let feeds = HashMap::from([("x".to_string(), random_f32(&[64], 11)?)]);
    let seconds = timed(comm, budget, || plan.run(&feeds).map(drop).map_err(text))?;
    Ok(Timed {
        amount: KERNELS as f64,
        seconds,
    })
}

/// Collective over `world`: every rank times the kernels at once, each for `budget`; every
/// kernel counts at its slowest rank's time (all ranks get the same result). Each rank's
/// memory is `MemAvailable` shared by the ranks.
pub fn measure_collective(world: &dyn Communicator, budget: Duration) -> Result<Measured, String> {
    let mine = [
        gemm_mix(world, budget)?,
        fused_attention(world, budget)?,
        elementwise(world, budget)?,
        copy(world, budget)?,
        all_reduce(world, 1024, 50)?,
        all_reduce(world, 4 << 20, 5)?,
        dispatch(world, budget)?,
    ];
    let seconds = Tensor::from_vec(mine.map(|t| t.seconds).to_vec(), [mine.len()]).map_err(text)?;
    let slowest = world
        .all_reduce(&seconds, ReduceOp::Max)
        .map_err(text)?
        .to_f64_vec();
    let [matmul, attention, elementwise, copy, all_reduce_small, all_reduce_large, dispatch] =
        std::array::from_fn(|i| Timed {
            amount: mine[i].amount,
            seconds: slowest[i],
        });
    let devices = world.size();
    let available = crate::train::memory::available_memory()
        .ok_or("cannot read MemAvailable from /proc/meminfo for the memory per rank")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Measured {
        devices,
        model: format!("threads rank, {devices} sharing a {cores}-core CPU"),
        memory_bytes: available / devices as u64,
        dtype: "f32".into(),
        matmul,
        attention,
        elementwise,
        copy,
        all_reduce_small,
        all_reduce_large,
        dispatch,
    })
}

/// Measures this machine with `devices` threads ranks at once (see
/// [`measure_collective`]).
pub fn measure(devices: usize, budget: Duration) -> Result<Measured, String> {
    if devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    threads::run(devices, |world| measure_collective(world.as_ref(), budget)).remove(0)
}

/// The description of what `measured` found, with the measurements as comments.
pub fn describe(measured: &Measured, hardware: &Hardware, command: &str) -> Result<String, String> {
    let body = toml::to_string(hardware).map_err(text)?;
    let rate = |t: &Timed, unit: f64| t.rate() / unit;
    Ok(format!(
        "# This machine, measured by `{command}` with {} threads ranks timing each kernel\n\
         # at once (every number is the slowest rank's):\n\
         #   GEMM mix          {:>8.2} GFLOP/s  -> peak_flops.f32, matmul efficiency 1\n\
         #   fused attention   {:>8.2} GFLOP/s  -> efficiency.attention (of the GEMM rate)\n\
         #   elementwise       {:>8.2} GB/s     -> efficiency.elementwise (of the copy)\n\
         #   64 MiB copy       {:>8.2} GB/s     -> memory_bandwidth (read + write)\n\
         #   all-reduce 4 KiB  {:>8.1} µs, 16 MiB {:.1} ms -> the α-β link\n\
         #   tiny kernels      {:>8.2} µs each  -> kernel_overhead\n\
         # memory_bytes is MemAvailable divided by the ranks.\n{body}",
        measured.devices,
        rate(&measured.matmul, 1e9),
        rate(&measured.attention, 1e9),
        rate(&measured.elementwise, 1e9),
        rate(&measured.copy, 1e9),
        measured.all_reduce_small.seconds * 1e6,
        measured.all_reduce_large.seconds * 1e3,
        hardware.device.kernel_overhead * 1e6,
    ))
}

/// `seconds` of `flag` as a timing budget: positive and finite.
pub fn budget(seconds: f64, flag: &str) -> Result<Duration, String> {
    match seconds.is_finite() && seconds > 0.0 {
        true => Ok(Duration::from_secs_f64(seconds)),
        false => Err(format!(
            "{flag} must be a positive number of seconds, got {seconds}"
        )),
    }
}

/// Measures this machine on `devices` ranks and writes the description to `path`.
pub fn calibrate(devices: usize, budget: Duration, path: &Path) -> Result<Hardware, String> {
    let measured = measure(devices, budget)?;
    let hardware = measured.to_hardware("local").map_err(text)?;
    let command = format!("luoshu sim calibrate --devices {devices}");
    let body = describe(&measured, &hardware, &command)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, &body).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hardware)
}

pub fn run(args: &CalibrateArgs) -> Result<ExitCode, String> {
    let devices = args
        .devices
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let budget = budget(args.seconds, "--seconds")?;
    println!(
        "calibrating on {devices} threads rank(s), {} s per kernel ...",
        args.seconds
    );
    calibrate(devices, budget, &args.out)?;
    print!("{}", std::fs::read_to_string(&args.out).map_err(text)?);
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
