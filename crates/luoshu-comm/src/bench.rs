//! Bandwidth of collectives, reported like nccl-tests, next to a memcpy baseline.
//!
//! Conventions (those of nccl-tests, `doc/PERFORMANCE.md`), for `n` ranks and message size
//! `S` bytes:
//!
//! - all-reduce: `S` is the buffer every rank contributes and receives;
//! - all-gather: `S` is the gathered output every rank receives (each contributes `S / n`);
//! - reduce-scatter: `S` is the input every rank contributes (each receives `S / n`).
//!
//! `t` is the time of one operation; the algorithm bandwidth is `algbw = S / t` and the bus
//! bandwidth `busbw = algbw × factor`, with factor `2(n-1)/n` for all-reduce and `(n-1)/n`
//! for all-gather and reduce-scatter. The bus bandwidth is what each rank's link has to
//! carry in an optimal (ring) algorithm, so it can be compared across collectives and rank
//! counts, and with the hardware's bandwidth. Gigabytes are 10^9 bytes.

use crate::{Communicator, Error, ReduceOp, Result};
use luoshu_tensor::Tensor;
use std::fmt;
use std::hint::black_box;
use std::time::Instant;

/// Size of an `f32`, the element type every measurement moves.
const ELEMENT_BYTES: usize = std::mem::size_of::<f32>();

/// A collective whose bandwidth [`measure`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collective {
    /// `all_reduce` (sum) into a fresh output.
    AllReduce,
    /// `all_reduce_in_place`: the same reduction with no fresh output.
    AllReduceInPlace,
    /// `all_gather` of equal pieces.
    AllGather,
    /// `reduce_scatter` (sum) into equal pieces.
    ReduceScatter,
}

impl Collective {
    /// Every collective, in the order benchmarks report them.
    pub const ALL: [Collective; 4] = [
        Collective::AllReduce,
        Collective::AllReduceInPlace,
        Collective::AllGather,
        Collective::ReduceScatter,
    ];

    /// The operation's name in the [`Communicator`] API.
    pub fn name(self) -> &'static str {
        match self {
            Collective::AllReduce => "all_reduce",
            Collective::AllReduceInPlace => "all_reduce_in_place",
            Collective::AllGather => "all_gather",
            Collective::ReduceScatter => "reduce_scatter",
        }
    }

    /// nccl-tests' bus-bandwidth factor on `ranks` ranks: `busbw = algbw × factor`
    /// (0 for a single rank, which moves nothing).
    pub fn bus_factor(self, ranks: usize) -> f64 {
        if ranks == 0 {
            return 0.0;
        }
        let n = ranks as f64;
        match self {
            Collective::AllReduce | Collective::AllReduceInPlace => 2.0 * (n - 1.0) / n,
            Collective::AllGather | Collective::ReduceScatter => (n - 1.0) / n,
        }
    }
}

impl fmt::Display for Collective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One collective timed at one message size (see the module docs for the conventions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The collective timed.
    pub collective: Collective,
    /// Message size `S` in bytes, as actually moved (see [`measure`] for the rounding).
    pub bytes: usize,
    /// Number of ranks.
    pub ranks: usize,
    /// Median over the timed iterations of the slowest rank's time for one operation.
    pub seconds: f64,
    /// `bytes / seconds`, in GB/s.
    pub algbw_gbs: f64,
    /// `algbw_gbs × collective.bus_factor(ranks)`, in GB/s.
    pub busbw_gbs: f64,
}

