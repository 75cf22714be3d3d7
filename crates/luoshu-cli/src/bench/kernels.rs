//! Kernel benchmarks: f32 GEMM against numpy, fused attention against plain GEMM.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads};
use luoshu_backend::{DType, Ops, Tensor};
use luoshu_tensor::rng;
use std::process::Command;
use std::time::{Duration, Instant};

/// The numpy baseline script, at the repository root.
const NUMPY_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/gemm_vs_numpy.py");

/// How long a repeated call took: its best wall time, and the CPU time of all the process's
/// threads per call (`None` without Linux's `/proc`). Wall time is what a user waits for;
/// CPU time barely moves when other processes share the cores, where the best wall time of
/// a call that needs both cores at once can double.
pub(crate) struct Timing {
    pub(crate) best: f64,
    pub(crate) cpu: Option<f64>,
}

/// Times `f` over at least 3 runs and `budget` (after one warm-up run).
fn timed(budget: Duration, mut f: impl FnMut() -> Result<(), String>) -> Result<Timing, String> {
    f()?;
    let cpu_start = process_cpu_seconds();
    let (mut best, mut total, mut runs) = (f64::INFINITY, Duration::ZERO, 0);
    while total < budget || runs < 3 {
        let start = Instant::now();
        f()?;
        let elapsed = start.elapsed();
        best = best.min(elapsed.as_secs_f64());
        total += elapsed;
        runs += 1;
    }
    let cpu = cpu_start
        .zip(process_cpu_seconds())
        .map(|(start, end)| (end - start) / runs as f64);
    Ok(Timing { best, cpu })
}

/// CPU seconds every thread of this process has run (the sum over `/proc/self/task/*/schedstat`,
/// nanoseconds), or `None` where that is unavailable.
fn process_cpu_seconds() -> Option<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 * 1e-9)
}

pub(crate) fn random_f32(dims: &[usize], stream: u64) -> Result<Tensor, String> {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|i| rng::normal(1, stream, i as u64)).collect();
    Tensor::from_vec(data, dims).map_err(|e| e.to_string())
}

/// One GEMM shape: `out[m×n] = a[m×k] · b[k×n]`, operands optionally stored transposed.
pub(crate) struct GemmShape {
    label: &'static str,
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) a_transposed: bool,
    pub(crate) b_transposed: bool,
}

