//! `luoshu switch`: plan (and optionally run) the switch of a model's state from one
//! parallel strategy's layout to another's, printing the planner's report next to the
//! naive first-holder plan's. Planning never allocates the model, so a 70B model on 1024
//! ranks can be planned on a laptop; `--execute` runs the switch on threads ranks.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Ops;
use luoshu_comm::threads;
use luoshu_dist::switch::{
    allocate_pieces, execute_switch, human_bytes, plan_switch, SenderChoice, SwitchPieces,
    SwitchPlan,
};
use luoshu_dist::{Placement, Strategy, SwitchReport, Topology};
use luoshu_model::{init_params, ModelConfig};
use luoshu_tensor::{DType, Tensor};
use luoshu_train::placement::{check_strategy, strategy_placements};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SwitchArgs {
    /// Model preset (tiny, bench-5m, llama-3b, llama-7b, llama-13b, llama-32b, llama-70b).
    #[arg(long, default_value = "bench-5m")]
    pub model: String,
    /// Ranks in the world; both strategies must use all of them.
    #[arg(long, default_value_t = 4)]
    pub devices: usize,
    /// Ranks per node (rank r is on node r / ranks-per-node); default: one node.
    #[arg(long)]
    pub ranks_per_node: Option<usize>,
    /// The strategy the state is laid out for now, e.g. tp2pp2.
    #[arg(long)]
    pub from: String,
    /// The strategy to switch to, e.g. dp4.
    #[arg(long)]
    pub to: String,
    /// Element type of the moved tensors: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// What moves: `params`, or `params+grads` (gradient accumulators too).
    #[arg(long, default_value = "params")]
    pub what: String,
    /// Run the switch on threads ranks and time it against a memcpy of the same bytes.
    #[arg(long)]
    pub execute: bool,
}

/// The placements of what moves under one strategy.
fn state_placements(
    model: &ModelConfig,
    strategy: Strategy,
    grads: bool,
) -> Result<Vec<Placement>, String> {
    let placed = strategy_placements(model, strategy).map_err(|e| e.to_string())?;
    let mut out = placed.params;
    if grads {
        out.extend(placed.grads);
    }
    Ok(out)
}

fn parse_strategy(
    text: &str,
    flag: &str,
    model: &ModelConfig,
    devices: usize,
) -> Result<Strategy, String> {
    let strategy: Strategy = text.parse().map_err(|e| format!("--{flag}: {e}"))?;
    check_strategy(model, strategy, devices).map_err(|e| format!("--{flag} {strategy}: {e}"))?;
    Ok(strategy)
}

