//! Printing a planned step: per bucket the candidates and the choice, the switches, and
//! the step time against the static baselines.

use luoshu_dist::switch::human_bytes;
use luoshu_sim::evaluate::fits;
use luoshu_sim::step::{Bucket, Step};
use luoshu_sim::Plan;

/// Candidates printed per bucket unless `--all-candidates`.
pub const SHOWN_CANDIDATES: usize = 8;

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// The strategy of a static step (its only phase).
pub fn strategy_of(step: &Step) -> String {
    step.phases
        .iter()
        .map(|p| p.candidate.to_string())
        .collect::<Vec<_>>()
        .join(" → ")
}

fn print_bucket(bucket: &Bucket, capacity: f64, all: bool) {
    println!(
        "bucket ({}, {}]: {} documents, {} tokens, {} rows of {} tokens",
        bucket.low,
        bucket.high,
        bucket.documents,
        bucket.tokens,
        bucket.rows.len(),
        bucket.high
    );
    println!(
        "  {:<24} {:>10} {:>10} {:>10} {:>11}  fits",
        "candidate", "step s", "pipeline s", "reduce s", "memory"
    );
    let mut order: Vec<usize> = (0..bucket.evaluated.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&bucket.evaluated[a], &bucket.evaluated[b]);
        a.cost.seconds.total_cmp(&b.cost.seconds)
    });
    let shown = if all { order.len() } else { SHOWN_CANDIDATES };
    // The fastest few, and the choice wherever it ranks (faster ones may not fit).
    let listed = order
        .iter()
        .enumerate()
        .filter(|&(rank, &i)| rank < shown || i == bucket.choice)
        .map(|(_, &i)| i);
    let listed: Vec<usize> = listed.collect();
    for &i in &listed {
        let e = &bucket.evaluated[i];
        let memory = e.memory_with(bucket.optimizer_for(e));
        let fits = fits(e, bucket.update_optimizer, capacity);
        println!(
            "  {:<24} {:>10.3} {:>10.3} {:>10.3} {:>11}  {}{}",
            e.candidate.to_string(),
            e.cost.seconds,
            e.cost.pipeline_seconds,
            e.cost.reduce_seconds,
            gib(memory),
            match (
                fits,
                e.candidate.strategy.zero1 && bucket.update_optimizer.is_some()
            ) {
                (_, true) => "no (ZeRO-1 only in the update strategy)",
                (true, _) => "yes",
                (false, _) => "no",
            },
            if i == bucket.choice {
                "  ← chosen"
            } else {
                ""
            }
        );
    }
    if order.len() > listed.len() {
        println!("  … {} more (--all-candidates)", order.len() - listed.len());
    }
}

/// Prints `plan`; `capacity` is the device memory.
pub fn print_plan(plan: &Plan, capacity: f64, all: bool) {
    let edges: Vec<String> = plan.edges.iter().map(|e| e.to_string()).collect();
    println!("candidate bucket edges: {}", edges.join(", "));
    println!();
    println!("hot switching:");
    for bucket in &plan.hot.buckets {
        print_bucket(bucket, capacity, all);
    }
    println!(
        "phases (in the order with the cheapest switches, ending in the update strategy {}):",
        plan.hot.update
    );
    for phase in &plan.hot.phases {
        let bounds: Vec<String> = phase
            .buckets
            .iter()
            .map(|&b| {
                format!(
                    "({}, {}]",
                    plan.hot.buckets[b].low, plan.hot.buckets[b].high
                )
            })
            .collect();
        println!(
            "  {:<24} {:>10.3} s  memory {}  buckets {}",
            phase.candidate.to_string(),
            phase.cost.seconds,
            gib(phase.cost.memory.total()),
            bounds.join(" ")
        );
    }
    if plan.hot.switches.is_empty() {
        println!("switches: none (one strategy)");
    } else {
        println!("switches (the switch planner's plans, bytes received over links):");
        for s in &plan.hot.switches {
            println!(
                "  {:<12} {} → {}: {} in {:.3} s",
                s.what.to_string(),
                s.from,
                s.to,
                human_bytes(s.bytes),
                s.seconds
            );
        }
    }
    println!();
    let hot = plan.hot.seconds();
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>8}  strategy",
        "step", "seconds", "compute", "switches", "update", "speedup"
    );
    let row = |name: &str, step: &Step| {
        println!(
            "{:<16} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>7.2}×  {}",
            name,
            step.seconds(),
            step.compute_seconds(),
            step.switch_seconds(),
            step.update_seconds,
            step.seconds() / hot,
            strategy_of(step)
        );
    };
    row("hot switching", &plan.hot);
    row("static packed", &plan.packed);
    match &plan.padded {
        Some(step) => row("static padded", step),
        None => println!(
            "{:<16} no strategy fits rows padded to the context",
            "static padded"
        ),
    }
    println!("(speedup: that step's time over hot switching's)");
}