impl GemmShape {
    /// The `M,K,N,TA,TB` spec the numpy script takes and echoes.
    fn spec(&self) -> String {
        let (m, k, n) = (self.m, self.k, self.n);
        let (ta, tb) = (self.a_transposed as u8, self.b_transposed as u8);
        format!("{m},{k},{n},{ta},{tb}")
    }

    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

const fn shape(label: &'static str, m: usize, k: usize, n: usize, ta: bool, tb: bool) -> GemmShape {
    GemmShape {
        label,
        m,
        k,
        n,
        a_transposed: ta,
        b_transposed: tb,
    }
}

/// 1024³, then two transformer projections (2048 tokens) with their backward products:
/// `dX = dY·Wᵀ` (W read through transposed strides) and `dW = Xᵀ·dY` (X transposed).
pub(crate) const GEMM_SHAPES: [GemmShape; 7] = [
    shape("square 1024³", 1024, 1024, 1024, false, false),
    shape("Y = X·W 2048×256→768", 2048, 256, 768, false, false),
    shape("dX = dY·Wᵀ", 2048, 768, 256, false, true),
    shape("dW = Xᵀ·dY", 256, 2048, 768, true, false),
    shape("Y = X·W 2048×688→256", 2048, 688, 256, false, false),
    shape("dX = dY·Wᵀ", 2048, 256, 688, false, true),
    shape("dW = Xᵀ·dY", 688, 2048, 256, true, false),
];

/// A `rows × cols` operand, stored as its transpose when asked.
pub(crate) fn gemm_operand(
    rows: usize,
    cols: usize,
    transposed: bool,
    stream: u64,
) -> Result<Tensor, String> {
    if transposed {
        random_f32(&[cols, rows], stream)?
            .transpose(0, 1)
            .map_err(|e| e.to_string())
    } else {
        random_f32(&[rows, cols], stream)
    }
}

/// Our GFLOP/s on one shape (by best wall time).
pub(crate) fn our_gemm(s: &GemmShape, budget: Duration) -> Result<f64, String> {
    Ok(s.flops() / gemm_timing(s, budget)?.best / 1e9)
}

/// The timing of our GEMM on one shape.
fn gemm_timing(s: &GemmShape, budget: Duration) -> Result<Timing, String> {
    let ops = Ops::new(&CpuBackend);
    let a = gemm_operand(s.m, s.k, s.a_transposed, 1)?;
    let b = gemm_operand(s.k, s.n, s.b_transposed, 2)?;
    let out = ops
        .alloc(DType::F32, &[s.m, s.n])
        .map_err(|e| e.to_string())?;
    timed(budget, || {
        ops.matmul_into(&a, &b, &out).map_err(|e| e.to_string())
    })
}

/// numpy's GFLOP/s on one shape, or why there is none.
fn numpy_gemm(threads: usize, s: &GemmShape) -> Result<f64, String> {
    let output = Command::new("python3")
        .arg(NUMPY_SCRIPT)
        .arg(s.spec())
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| {
            format!("could not run python3 ({e}); install Python 3 and `pip install numpy`")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{NUMPY_SCRIPT} failed: {}", stderr.trim()));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().next().unwrap_or_default();
    match line.split_once(' ') {
        Some((spec, rate)) if spec == s.spec() => rate
            .trim()
            .parse::<f64>()
            .map_err(|e| format!("bad rate in {line:?}: {e}")),
        _ => Err(format!("unexpected line from the numpy script: {line:?}")),
    }
}

pub fn gemm(threads: usize, budget: Duration) -> Result<(), String> {
    println!("f32 GEMM, {threads} threads; GFLOP/s = 2·m·k·n / best time");
    println!("(each shape: ours, then numpy right after, so both see the same machine load)");
    println!(
        "{:<24} {:>16} {:>10} {:>10} {:>7}",
        "shape", "m×k×n (TA,TB)", "luoshu", "numpy", "ratio"
    );
    let mut numpy_error = None;
    for s in &GEMM_SHAPES {
        let ours = our_gemm(s, budget)?;
        // Once numpy failed (not installed), don't retry it for every shape.
        let base = match numpy_error {
            None => numpy_gemm(threads, s)
                .map_err(|e| numpy_error = Some(e))
                .ok(),
            Some(_) => None,
        };
        let dims = format!(
            "{}×{}×{} ({},{})",
            s.m, s.k, s.n, s.a_transposed as u8, s.b_transposed as u8
        );
        let (base_text, ratio_text) = match base {
            Some(b) => (format!("{b:.1}"), format!("{:.2}×", ours / b)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<24} {:>16} {:>10.1} {:>10} {:>7}",
            s.label, dims, ours, base_text, ratio_text
        );
    }
    match numpy_error {
        None => println!(
            "ratio = luoshu / numpy (OpenBLAS, OPENBLAS_NUM_THREADS={threads}); > 1 is faster"
        ),
        Some(why) => println!("numpy baseline unavailable: {why}"),
    }
    Ok(())
}

pub fn attention(budget: Duration) -> Result<(), String> {
    let (b, h, s, d) = (8, 4, 1024, 64);
    let ops = Ops::new(&CpuBackend);
    let err = |e: luoshu_backend::Error| e.to_string();
    let q = random_f32(&[b, h, s, d], 3)?;
    let k = random_f32(&[b, h, s, d], 4)?;
    let v = random_f32(&[b, h, s, d], 5)?;
    let grad_out = random_f32(&[b, h, s, d], 6)?;
    let opts = AttentionOpts {
        scale: 1.0 / (d as f32).sqrt(),
        causal: true,
    };
    let inputs = AttentionInputs::new(&q, &k, &v);
    let (out, lse) = ops.attention(inputs, opts).map_err(err)?;
    let output_grads = AttentionOutputGrads::new(&out, &lse, &grad_out);
    // Gradients into buffers allocated once, as a compiled plan's arena gives them (and as
    // the GEMM baseline writes into its output): allocating and zeroing three fresh
    // gradients per call is not attention's cost.
    let (grad_q, grad_k, grad_v) = ops
        .attention_backward(inputs, opts, output_grads)
        .map_err(err)?;
    let grads = AttentionGrads {
        q: &grad_q,
        k: &grad_k,
        v: &grad_v,
    };
    let forward = timed(budget, || {
        ops.attention_into(inputs, opts, &out, &lse).map_err(err)
    })?;
    let backward = timed(budget, || {
        ops.attention_backward_into(inputs, opts, output_grads, grads)
            .map_err(err)
    })?;
    let gemm = gemm_timing(&GEMM_SHAPES[0], budget)?;

    // Causal: half of the s×s score matrix. Forward = 2 products (Q·Kᵀ, P·V); backward = 5
    // (recomputed Q·Kᵀ, dO·Vᵀ, Pᵀ·dO, dS·K, dSᵀ·Q); each 2·s·s·d FLOPs per head, halved.
    let per_product = (b * h) as f64 * 2.0 * (s * s * d) as f64 / 2.0;
    let (fwd_flops, bwd_flops) = (2.0 * per_product, 5.0 * per_product);
    let flops = fwd_flops + bwd_flops;
    let gemm_flops = GEMM_SHAPES[0].flops();
    let total = forward.best + backward.best;
    let gemm_time = flops / gemm_flops * gemm.best;
    // Rayon's pool size: RAYON_NUM_THREADS when set to a positive count, else every core.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    println!(
        "causal attention f32, batch {b}, heads {h}, seq {s}, head dim {d}; {threads} threads"
    );
    println!(
        "FLOPs (causal half, 7 products of 2·s²·d per head): forward {:.2} G, backward {:.2} G",
        fwd_flops / 1e9,
        bwd_flops / 1e9
    );
    for (name, secs, work) in [
        ("forward ", forward.best, fwd_flops),
        ("backward", backward.best, bwd_flops),
        ("fwd+bwd ", total, flops),
    ] {
        println!(
            "{name} {:>8.1} ms  ({:.1} GFLOP/s)",
            secs * 1e3,
            work / secs / 1e9
        );
    }
    println!(
        "plain GEMM at our 1024³ rate ({:.1} GFLOP/s, same run): {:.1} ms for the same FLOPs",
        gemm_flops / gemm.best / 1e9,
        gemm_time * 1e3
    );
    println!(
        "ratio fused / GEMM = {:.2}× by best wall time (target ≤ 1.3×)",
        total / gemm_time
    );
    if let (Some(fwd), Some(bwd), Some(gemm_cpu)) = (forward.cpu, backward.cpu, gemm.cpu) {
        let gemm_cpu_time = flops / gemm_flops * gemm_cpu;
        println!(
            "by CPU time of all threads (steady when other processes share the cores): \
             fwd+bwd {:.1} ms, GEMM {:.1} ms for the same FLOPs, ratio {:.2}×",
            (fwd + bwd) * 1e3,
            gemm_cpu_time * 1e3,
            (fwd + bwd) / gemm_cpu_time
        );
    }
    Ok(())
}
