//! Runs the communicator conformance suite on the MPI backend; start it under `mpirun`:
//!
//! ```text
//! cargo build --release -p luoshu-comm --features mpi --example mpi_check
//! mpirun -n 4 target/release/examples/mpi_check
//! mpirun -n 4 target/release/examples/mpi_check --missing-rank 3
//! mpirun -n 4 --enable-recovery target/release/examples/mpi_check --dying-rank 2
//! ```
//!
//! Default: every collective and point-to-point check, the argument-error checks and the
//! timeout check of `luoshu_comm::conformance`, a 4 MiB all_reduce, and an all_reduce of a
//! tensor a kernel is writing (refused, since MPI would read it). With `--missing-rank R`: rank `R` skips an
//! all_reduce on the world communicator; every other rank must get a timeout naming exactly
//! `[R]`, and then a clear error (not a hang) from the broken communicator. Each rank prints
//! one line and the exit code is non-zero if any check failed. `--timeout-secs S` sets the
//! communicator timeout (default 5; the timeout checks take about one timeout).
//!
//! With `--dying-rank R`: every rank runs [`COLLECTIVES_BEFORE_DEATH`] checked all_reduces,
//! then rank `R` dies: it crashes (`std::process::abort`, SIGABRT) without finalizing MPI
//! or telling anyone. Every other rank's next all_reduce must fail with a
//! timeout naming exactly `[R]`, and the broken communicator must then refuse work. The
//! survivors print their line and end without `MPI_Finalize` (which would wait for the
//! dead rank). By default OpenMPI's `mpirun` kills the whole job when one process dies, so
//! this mode runs under `mpirun --enable-recovery`, which lets the others run on; `mpirun`
//! itself then exits non-zero for the killed rank, so a caller checks the survivors' lines
//! (`.ci/run` counts them).

use luoshu_comm::mpi::{self, MpiComm};
use luoshu_comm::{conformance, Communicator, Error, ReduceOp};
use luoshu_tensor::{Borrows, DType, Tensor};
use std::process::ExitCode;
use std::time::Duration;

/// Collectives every rank completes before `--dying-rank` dies.
const COLLECTIVES_BEFORE_DEATH: usize = 3;

