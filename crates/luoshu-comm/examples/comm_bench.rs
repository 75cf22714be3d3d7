//! Bus bandwidth of all-reduce, all-gather and reduce-scatter (nccl-tests conventions, see
//! `luoshu_comm::bench`) over message sizes from 4 KiB, next to this machine's memcpy
//! bandwidth at the same size. Rank 0 prints the table.
//!
//! ```text
//! cargo run --release -p luoshu-comm --example comm_bench -- [--ranks 4] [--max-bytes N] [--iters N]
//!
//! cargo build --release -p luoshu-comm --features mpi --example comm_bench
//! mpirun -n 4 target/release/examples/comm_bench --backend mpi [--max-bytes N] [--iters N]
//! ```
//!
//! Under MPI the rank count is `mpirun -n`'s (see the README, "Running on MPI", for the
//! OpenMPI environment containers need). `--iters` fixes the timed iterations per
//! measurement; by default they shrink from 50 for small messages to 5 for 64 MiB.

use luoshu_comm::bench::{self, Collective, Measurement};
use luoshu_comm::{threads, Communicator};
use std::process::ExitCode;

const USAGE: &str =
    "usage: comm_bench [--backend threads|mpi] [--ranks N] [--max-bytes N] [--iters N]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Threads,
    Mpi,
}

struct Args {
    backend: Backend,
    /// Threads backend only: under MPI, `mpirun -n` decides.
    ranks: Option<usize>,
    max_bytes: usize,
    iters: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: Backend::Threads,
        ranks: None,
        max_bytes: 64 << 20,
        iters: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let mut number = || -> Result<usize, String> {
            let v = value()?;
            v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--ranks" => args.ranks = Some(number()?),
            "--max-bytes" => args.max_bytes = number()?,
            "--iters" => args.iters = Some(number()?),
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "threads" => Backend::Threads,
                    "mpi" => Backend::Mpi,
                    other => {
                        return Err(format!("--backend: expected threads or mpi, got {other}"))
                    }
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.backend == Backend::Mpi && args.ranks.is_some() {
        return Err("--ranks is for the threads backend; under MPI use mpirun -n".into());
    }
    if args.ranks == Some(0) || args.iters == Some(0) {
        return Err("--ranks and --iters must be at least 1".into());
    }
    Ok(args)
}

/// Timed iterations for a message of `bytes`: many for small messages, whose times are
/// noisy, few for large ones, which are slow; about 256 MiB per measurement in between.
fn default_iters(bytes: usize) -> usize {
    ((256 << 20) / bytes).clamp(5, 50)
}

/// Measures every collective at every size; rank 0 prints the rows as they come.
fn sweep(comm: &dyn Communicator, args: &Args) -> luoshu_comm::Result<()> {
    let leader = comm.rank() == 0;
    if leader {
        println!(
            "comm_bench: backend {}, {} ranks, f32; time = median over iterations of the \
             slowest rank; memcpy = one thread on rank 0 while the others wait; fresh = \
             allocating and freeing a zeroed buffer of the size on rank 0 alone",
            comm.backend(),
            comm.size()
        );
        println!(
            "{:>9}  {:<19} {:>5} {:>12} {:>11} {:>11} {:>12} {:>11}",
            "size",
            "collective",
            "iters",
            "time (us)",
            "algbw GB/s",
            "busbw GB/s",
            "memcpy GB/s",
            "fresh GB/s"
        );
    }
    for bytes in bench::default_sizes()
        .into_iter()
        .filter(|&b| b <= args.max_bytes)
    {
        let iters = args.iters.unwrap_or_else(|| default_iters(bytes));
        // Alone on the machine: the other ranks wait in the barrier without using a core.
        comm.barrier()?;
        let baselines = leader.then(|| {
            (
                bench::memcpy_bandwidth(bytes, iters),
                bench::fresh_buffer_bandwidth(bytes, iters),
            )
        });
        comm.barrier()?;
        for collective in Collective::ALL {
            let m = bench::measure(comm, collective, bytes, 2, iters)?;
            if let Some(baselines) = baselines {
                print_row(&m, iters, baselines);
            }
        }
    }
    Ok(())
}

fn print_row(m: &Measurement, iters: usize, (memcpy_gbs, fresh_gbs): (f64, f64)) {
    println!(
        "{:>9}  {:<19} {:>5} {:>12.1} {:>11.2} {:>11.2} {:>12.2} {:>11.2}",
        human_bytes(m.bytes),
        m.collective.name(),
        iters,
        m.seconds * 1e6,
        m.algbw_gbs,
        m.busbw_gbs,
        memcpy_gbs,
        fresh_gbs
    );
}

/// `bytes` in the largest binary unit that divides it (all-gather and reduce-scatter sizes
/// rounded to a multiple of the rank count stay in bytes).
fn human_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn run_threads(args: &Args) -> ExitCode {
    let ranks = args.ranks.unwrap_or(4);
    let outcomes = threads::run(ranks, |comm| sweep(comm.as_ref(), args));
    let mut code = ExitCode::SUCCESS;
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        if let Err(e) = outcome {
            eprintln!("comm_bench: FAILED on rank {rank} of {ranks}: {e}");
            code = ExitCode::FAILURE;
        }
    }
    code
}

#[cfg(feature = "mpi")]
fn run_mpi(args: &Args) -> ExitCode {
    use luoshu_comm::mpi::{self, MpiComm};
    use luoshu_comm::DEFAULT_TIMEOUT;
    let comm = match MpiComm::world(DEFAULT_TIMEOUT) {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("comm_bench: cannot create the MPI communicator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (rank, size) = (comm.rank(), comm.size());
    let outcome = sweep(comm.as_ref(), args);
    drop(comm);
    // Finalize even after a failure, so mpirun sees every rank end cleanly.
    let finalized = mpi::finalize();
    match outcome.and(finalized) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("comm_bench: FAILED on rank {rank} of {size}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(_args: &Args) -> ExitCode {
    eprintln!(
        "comm_bench: --backend mpi needs the MPI backend, which this binary was built \
         without: rebuild with `cargo build --release -p luoshu-comm --features mpi \
         --example comm_bench` and launch it with `mpirun -n 4 \
         target/release/examples/comm_bench --backend mpi` (see README, \"Running on MPI\")"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("comm_bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.backend {
        Backend::Threads => run_threads(&args),
        Backend::Mpi => run_mpi(&args),
    }
}