pub fn run(args: &SwitchArgs) -> Result<ExitCode, String> {
    let model = ModelConfig::preset(&args.model).map_err(|e| e.to_string())?;
    if args.devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    let per_node = args.ranks_per_node.unwrap_or(args.devices);
    let topology = Topology::gpu_cluster(args.devices, per_node).map_err(|e| e.to_string())?;
    let from = parse_strategy(&args.from, "from", &model, args.devices)?;
    let to = parse_strategy(&args.to, "to", &model, args.devices)?;
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        other => return Err(format!("--dtype {other}: expected f32 or bf16")),
    };
    let grads = match args.what.as_str() {
        "params" => false,
        "params+grads" => true,
        other => return Err(format!("--what {other}: expected params or params+grads")),
    };
    let started = Instant::now();
    let source = state_placements(&model, from, grads)?;
    let target = state_placements(&model, to, grads)?;
    let placed_in = started.elapsed();
    let pairs: Vec<(&Placement, &Placement)> = source.iter().zip(&target).collect();
    let element = dtype.size_in_bytes();
    let timed = |choice| -> Result<(SwitchPlan, Duration), String> {
        let start = Instant::now();
        let plan = plan_switch(&pairs, &topology, element, choice).map_err(|e| e.to_string())?;
        Ok((plan, start.elapsed()))
    };
    let (plan, plan_time) = timed(SenderChoice::Balanced)?;
    let (naive, naive_time) = timed(SenderChoice::FirstHolder)?;
    let parameters = model.num_parameters() as f64;
    let size = match parameters >= 1e9 {
        true => format!("{:.2} B", parameters / 1e9),
        false => format!("{:.2} M", parameters / 1e6),
    };
    println!(
        "switch {} ({size} parameters, {}) on {} ranks ({} per node): {from} → {to}, {}",
        args.model,
        args.dtype,
        args.devices,
        per_node,
        if grads {
            "parameters and gradients"
        } else {
            "parameters"
        },
    );
    println!(
        "placements {:.1} ms; plan {:.1} ms (naive {:.1} ms)\n",
        placed_in.as_secs_f64() * 1e3,
        plan_time.as_secs_f64() * 1e3,
        naive_time.as_secs_f64() * 1e3
    );
    let tensors = source.len();
    print_side_by_side(
        &SwitchReport::of(&plan, tensors, &topology),
        &SwitchReport::of(&naive, tensors, &topology),
    );
    if args.execute {
        execute(&model, &source, &target, &plan, dtype)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_side_by_side(planner: &SwitchReport, naive: &SwitchReport) {
    println!("{:<22}{:>16}{:>16}", "", "planner", "naive");
    let row = |name: &str, a: String, b: String| println!("{name:<22}{a:>16}{b:>16}");
    row(
        "pieces",
        planner.pieces.to_string(),
        naive.pieces.to_string(),
    );
    row(
        "messages",
        planner.messages.to_string(),
        naive.messages.to_string(),
    );
    for (class, bytes) in &planner.bytes {
        row(
            &format!("bytes {}", class.name()),
            human_bytes(*bytes),
            human_bytes(naive.bytes.get(class).copied().unwrap_or(0)),
        );
    }
    row(
        "received",
        human_bytes(planner.received),
        human_bytes(naive.received),
    );
    row(
        "lower bound",
        human_bytes(planner.lower_bound),
        human_bytes(naive.lower_bound),
    );
    row(
        "max send / rank",
        human_bytes(planner.max_send),
        human_bytes(naive.max_send),
    );
    row(
        "max recv / rank",
        human_bytes(planner.max_receive),
        human_bytes(naive.max_receive),
    );
    row(
        "α-β time",
        format!("{:.3} ms", planner.estimated_seconds * 1e3),
        format!("{:.3} ms", naive.estimated_seconds * 1e3),
    );
}

/// Bytes every rank stores for `placements` together.
fn stored_bytes(placements: &[Placement], element: usize) -> usize {
    placements
        .iter()
        .flat_map(|p| &p.holdings)
        .map(|h| h.piece.numel() * h.ranks.len() * element)
        .sum()
}

/// `MemAvailable` of /proc/meminfo, in bytes, where the OS reports it.
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the switch on threads ranks (each cuts its source pieces from the seeded initial
/// parameters; gradients stand in as copies of them) and compares with a memcpy of the
/// bytes it moves.
fn execute(
    model: &ModelConfig,
    source: &[Placement],
    target: &[Placement],
    plan: &SwitchPlan,
    dtype: DType,
) -> Result<(), String> {
    let element = dtype.size_in_bytes();
    let needed =
        stored_bytes(source, element) + stored_bytes(target, element) + model.num_parameters() * 4;
    if let Some(available) = available_memory() {
        if needed > available / 2 {
            return Err(format!(
                "--execute would hold {} of pieces on this machine ({} available): plan without \
                 --execute, or pick a smaller --model such as bench-5m",
                human_bytes(needed),
                human_bytes(available)
            ));
        }
    }
    let backend = Arc::new(CpuBackend::new());
    let ops = Ops::new(backend.as_ref());
    let params = init_params(model, 0).map_err(|e| e.to_string())?;
    let canonical: Vec<Tensor> = params
        .tensors()
        .iter()
        .cycle()
        .take(source.len())
        .map(|t| ops.cast(t, dtype))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let devices = plan.world;
    let barrier = Barrier::new(devices);
    let results = threads::run(devices, |world| -> Result<Duration, String> {
        let ops = Ops::new(backend.as_ref());
        let rank = world.rank();
        let err = |e: luoshu_dist::Error| e.to_string();
        let src: Vec<Vec<Tensor>> = source
            .iter()
            .zip(&canonical)
            .map(|(p, t)| p.cut_for(&ops, rank, t))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let dst = allocate_pieces(&ops, target, rank, dtype).map_err(err)?;
        barrier.wait();
        let start = Instant::now();
        let pieces = SwitchPieces {
            src: &src,
            dst: &dst,
        };
        execute_switch(plan, source, target, world.as_ref(), &ops, pieces, 0).map_err(err)?;
        let elapsed = start.elapsed();
        for ((p, pieces), t) in target.iter().zip(&dst).zip(&canonical) {
            let expected = p.cut_for(&ops, rank, t).map_err(err)?;
            for (a, b) in pieces.iter().zip(&expected) {
                if a.to_f64_vec() != b.to_f64_vec() {
                    return Err(format!(
                        "rank {rank} received wrong values: the switch is broken"
                    ));
                }
            }
        }
        Ok(elapsed)
    });
    let mut slowest = Duration::ZERO;
    for result in results {
        slowest = slowest.max(result?);
    }
    let moved: usize = plan
        .transfers
        .iter()
        .map(|t| t.region.numel() * element)
        .sum();
    let memcpy = time_memcpy(moved);
    println!(
        "\nexecuted on {devices} threads ranks: {:.2} ms for {} ({:.2} GB/s); memcpy of the \
         same bytes on one thread: {:.2} ms ({:.2} GB/s); every destination piece checked",
        slowest.as_secs_f64() * 1e3,
        human_bytes(moved),
        moved as f64 / slowest.as_secs_f64() / 1e9,
        memcpy.as_secs_f64() * 1e3,
        moved as f64 / memcpy.as_secs_f64() / 1e9,
    );
    Ok(())
}

/// The best of three copies of `bytes` between two buffers already touched once.
fn time_memcpy(bytes: usize) -> Duration {
    let src = vec![1u8; bytes.max(1)];
    let mut dst = vec![0u8; bytes.max(1)];
    (0..3)
        .map(|_| {
            let start = Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&dst);
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