/// Times `collective` on `f32` messages of about `bytes` bytes; collective: every rank of
/// `comm` calls it with the same arguments and gets the same [`Measurement`].
///
/// `bytes` is rounded down to whole `f32`s and, for all-gather and reduce-scatter, to a
/// multiple of `ranks` elements (as nccl-tests does); [`Measurement::bytes`] is the rounded
/// size. Runs `warmup` untimed operations, then `iters` timed ones, each started right after
/// a barrier; an iteration's time is the slowest rank's (an all-reduce `Max` over the ranks'
/// times, taken once at the end so it does not disturb the timing), and the result is the
/// median over iterations. Output allocation is part of the timed operation, as it is of
/// every call through [`Communicator`] except `all_reduce_in_place`.
///
/// Fails with [`Error::InvalidArgument`] if `iters` is 0 or the rounded size is 0, and with
/// any error of the collectives themselves.
pub fn measure(
    comm: &dyn Communicator,
    collective: Collective,
    bytes: usize,
    warmup: usize,
    iters: usize,
) -> Result<Measurement> {
    let ranks = comm.size();
    let invalid = |message: String| Error::InvalidArgument {
        op: format!("bench::measure({collective})"),
        rank: comm.rank(),
        message,
    };
    if iters == 0 {
        return Err(invalid(
            "needs at least one timed iteration (iters = 0)".into(),
        ));
    }
    let elements_per_part = match collective {
        Collective::AllReduce | Collective::AllReduceInPlace => bytes / ELEMENT_BYTES,
        Collective::AllGather | Collective::ReduceScatter => bytes / ELEMENT_BYTES / ranks,
    };
    if elements_per_part == 0 {
        return Err(invalid(format!(
            "{bytes} bytes is less than one f32 per part on {ranks} ranks"
        )));
    }
    let run_once = collective_runner(comm, collective, elements_per_part)?;
    for _ in 0..warmup {
        run_once()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        comm.barrier()?;
        let start = Instant::now();
        run_once()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let local_times = Tensor::from_vec(times, [iters])?;
    let mut slowest = comm
        .all_reduce(&local_times, ReduceOp::Max)?
        .to_vec::<f64>()?;
    let seconds = median(&mut slowest);
    let moved_bytes = match collective {
        Collective::AllReduce | Collective::AllReduceInPlace => elements_per_part * ELEMENT_BYTES,
        Collective::AllGather | Collective::ReduceScatter => {
            elements_per_part * ranks * ELEMENT_BYTES
        }
    };
    let algbw_gbs = moved_bytes as f64 / seconds / 1e9;
    Ok(Measurement {
        collective,
        bytes: moved_bytes,
        ranks,
        seconds,
        algbw_gbs,
        busbw_gbs: algbw_gbs * collective.bus_factor(ranks),
    })
}

/// One call of `collective` on inputs built once here, `elements_per_part` `f32`s per
/// contribution (per rank for all-reduce, per destination rank otherwise).
fn collective_runner<'a>(
    comm: &'a dyn Communicator,
    collective: Collective,
    elements_per_part: usize,
) -> Result<Box<dyn Fn() -> Result<()> + 'a>> {
    // Small integers: exact sums, no denormals or infinities to slow the reduction.
    let part = || -> Result<Tensor> {
        Ok(Tensor::from_vec(
            ramp(elements_per_part, comm.rank()),
            [elements_per_part],
        )?)
    };
    Ok(match collective {
        Collective::AllReduce => {
            let x = part()?;
            Box::new(move || comm.all_reduce(&x, ReduceOp::Sum).map(drop))
        }
        Collective::AllReduceInPlace => {
            // Each call multiplies the sums by the rank count; the default iteration
            // counts stay far below f32's range, and infinities would not slow the loop.
            let x = part()?;
            Box::new(move || comm.all_reduce_in_place(&x, ReduceOp::Sum))
        }
        Collective::AllGather => {
            let x = part()?;
            Box::new(move || comm.all_gather(&x).map(drop))
        }
        Collective::ReduceScatter => {
            // Parts are views of one buffer, as when a caller cuts a tensor along its first
            // dimension (backends may then send them without packing).
            let size = comm.size();
            let whole = Tensor::from_vec(
                ramp(elements_per_part * size, comm.rank()),
                [elements_per_part * size],
            )?;
            let parts = (0..size)
                .map(|i| Ok(whole.narrow(0, i * elements_per_part, elements_per_part)?))
                .collect::<Result<Vec<_>>>()?;
            Box::new(move || comm.reduce_scatter(&parts, ReduceOp::Sum).map(drop))
        }
    })
}

fn ramp(len: usize, rank: usize) -> Vec<f32> {
    (0..len).map(|i| ((i + rank) % 251) as f32).collect()
}

/// Bandwidth in GB/s of copying `bytes` bytes with `copy_from_slice` on this thread (bytes
/// copied per second; each is read once and written once): the median over `iters` samples
/// (at least one). Below 1 MiB a sample repeats the copy until it has moved 1 MiB, so the
/// timer's resolution does not dominate; such buffers stay in cache, as a collective's
/// small messages do. Returns 0 for `bytes == 0`.
///
/// The destination starts 256 bytes past a page multiple from the source: on some CPUs
/// (seen on AMD Zen 4 with glibc 2.36) `rep movsb` copies 30× slower when the destination is
/// a few bytes past a page multiple from the source, which is exactly where malloc puts
/// two equal blocks allocated one after the other; this baseline measures the copy without
/// that cliff.
pub fn memcpy_bandwidth(bytes: usize, iters: usize) -> f64 {
    const MIN_SAMPLE_BYTES: usize = 1 << 20;
    const PAGE: usize = 4096;
    if bytes == 0 {
        return 0.0;
    }
    let gap = bytes.next_multiple_of(PAGE) + 256;
    let mut buffer: Vec<u8> = (0..gap + bytes).map(|i| i as u8).collect();
    let (source, destination) = buffer.split_at_mut(gap);
    let source = &source[..bytes];
    let copies_per_sample = MIN_SAMPLE_BYTES.div_ceil(bytes);
    let mut samples: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..copies_per_sample {
                black_box(&mut *destination).copy_from_slice(black_box(source));
            }
            start.elapsed().as_secs_f64()
        })
        .collect();
    let seconds = median(&mut samples);
    (bytes * copies_per_sample) as f64 / seconds / 1e9
}

/// Bandwidth in GB/s of allocating a fresh zeroed buffer of `bytes` bytes (a
/// `luoshu_tensor::Storage`, as every collective's output is) and freeing it: bytes per
/// second, median over `iters` samples (at least one), repeated up to 1 MiB per sample as in
/// [`memcpy_bandwidth`]. Large buffers come fresh from the kernel, so this is mostly the cost
/// of a page fault per 4 KiB page; it bounds every collective, whose outputs are fresh.
/// Returns 0 for `bytes == 0`.
pub fn fresh_buffer_bandwidth(bytes: usize, iters: usize) -> f64 {
    const MIN_SAMPLE_BYTES: usize = 1 << 20;
    if bytes == 0 {
        return 0.0;
    }
    let allocations_per_sample = MIN_SAMPLE_BYTES.div_ceil(bytes);
    let mut samples: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..allocations_per_sample {
                drop(black_box(luoshu_tensor::Storage::zeroed(bytes)));
            }
            start.elapsed().as_secs_f64()
        })
        .collect();
    let seconds = median(&mut samples);
    (bytes * allocations_per_sample) as f64 / seconds / 1e9
}

/// Message sizes of a sweep: 4 KiB to 64 MiB, powers of 4.
pub fn default_sizes() -> Vec<usize> {
    (0..8).map(|i| 4096 << (2 * i)).collect()
}

/// Median of non-empty `values` (mean of the two middle ones for an even count); sorts them.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
