//! The baseline for the MPI backend's all-reduce: plain `MPI_Allreduce` (blocking, OpenMPI's
//! tuned algorithms) and `MPI_Iallreduce` completed by `MPI_Wait` or by polling `MPI_Test`,
//! on preallocated `f32` buffers, with no luoshu code in the way. Rank 0 prints one row per
//! size, with the same conventions as `comm_bench` (median over iterations of the slowest
//! rank, nccl-tests bus bandwidth `2(n-1)/n · S / t`).
//!
//! ```text
//! cargo build --release -p luoshu-comm --features mpi --example mpi_allreduce_bench
//! mpirun -n 2 target/release/examples/mpi_allreduce_bench [--max-bytes N]
//! ```

use luoshu_comm::conformance::order_sensitive_values;
use mpi::collective::{CommunicatorCollectives, SystemOperation};
use mpi::topology::Communicator;
use std::time::Instant;

/// How one all-reduce is run.
#[derive(Clone, Copy)]
enum Mode {
    Blocking,
    ImmediateWait,
    ImmediatePoll,
}

/// Elements of MPI's f32 sums (blocking and immediate) whose bits differ from the rank-order
/// fold, and whether all ranks agree bitwise; rank 0 prints them.
fn compare_with_rank_order(world: &mpi::topology::SimpleCommunicator, n: usize) {
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let x = order_sensitive_values(rank, n);
    let mut fold = order_sensitive_values(0, n);
    for r in 1..size {
        for (a, v) in fold.iter_mut().zip(order_sensitive_values(r, n)) {
            *a += v;
        }
    }
    let mut blocking = vec![0f32; n];
    world.all_reduce_into(&x[..], &mut blocking[..], SystemOperation::sum());
    let mut immediate = vec![0f32; n];
    mpi::request::scope(|scope| {
        world
            .immediate_all_reduce_into(scope, &x[..], &mut immediate[..], SystemOperation::sum())
            .wait();
    });
    for (name, got) in [("MPI_Allreduce", &blocking), ("MPI_Iallreduce", &immediate)] {
        let differing = got
            .iter()
            .zip(&fold)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        // Rank 0's bits against everyone's: the max and min over ranks of each element's
        // bits agree iff all ranks have the same bits.
        let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        let mut max = vec![0u32; n];
        let mut min = vec![0u32; n];
        world.all_reduce_into(&bits[..], &mut max[..], SystemOperation::max());
        world.all_reduce_into(&bits[..], &mut min[..], SystemOperation::min());
        if rank == 0 {
            println!(
                "{name}: {differing} of {n} f32 sums differ in their bits from the rank-order \
                 fold; ranks {} bitwise",
                if max == min { "agree" } else { "DISAGREE" }
            );
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let max_bytes: usize = std::env::args()
        .skip_while(|a| a != "--max-bytes")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20);
    let universe = mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size() as usize);
    if rank == 0 {
        println!(
            "mpi_allreduce_bench: {size} ranks, f32 sum, preallocated buffers; time = median \
             over iterations of the slowest rank"
        );
        println!(
            "{:>9} {:>5} {:>14} {:>10} {:>14} {:>10} {:>14} {:>10}",
            "size",
            "iters",
            "Allreduce us",
            "busbw",
            "Iallred+Wait",
            "busbw",
            "Iallred+Test",
            "busbw"
        );
    }
    let factor = 2.0 * (size as f64 - 1.0) / size as f64;
    for bytes in (0..8)
        .map(|i| 4096usize << (2 * i))
        .filter(|&b| b <= max_bytes)
    {
        let n = bytes / 4;
        let iters = ((256usize << 20) / bytes).clamp(5, 50);
        let send: Vec<f32> = (0..n).map(|i| ((i + rank as usize) % 251) as f32).collect();
        let mut recv = vec![0f32; n];
        let (send, recv) = (&send[..], &mut recv[..]);
        let mut row = Vec::new();
        for mode in [Mode::Blocking, Mode::ImmediateWait, Mode::ImmediatePoll] {
            let mut times = Vec::new();
            for it in 0..iters + 2 {
                world.barrier();
                let start = Instant::now();
                match mode {
                    Mode::Blocking => {
                        world.all_reduce_into(send, &mut *recv, SystemOperation::sum())
                    }
                    Mode::ImmediateWait => mpi::request::scope(|scope| {
                        world
                            .immediate_all_reduce_into(
                                scope,
                                send,
                                &mut *recv,
                                SystemOperation::sum(),
                            )
                            .wait();
                    }),
                    Mode::ImmediatePoll => mpi::request::scope(|scope| {
                        let mut request = world.immediate_all_reduce_into(
                            scope,
                            send,
                            &mut *recv,
                            SystemOperation::sum(),
                        );
                        loop {
                            match request.test() {
                                Ok(_) => break,
                                Err(r) => {
                                    request = r;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }),
                }
                let t = start.elapsed().as_secs_f64();
                if it >= 2 {
                    let mut slowest = 0.0;
                    world.all_reduce_into(&t, &mut slowest, SystemOperation::max());
                    times.push(slowest);
                }
            }
            let t = median(&mut times);
            row.push((t * 1e6, bytes as f64 / t / 1e9 * factor));
        }
        if rank == 0 {
            let size = if bytes >= 1 << 20 {
                format!("{} MiB", bytes >> 20)
            } else {
                format!("{} KiB", bytes >> 10)
            };
            print!("{size:>9} {iters:>5}");
            for (us, busbw) in row {
                print!(" {us:>14.1} {busbw:>10.2}");
            }
            println!();
        }
    }
    compare_with_rank_order(&world, 1 << 20);
}
