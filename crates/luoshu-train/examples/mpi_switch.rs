//! The switch round trip under MPI: run with `mpirun -n 4 target/debug/examples/mpi_switch`
//! (build with `cargo build -p luoshu-train --features mpi --example mpi_switch`). The
//! parameters of a running tp2pp2 trainer and gradient accumulators are switched
//! tp2pp2 → dp4 → dp2tp2 → dp4zero1 → tp2pp2 over `MpiComm`; every stop must hold exactly
//! its strategy's pieces and the end must equal the start bit for bit.

use luoshu_backend::cpu::CpuBackend;
use luoshu_comm::mpi::{finalize, MpiComm};
use luoshu_comm::DEFAULT_TIMEOUT;
use luoshu_dist::Strategy;
use luoshu_train::parallel::switch_check::switch_round_trip;
use std::process::ExitCode;
use std::sync::Arc;

const HOPS: [&str; 4] = ["tp2pp2", "dp4", "dp2tp2", "dp4zero1"];

fn check() -> Result<String, String> {
    let world = MpiComm::world(DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
    if world.size() != 4 {
        return Err(format!(
            "run on 4 ranks (mpirun -n 4), not {}",
            world.size()
        ));
    }
    let hops: Vec<Strategy> = HOPS
        .iter()
        .map(|s| s.parse().map_err(|e: luoshu_dist::Error| e.to_string()))
        .collect::<Result<_, _>>()?;
    let rank = world.rank();
    switch_round_trip(Arc::new(CpuBackend::new()), world, &hops).map_err(|e| e.to_string())?;
    Ok(format!(
        "mpi_switch: {} → {} round trip bit-identical on rank {rank}",
        HOPS.join(" → "),
        HOPS[0]
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
            eprintln!("mpi_switch: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("mpi_switch: {e}");
            ExitCode::FAILURE
        }
    }
}
