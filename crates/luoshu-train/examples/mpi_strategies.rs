//! The strategy equivalence check under MPI: run with
//! `mpirun -n 4 target/release/examples/mpi_strategies` (build with
//! `cargo build --release -p luoshu-model --features mpi --example mpi_strategies`).
//! Every 4-rank strategy of the list trains 3 steps over `MpiComm`; rank 0 compares the
//! losses and gathered parameters with a single-device run and exits non-zero on a mismatch.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::mpi::{finalize, MpiComm};
use luoshu_comm::DEFAULT_TIMEOUT;
use luoshu_train::parallel::conformance::{compare_runs, distributed_rank, single_device};
use std::process::ExitCode;
use std::sync::Arc;

const STRATEGIES: [&str; 5] = ["dp4", "tp4", "pp4", "dp2tp2", "dp2pp2zero1"];
const STEPS: usize = 3;

fn check() -> Result<String, String> {
    let world = MpiComm::world(DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
    let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let rank = world.rank();
    let expected = single_device(backend.clone(), STEPS).map_err(|e| e.to_string())?;
    let mut passed = Vec::new();
    for name in STRATEGIES {
        let strategy = name
            .parse()
            .map_err(|e: luoshu_dist::Error| e.to_string())?;
        if world.size() != luoshu_dist::Strategy::devices(&strategy) {
            continue;
        }
        let (losses, state) =
            distributed_rank(backend.clone(), world.clone(), strategy, None, 0, STEPS)
                .map_err(|e| format!("{name}: {e}"))?;
        if let Some(state) = state {
            compare_runs(name, &(losses, state), &expected).map_err(|e| e.to_string())?;
        }
        passed.push(name);
    }
    if passed.is_empty() {
        return Err(format!(
            "no strategy of {STRATEGIES:?} runs on {} ranks; use mpirun -n 4",
            world.size()
        ));
    }
    Ok(format!(
        "mpi_strategies: {} equal one device on rank {rank} of {}",
        passed.join(", "),
        world.size()
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
        (Err(e), _) | (_, Err(luoshu_comm::Error::Mpi(e))) => {
            eprintln!("mpi_strategies: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("mpi_strategies: {e}");
            ExitCode::FAILURE
        }
    }
}
