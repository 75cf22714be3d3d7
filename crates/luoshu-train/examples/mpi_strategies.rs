//! The strategy equivalence check under MPI: run with
//! `mpirun -n 4 target/release/examples/mpi_strategies` (build with
//! `cargo build --release -p luoshu-train --features mpi --example mpi_strategies`).
//! Every 4-rank strategy of the list trains 3 steps of every harness case it supports
//! (tied and GQA/untied models, clipping on and off) over `MpiComm`; after each step every
//! rank compares its loss, gradient norm before clipping, parameters and AdamW moments
//! with a single-device run it makes itself (`parallel::conformance::check_rank`), and
//! every rank exits non-zero when any rank found a mismatch. On 4 ranks it then runs the
//! switch round trip (`parallel::switch_check`): a running tp2pp2 trainer's parameters and
//! gradient accumulators switched tp2pp2 → dp4 → dp2tp2 → dp4zero1 → tp2pp2, every stop
//! equal bit for bit to the canonical pieces; and hot switching (buckets under dp4 and
//! dp2tp2, updates under tp2pp2) passes the same per-rank check as the static strategies
//! (`hot::check::check_hot_rank`).

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::mpi::{finalize, MpiComm};
use luoshu_comm::DEFAULT_TIMEOUT;
use luoshu_dist::Strategy;
use luoshu_train::hot::check::check_hot_rank;
use luoshu_train::hot::BucketStrategies;
use luoshu_train::parallel::compare::Agreement;
use luoshu_train::parallel::conformance::{all_references, check_rank};
use luoshu_train::parallel::switch_check::switch_round_trip;
use std::process::ExitCode;
use std::sync::Arc;

const STRATEGIES: [&str; 6] = ["dp4", "tp4", "pp4", "dp2tp2", "tp2pp2", "dp2pp2zero1"];
const STEPS: usize = 3;
const SWITCH_HOPS: [&str; 4] = ["tp2pp2", "dp4", "dp2tp2", "dp4zero1"];
/// Hot switching on 4 ranks: the harness batches' buckets (lengths 7 and 13) under dp4
/// and dp2tp2, the update under tp2pp2.
const HOT: (&str, &str) = ("7:dp4,13:dp2tp2", "tp2pp2");

fn check() -> Result<String, String> {
    let world = MpiComm::world(DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let rank = world.rank();
    let references = all_references(backend.clone(), STEPS).map_err(|e| e.to_string())?;
    let (mut strategies, mut runs) = (Vec::new(), 0);
    let mut worst = Agreement::default();
    for name in STRATEGIES {
        let strategy: Strategy = name
            .parse()
            .map_err(|e: luoshu_dist::Error| e.to_string())?;
        if world.size() != strategy.devices() {
            continue;
        }
        strategies.push(name);
        for reference in &references {
            if !reference.case.supports(strategy) {
                continue;
            }
            let agreement = check_rank(backend.clone(), world.clone(), strategy, reference)
                .map_err(|e| e.to_string())?;
            worst.merge(agreement);
            runs += 1;
        }
    }
    if strategies.is_empty() {
        return Err(format!(
            "no strategy of {STRATEGIES:?} runs on {} ranks; use mpirun -n 4",
            world.size()
        ));
    }
    let hops: Vec<Strategy> = SWITCH_HOPS
        .iter()
        .map(|s| s.parse().map_err(|e: luoshu_dist::Error| e.to_string()))
        .collect::<Result<_, _>>()?;
    let size = world.size();
    let switched = if size == 4 {
        switch_round_trip(backend.clone(), world.clone(), &hops).map_err(|e| e.to_string())?;
        let buckets: BucketStrategies = HOT.0.parse().map_err(|e| format!("{e}"))?;
        let update: Strategy = HOT
            .1
            .parse()
            .map_err(|e: luoshu_dist::Error| e.to_string())?;
        let mut hot_runs = 0;
        for reference in &references {
            let case = &reference.case;
            if !buckets.strategies().into_iter().all(|s| case.supports(s)) || !case.supports(update)
            {
                continue;
            }
            let agreement = check_hot_rank(
                backend.clone(),
                world.clone(),
                &buckets,
                update,
                reference,
                None,
            )
            .map_err(|e| e.to_string())?;
            worst.merge(agreement);
            hot_runs += 1;
        }
        format!(
            "; switch round trip {} → tp2pp2 bit-identical; hot switching {} → {} equals one \
             device ({hot_runs} cases)",
            SWITCH_HOPS.join(" → "),
            HOT.0,
            HOT.1
        )
    } else {
        String::new()
    };
    Ok(format!(
        "mpi_strategies: rank {rank} of {size}: {} over the cases they support ({runs} runs \
         of {STEPS} steps) equal one device; closest {:.2} of the tolerance, at {}{switched}",
        strategies.join(", "),
        worst.ratio,
        worst.at
    ))
}

fn main() -> ExitCode {
    let result = check();
    let finalized = finalize();
    match (result, finalized) {
        (Ok(line), Ok(())) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("mpi_strategies: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("mpi_strategies: {e}");
            ExitCode::FAILURE
        }
    }
}