struct Args {
    timeout: Duration,
    missing_rank: Option<usize>,
    dying_rank: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        timeout: Duration::from_secs(5),
        missing_rank: None,
        dying_rank: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match flag.as_str() {
            "--timeout-secs" => args.timeout = Duration::from_secs(value("--timeout-secs")?),
            "--missing-rank" => args.missing_rank = Some(value("--missing-rank")? as usize),
            "--dying-rank" => args.dying_rank = Some(value("--dying-rank")? as usize),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The conformance suites and a large all_reduce; returns what passed.
fn run_conformance(comm: &dyn Communicator) -> Result<String, String> {
    type Suite = fn(&dyn Communicator) -> conformance::Result<()>;
    let suites: [(&str, Suite); 3] = [
        ("collectives", conformance::check_collectives),
        ("argument errors", conformance::check_argument_errors),
        ("timeouts", conformance::check_timeouts),
    ];
    for (name, suite) in suites {
        suite(comm).map_err(|e| format!("{name}: {e}"))?;
    }
    check_large_all_reduce(comm).map_err(|e| format!("large all_reduce: {e}"))?;
    check_claimed_buffers(comm).map_err(|e| format!("claimed buffers: {e}"))?;
    Ok(format!("all {} checks passed", suites.len() + 2))
}

/// MPI reads and writes tensor storage under claims: an all_reduce of a tensor a kernel is
/// writing fails on every rank with a borrow conflict naming both (instead of MPI reading
/// bytes being written), and once the kernel is done the same all_reduce works.
fn check_claimed_buffers(comm: &dyn Communicator) -> Result<(), String> {
    let x = Tensor::from_vec(vec![1.0f32; 64], [64]).map_err(|e| e.to_string())?;
    let kernel = Borrows::new();
    kernel
        .write::<f32>("kernel", x.storage(), DType::F32, 8..16)
        .map_err(|e| e.to_string())?;
    match comm.all_reduce(&x, ReduceOp::Sum) {
        Err(Error::Tensor(luoshu_tensor::Error::BorrowConflict {
            op: "MPI_Ialltoallv",
            held_by: "kernel",
            ..
        })) => {}
        other => {
            return Err(format!(
                "expected a borrow conflict with the kernel, got {other:?}"
            ))
        }
    }
    drop(kernel);
    let sum = comm
        .all_reduce(&x, ReduceOp::Sum)
        .and_then(|t| Ok(t.to_vec::<f32>()?))
        .map_err(|e| e.to_string())?;
    let expected = comm.size() as f32;
    match sum.iter().position(|&v| v != expected) {
        None => Ok(()),
        Some(i) => Err(format!("element {i} is {}, expected {expected}", sum[i])),
    }
}

/// A 4 MiB all_reduce: far above MPI's eager limit, so the data takes the large-message
/// (rendezvous) path that the small tensors of the suites never reach.
fn check_large_all_reduce(comm: &dyn Communicator) -> Result<(), String> {
    const N: usize = 1 << 20;
    let (rank, size) = (comm.rank(), comm.size());
    let values: Vec<f32> = (0..N).map(|i| ((i % 1000) * (rank + 1)) as f32).collect();
    let x = Tensor::from_vec(values, [N]).map_err(|e| e.to_string())?;
    let sum = comm
        .all_reduce(&x, ReduceOp::Sum)
        .and_then(|t| Ok(t.to_vec::<f32>()?))
        .map_err(|e| e.to_string())?;
    let ranks_sum = (size * (size + 1) / 2) as f32;
    match (0..N).find(|&i| sum[i] != (i % 1000) as f32 * ranks_sum) {
        None => Ok(()),
        Some(i) => Err(format!("element {i} is {}", sum[i])),
    }
}

fn check_rank_argument(flag: &str, chosen: usize, size: usize) -> Result<(), String> {
    if chosen >= size || size < 2 {
        return Err(format!(
            "{flag} {chosen} needs at least 2 ranks and a rank below {size}"
        ));
    }
    Ok(())
}

/// Rank `missing` skips an all_reduce; the others must time out naming it. Returns what
/// passed on this rank.
fn run_missing_rank(comm: &dyn Communicator, missing: usize) -> Result<String, String> {
    check_rank_argument("--missing-rank", missing, comm.size())?;
    comm.barrier().map_err(|e| e.to_string())?;
    if comm.rank() == missing {
        return Ok("skipped the all_reduce as asked".into());
    }
    expect_timeout_naming(comm, missing)
}

/// Every rank completes a few all_reduces, then rank `dying` kills itself; the others must
/// time out naming it. Returns what passed on a surviving rank.
fn run_dying_rank(comm: &dyn Communicator, dying: usize) -> Result<String, String> {
    let (rank, size) = (comm.rank(), comm.size());
    check_rank_argument("--dying-rank", dying, size)?;
    for round in 0..COLLECTIVES_BEFORE_DEATH {
        let x = Tensor::from_slice(&[(rank + round) as f32], [1]).map_err(|e| e.to_string())?;
        let sum = comm
            .all_reduce(&x, ReduceOp::Sum)
            .and_then(|t| Ok(t.to_vec::<f32>()?))
            .map_err(|e| format!("all_reduce {round} before the death: {e}"))?;
        let want = (size * (size - 1) / 2 + size * round) as f32;
        if sum != [want] {
            return Err(format!("all_reduce {round}: got {sum:?}, want [{want}]"));
        }
    }
    if rank == dying {
        // A crash: SIGABRT, no destructor, no MPI_Finalize, no goodbye message.
        std::process::abort();
    }
    let summary = expect_timeout_naming(comm, dying)?;
    Ok(format!(
        "{summary} after {COLLECTIVES_BEFORE_DEATH} all_reduces"
    ))
}

/// The next all_reduce must time out naming exactly `[absent]`, and the broken
/// communicator must then refuse work.
fn expect_timeout_naming(comm: &dyn Communicator, missing: usize) -> Result<String, String> {
    let rank = comm.rank();
    let x = Tensor::from_slice(&[rank as f32], [1]).map_err(|e| e.to_string())?;
    match comm.all_reduce(&x, ReduceOp::Sum) {
        Err(Error::Timeout { op, missing: m, .. }) if op == "all_reduce" && m == [missing] => {}
        other => {
            return Err(format!(
                "expected a timeout naming [{missing}], got {other:?}"
            ))
        }
    }
    match comm.barrier() {
        Err(Error::Mpi(message)) if message.contains("unusable") => {
            Ok(format!("all 2 checks passed (timeout named [{missing}])"))
        }
        other => Err(format!(
            "expected the communicator to refuse work after a timeout, got {other:?}"
        )),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("mpi_check: {e}");
            return ExitCode::from(2);
        }
    };
    let comm = match MpiComm::world(args.timeout) {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("mpi_check: cannot create the MPI communicator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (rank, size) = (comm.rank(), comm.size());
    let outcome = match (args.missing_rank, args.dying_rank) {
        (Some(missing), None) => run_missing_rank(comm.as_ref(), missing),
        (None, Some(dying)) => {
            // MPI_Finalize would wait for the dead rank: report and end without it.
            let outcome = run_dying_rank(comm.as_ref(), dying);
            return report(rank, size, outcome.map(|summary| (summary, Ok(()))));
        }
        (None, None) => run_conformance(comm.as_ref()),
        (Some(_), Some(_)) => Err("--missing-rank and --dying-rank exclude each other".into()),
    };
    drop(comm);
    let finalized = mpi::finalize();
    report(rank, size, outcome.map(|summary| (summary, finalized)))
}

/// Prints this rank's line: what passed, or what failed.
fn report(
    rank: usize,
    size: usize,
    outcome: Result<(String, luoshu_comm::Result<()>), String>,
) -> ExitCode {
    match outcome {
        Ok((summary, Ok(()))) => {
            println!("mpi_check: {summary} on rank {rank} of {size}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mpi_check: FAILED on rank {rank} of {size}: {e}");
            ExitCode::FAILURE
        }
        Ok((_, Err(e))) => {
            eprintln!("mpi_check: FAILED on rank {rank} of {size}: finalize: {e}");
            ExitCode::FAILURE
        }
    }
}
