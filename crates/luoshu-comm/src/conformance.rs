//! A backend-neutral conformance suite for [`Communicator`]s: every rank of a group calls the
//! same check with its own communicator, and each check returns the first wrong result as a
//! [`ConformanceError`] that says which operation, on which rank, and what differed.
//!
//! Expected values are computed serially here from the same rank-dependent inputs, exactly
//! (inputs are chosen so every reduction is exact in every dtype, whatever the order).
//! Nothing here depends on a backend: the threads tests and the `mpirun` tests run the same
//! checks.

use crate::{Communicator, Error, ReduceOp};
use luoshu_tensor::{DType, Tensor};
use std::fmt::Debug;
use std::sync::Arc;

/// Why a conformance check failed.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// An operation returned an error the check did not expect.
    #[error(transparent)]
    Comm(#[from] Error),
    /// An operation returned a wrong result (or the wrong error).
    #[error("{check} on rank {rank} of {size}: {detail}")]
    Wrong {
        /// The check (operation and case).
        check: String,
        /// The rank that saw the wrong result.
        rank: usize,
        /// Ranks in the group.
        size: usize,
        /// What was expected and what came back.
        detail: String,
    },
}

impl From<luoshu_tensor::Error> for ConformanceError {
    fn from(err: luoshu_tensor::Error) -> Self {
        ConformanceError::Comm(Error::Tensor(err))
    }
}

/// Result of a conformance check.
pub type Result<T> = std::result::Result<T, ConformanceError>;

/// Every collective and point-to-point operation with rank-dependent data, checked exactly:
/// all_reduce (Sum, Max; f64, f32, bf16, f16, i64, i32; empty tensors), uneven all_gather,
/// reduce_scatter and all_to_all, broadcast from every root, a send/recv ring with message
/// order, batched_send_recv pairwise and all-to-all, split into even/odd groups ordered by
/// key, barrier, strided (transposed) inputs, and that every result owns its storage; then
/// sizes at the edges of the chunking backends use (fewer elements than ranks, one more
/// than a multiple, several reduction blocks), reduce-scatter parts that are views of one
/// buffer, repeated splits, `all_reduce_in_place` on a view inside a larger buffer (same
/// values as `all_reduce`, the rest of the buffer untouched), and that float sums have the bits of a left-to-right fold in
/// rank order, `((x0 + x1) + x2) + …`, on every rank.
pub fn check_collectives(comm: &dyn Communicator) -> Result<()> {
    check_all_reduce(comm)?;
    check_chunk_edges(comm)?;
    check_rank_order_bits(comm)?;
    check_in_place_all_reduce(comm)?;
    check_parts_of_one_buffer(comm)?;
    check_repeated_splits(comm)?;
    check_all_gather(comm)?;
    check_reduce_scatter(comm)?;
    check_all_to_all(comm)?;
    check_broadcast(comm)?;
    check_send_recv(comm)?;
    check_batched_send_recv(comm)?;
    check_split(comm)?;
    check_strided_inputs(comm)?;
    for _ in 0..3 {
        comm.barrier()?;
    }
    Ok(())
}

/// Arguments that do not fit the group give [`Error::InvalidArgument`] on every rank, and
/// the group stays usable afterwards: shapes and dtypes that differ across ranks, a wrong
/// number of parts on one rank, a root out of range, a dtype reductions do not support, a
/// strided tensor to `all_reduce_in_place`.
pub fn check_argument_errors(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    if size > 1 {
        let x = Tensor::zeros(DType::F32, [rank + 1])?;
        expect_invalid(
            comm,
            "all_reduce of different shapes",
            comm.all_reduce(&x, ReduceOp::Sum),
        )?;

        let dtype = if rank == 0 { DType::F32 } else { DType::I32 };
        let x = Tensor::zeros(dtype, [2])?;
        expect_invalid(comm, "all_gather of different dtypes", comm.all_gather(&x))?;

        let count = if rank == 0 { size + 1 } else { size };
        let parts = vec![Tensor::zeros(DType::F32, [2])?; count];
        let result = comm.reduce_scatter(&parts, ReduceOp::Sum);
        expect_invalid(
            comm,
            "reduce_scatter with a wrong part count on rank 0",
            result,
        )?;
    }
    let x = Tensor::zeros(DType::F32, [2, 3])?.transpose(0, 1)?;
    expect_invalid(
        comm,
        "all_reduce_in_place of a transposed view",
        comm.all_reduce_in_place(&x, ReduceOp::Sum),
    )?;

    let x = Tensor::zeros(DType::F32, [2])?;
    expect_invalid(
        comm,
        "broadcast from a root out of range",
        comm.broadcast(&x, size),
    )?;

    let x = Tensor::zeros(DType::U8, [2])?;
    match comm.all_reduce(&x, ReduceOp::Max) {
        Err(Error::InvalidArgument {
            rank: r, message, ..
        }) if r == rank && message.contains("u8") => {}
        other => {
            let detail = format!("expected InvalidArgument naming u8, got {other:?}");
            return Err(wrong(comm, "all_reduce of u8", detail));
        }
    }

    comm.barrier()?;
    let sum = comm.all_reduce(&Tensor::from_slice(&[1i64], [1])?, ReduceOp::Sum)?;
    expect_values(
        comm,
        "all_reduce after argument errors",
        &sum,
        &[size as i64],
    )
}

/// Rank 0 skips an all_reduce on a fresh sub-group; every other rank must get
/// [`Error::Timeout`] naming `all_reduce`, rank 0 as the only missing rank, and the
/// communicator's timeout. Takes about one timeout (use a short one). The sub-group is left
/// broken and dropped; `comm` itself stays usable. Passes trivially on one rank.
pub fn check_timeouts(comm: &dyn Communicator) -> Result<()> {
    const CHECK: &str = "all_reduce with rank 0 absent";
    const REPORT_TAG: u64 = 0x7157;
    let (rank, size) = (comm.rank(), comm.size());
    if size < 2 {
        return Ok(());
    }
    let sub = comm.split(0, rank)?;
    if rank == 0 {
        // Keep `sub` alive until every peer has timed out: dropping it earlier would make a
        // backend report rank 0 as departed instead.
        let mut failed = Vec::new();
        for peer in 1..size {
            let report = recv_retrying(comm, peer, REPORT_TAG)?;
            if report.to_vec::<u8>()? != [1] {
                failed.push(peer);
            }
        }
        drop(sub);
        comm.barrier()?;
        return ensure(comm, CHECK, failed.is_empty(), || {
            format!("ranks {failed:?} did not get the expected timeout")
        });
    }
    let x = Tensor::from_slice(&[rank as f32], [1])?;
    let verdict = match sub.all_reduce(&x, ReduceOp::Sum) {
        Err(Error::Timeout {
            op,
            rank: r,
            size: s,
            missing,
            timeout,
        }) if op.contains("all_reduce")
            && r == sub.rank()
            && s == size
            && missing == [0]
            && timeout == comm.timeout() =>
        {
            Ok(())
        }
        other => Err(wrong(
            comm,
            CHECK,
            format!("expected a timeout naming all_reduce and missing rank [0], got {other:?}"),
        )),
    };
    let ok = u8::from(verdict.is_ok());
    comm.send(&Tensor::from_slice(&[ok], [1])?, 0, REPORT_TAG)?;
    drop(sub);
    comm.barrier()?;
    verdict
}

/// `recv`, retried a few times on timeout: the sender only sends after its own timeout.
fn recv_retrying(comm: &dyn Communicator, src: usize, tag: u64) -> Result<Tensor> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match comm.recv(src, tag) {
            Err(Error::Timeout { .. }) if attempts < 4 => continue,
            other => return Ok(other?),
        }
    }
}

fn check_all_reduce(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let dims = [3, 5];
    let n = 15;
    for dtype in [
        DType::F64,
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::I64,
        DType::I32,
    ] {
        let x = Tensor::from_f64(&reduce_input(rank, n), dtype, dims)?;
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let check = format!("all_reduce({op:?}) of {dtype}");
            let got = comm.all_reduce(&x, op)?;
            let expected = serial_reduce(size, n, dtype, op)?;
            expect_tensor(comm, &check, &got, dtype, &dims, &expected)?;
            expect_owned(comm, &check, &got)?;
        }
    }
    let empty = Tensor::zeros(DType::F32, [0, 4])?;
    let got = comm.all_reduce(&empty, ReduceOp::Sum)?;
    expect_tensor(
        comm,
        "all_reduce of an empty tensor",
        &got,
        DType::F32,
        &[0, 4],
        &[],
    )
}

/// Rank `rank`'s all_reduce input: small multiples of 1/2 (exact in every dtype, sums
/// exact in f32), different on every rank.
fn reduce_input(rank: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7 + rank * 3) % 5) as f64 - 2.0 + (rank % 2) as f64 * 0.5)
        .collect()
}

/// The exact reduction of every rank's input as rounded to `dtype`.
fn serial_reduce(size: usize, n: usize, dtype: DType, op: ReduceOp) -> Result<Vec<f64>> {
    let inputs = (0..size)
        .map(|r| Ok(Tensor::from_f64(&reduce_input(r, n), dtype, [n])?.to_f64_vec()))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..n)
        .map(|i| {
            let column = inputs.iter().map(|x| x[i]);
            match op {
                ReduceOp::Sum => column.sum(),
                ReduceOp::Max => column.fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect())
}

/// Element counts around the chunk boundaries: 0, 1, fewer than the ranks, one more than
/// a multiple of them, and more than one reduction block (2048 elements) per rank.
fn chunk_edge_sizes(size: usize) -> Vec<usize> {
    let mut sizes = vec![1, 2, size.saturating_sub(1), size, size + 1, 3 * size + 2];
    sizes.extend([2048 * size + 1, 4099]);
    sizes.retain(|&n| n > 0);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn check_chunk_edges(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    for n in chunk_edge_sizes(size) {
        for dtype in [DType::F32, DType::BF16, DType::I64] {
            let x = Tensor::from_f64(&reduce_input(rank, n), dtype, [n])?;
            for op in [ReduceOp::Sum, ReduceOp::Max] {
                let check = format!("all_reduce({op:?}) of {n} {dtype} elements");
                let got = comm.all_reduce(&x, op)?;
                let expected = serial_reduce(size, n, dtype, op)?;
                expect_tensor(comm, &check, &got, dtype, &[n], &expected)?;
                expect_owned(comm, &check, &got)?;
            }
        }
        // Reduce-scatter with parts of n, n + 1, … elements, and all-gather of n + rank.
        let part_len = |i: usize| n + i;
        let parts = (0..size)
            .map(|i| {
                Tensor::from_f64(
                    &reduce_input(rank + i, part_len(i)),
                    DType::F32,
                    [part_len(i)],
                )
            })
            .collect::<luoshu_tensor::Result<Vec<_>>>()?;
        let got = comm.reduce_scatter(&parts, ReduceOp::Sum)?;
        let expected: Vec<f64> = (0..part_len(rank))
            .map(|k| {
                (0..size)
                    .map(|r| reduce_input(r + rank, part_len(rank))[k])
                    .sum()
            })
            .collect();
        let check = format!("reduce_scatter of parts of {n}+ elements");
        expect_tensor(comm, &check, &got, DType::F32, &[part_len(rank)], &expected)?;
        let x = Tensor::from_f64(&reduce_input(rank, n + rank), DType::F16, [n + rank])?;
        let gathered = comm.all_gather(&x)?;
        expect_count(comm, "all_gather of chunk-edge sizes", gathered.len(), size)?;
        for (peer, t) in gathered.iter().enumerate() {
            let check = format!("all_gather of {} f16 elements from rank {peer}", n + peer);
            let expected = reduce_input(peer, n + peer);
            expect_tensor(comm, &check, t, DType::F16, &[n + peer], &expected)?;
            expect_owned(comm, &check, t)?;
        }
    }
    Ok(())
}

/// Pseudo-random f32 values of rank `rank` with magnitudes from 1e-4 to 1e4, so sums
/// depend on the order in which they are added.
pub fn order_sensitive_values(rank: usize, n: usize) -> Vec<f32> {
    let mut state = (rank as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mantissa = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            mantissa * 10f32.powi(((state >> 20) % 9) as i32 - 4)
        })
        .collect()
}

fn check_rank_order_bits(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let n = 2048 * size + 3;
    let x = Tensor::from_vec(order_sensitive_values(rank, n), [n])?;
    let got = comm.all_reduce(&x, ReduceOp::Sum)?.to_vec::<f32>()?;
    let mut fold = order_sensitive_values(0, n);
    for r in 1..size {
        for (acc, v) in fold.iter_mut().zip(order_sensitive_values(r, n)) {
            *acc += v;
        }
    }
    let differing = differing_bits(&got, &fold);
    ensure(
        comm,
        "all_reduce(Sum) of f32 in rank order",
        differing == 0,
        || format!("{differing} of {n} elements differ in their bits from the rank-order fold"),
    )
}

/// `all_reduce_in_place` on a contiguous view with elements before and after it: the view
/// holds the reduction (the bits of `all_reduce`, order-sensitive f32 included), the
/// elements around it keep their values.
fn check_in_place_all_reduce(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let (before, after) = (3, 2);
    for n in chunk_edge_sizes(size) {
        for dtype in [DType::F32, DType::BF16, DType::I64] {
            for op in [ReduceOp::Sum, ReduceOp::Max] {
                let check = format!("all_reduce_in_place({op:?}) of {n} {dtype} elements");
                let mut values = vec![7.0; before];
                values.extend(reduce_input(rank, n));
                values.extend([7.0; 2]);
                let buffer = Tensor::from_f64(&values, dtype, [before + n + after])?;
                let view = buffer.narrow(0, before, n)?;
                comm.all_reduce_in_place(&view, op)?;
                let mut expected = vec![7.0; before];
                expected.extend(serial_reduce(size, n, dtype, op)?);
                expected.extend([7.0; 2]);
                expect_tensor(
                    comm,
                    &check,
                    &buffer,
                    dtype,
                    &[before + n + after],
                    &expected,
                )?;
            }
        }
    }
    let n = 2048 * size + 3;
    let values = order_sensitive_values(rank, n);
    let fresh = comm
        .all_reduce(&Tensor::from_slice(&values, [n])?, ReduceOp::Sum)?
        .to_vec::<f32>()?;
    let x = Tensor::from_vec(values, [n])?;
    comm.all_reduce_in_place(&x, ReduceOp::Sum)?;
    let in_place = x.to_vec::<f32>()?;
    let differing = differing_bits(&fresh, &in_place);
    ensure(
        comm,
        "all_reduce_in_place(Sum) of order-sensitive f32",
        differing == 0,
        || format!("{differing} of {n} elements differ in their bits from all_reduce"),
    )
}

/// How many elements of `a` and `b` differ in their bits.
fn differing_bits(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn check_parts_of_one_buffer(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    // Parts as `narrow` views of one tensor (back to back in one storage), some empty.
    let lens: Vec<usize> = (0..size).map(|i| (i * 5) % 7).collect();
    let total: usize = lens.iter().sum();
    let values = |r: usize| -> Vec<f64> { (0..total).map(|k| (r * 1000 + k) as f64).collect() };
    let whole = Tensor::from_f64(&values(rank), DType::F32, [total])?;
    let mut start = 0;
    let mut parts = Vec::new();
    for &len in &lens {
        parts.push(whole.narrow(0, start, len)?);
        start += len;
    }
    let got = comm.reduce_scatter(&parts, ReduceOp::Sum)?;
    let mine = lens[..rank].iter().sum::<usize>()..lens[..=rank].iter().sum::<usize>();
    let expected: Vec<f64> = mine
        .map(|k| (0..size).map(|r| values(r)[k]).sum())
        .collect();
    let check = "reduce_scatter of narrow views of one tensor";
    expect_tensor(comm, check, &got, DType::F32, &[lens[rank]], &expected)?;
    expect_owned(comm, check, &got)
}

fn check_repeated_splits(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    // The same split three times, another in between: each must be the right group (a
    // backend may hand back the communicator it made the first time).
    for (round, color) in [rank % 2, rank % 2, rank / 2, rank % 2]
        .into_iter()
        .enumerate()
    {
        let sub = comm.split(color, rank)?;
        let members: Vec<usize> = (0..size)
            .filter(|&r| {
                if round == 2 {
                    r / 2 == color
                } else {
                    r % 2 == color
                }
            })
            .collect();
        let sum = sub.all_reduce(&Tensor::from_slice(&[rank as i64], [1])?, ReduceOp::Sum)?;
        let expected: i64 = members.iter().map(|&r| r as i64).sum();
        let check = format!("all_reduce in split #{round} (color {color})");
        expect_values(comm, &check, &sum, &[expected])?;
        ensure(comm, &check, sub.size() == members.len(), || {
            format!("sub-group size {} (expected {})", sub.size(), members.len())
        })?;
    }
    Ok(())
}

fn check_all_gather(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let x = Tensor::from_f64(&gather_rows(rank), DType::F32, [rank + 1, 3])?;
    let got = comm.all_gather(&x)?;
    expect_count(comm, "all_gather (uneven)", got.len(), size)?;
    for (peer, t) in got.iter().enumerate() {
        let check = format!("all_gather (uneven) part from rank {peer}");
        expect_tensor(
            comm,
            &check,
            t,
            DType::F32,
            &[peer + 1, 3],
            &gather_rows(peer),
        )?;
        expect_owned(comm, &check, t)?;
    }
    Ok(())
}

/// Rank `rank`'s all_gather input: `rank + 1` rows of 3.
fn gather_rows(rank: usize) -> Vec<f64> {
    (0..(rank + 1) * 3)
        .map(|k| (rank * 100 + k) as f64)
        .collect()
}

fn check_reduce_scatter(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let part = |r: usize, i: usize| -> Vec<f64> {
        (0..(i + 1) * 2)
            .map(|k| ((r + 1) * (k + 1)) as f64 + (i * 10) as f64 - (r % 3) as f64 * 7.5)
            .collect()
    };
    let parts = (0..size)
        .map(|i| Tensor::from_f64(&part(rank, i), DType::F32, [i + 1, 2]))
        .collect::<luoshu_tensor::Result<Vec<_>>>()?;
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        let check = format!("reduce_scatter({op:?}) (uneven)");
        let got = comm.reduce_scatter(&parts, op)?;
        let expected: Vec<f64> = (0..(rank + 1) * 2)
            .map(|k| {
                let column = (0..size).map(|r| part(r, rank)[k]);
                match op {
                    ReduceOp::Sum => column.sum(),
                    ReduceOp::Max => column.fold(f64::NEG_INFINITY, f64::max),
                }
            })
            .collect();
        expect_tensor(comm, &check, &got, DType::F32, &[rank + 1, 2], &expected)?;
        expect_owned(comm, &check, &got)?;
    }
    Ok(())
}

fn check_all_to_all(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    // What `from` sends to `to`: shape [from + 1, to + 1].
    let message = |from: usize, to: usize| -> Vec<i64> {
        (0..(from + 1) * (to + 1))
            .map(|k| (from * 1000 + to * 100 + k) as i64)
            .collect()
    };
    let parts = (0..size)
        .map(|to| Tensor::from_vec(message(rank, to), [rank + 1, to + 1]))
        .collect::<luoshu_tensor::Result<Vec<_>>>()?;
    let got = comm.all_to_all(&parts)?;
    expect_count(comm, "all_to_all (uneven)", got.len(), size)?;
    for (from, t) in got.iter().enumerate() {
        let check = format!("all_to_all (uneven) part from rank {from}");
        expect_shape(comm, &check, t, DType::I64, &[from + 1, rank + 1])?;
        expect_values(comm, &check, t, &message(from, rank))?;
        expect_owned(comm, &check, t)?;
    }
    Ok(())
}

fn check_broadcast(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    for root in 0..size {
        let values: Vec<f64> = (0..4).map(|k| (root * 10 + k) as f64 + 0.25).collect();
        let x = if rank == root {
            Tensor::from_f64(&values, DType::BF16, [2, 2])?
        } else {
            Tensor::zeros(DType::F32, [0])?
        };
        let check = format!("broadcast from root {root}");
        let got = comm.broadcast(&x, root)?;
        expect_tensor(comm, &check, &got, DType::BF16, &[2, 2], &values)?;
        expect_owned(comm, &check, &got)?;
    }
    Ok(())
}

fn check_send_recv(comm: &dyn Communicator) -> Result<()> {
    const TAG: u64 = 11;
    let (rank, size) = (comm.rank(), comm.size());
    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;
    // Two messages with one tag: they must arrive in the order sent.
    for order in 0..2i32 {
        comm.send(&Tensor::from_slice(&[rank as i32, order], [2])?, next, TAG)?;
    }
    for order in 0..2i32 {
        let check = format!("recv #{order} of the ring from rank {prev}");
        let got = comm.recv(prev, TAG)?;
        expect_shape(comm, &check, &got, DType::I32, &[2])?;
        expect_values(comm, &check, &got, &[prev as i32, order])?;
        expect_owned(comm, &check, &got)?;
    }
    comm.barrier()?;
    Ok(())
}

fn check_batched_send_recv(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    // Pairs (0, 1), (2, 3), …; an odd rank out exchanges with itself.
    let partner = if rank ^ 1 < size { rank ^ 1 } else { rank };
    let x = Tensor::from_slice(&[rank as i64, 7], [1, 2])?;
    let got = comm.batched_send_recv(&[(partner, x)], &[partner], 21)?;
    expect_count(comm, "batched_send_recv pairwise", got.len(), 1)?;
    expect_shape(
        comm,
        "batched_send_recv pairwise",
        &got[0],
        DType::I64,
        &[1, 2],
    )?;
    expect_values(
        comm,
        "batched_send_recv pairwise",
        &got[0],
        &[partner as i64, 7],
    )?;

    // Everyone to everyone at once: only posting every send before receiving avoids a
    // deadlock here.
    let sends = (0..size)
        .map(|to| Ok((to, Tensor::from_slice(&[(rank * 10 + to) as f32], [1])?)))
        .collect::<Result<Vec<_>>>()?;
    let from: Vec<usize> = (0..size).rev().collect();
    let got = comm.batched_send_recv(&sends, &from, 22)?;
    expect_count(comm, "batched_send_recv all pairs", got.len(), size)?;
    for (t, &src) in got.iter().zip(&from) {
        let check = format!("batched_send_recv all pairs: message from rank {src}");
        expect_values(comm, &check, t, &[(src * 10 + rank) as f32])?;
        expect_owned(comm, &check, t)?;
    }
    comm.barrier()?;
    Ok(())
}

fn check_split(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    // Keys reverse the order: the new rank 0 is the highest old rank of each parity.
    let sub = comm.split(rank % 2, size - rank)?;
    let mut members: Vec<usize> = (0..size).filter(|r| r % 2 == rank % 2).collect();
    members.reverse();
    let check = "split into even/odd ranks ordered by key";
    let new_rank = members.iter().position(|&r| r == rank);
    ensure(comm, check, sub.size() == members.len(), || {
        format!("sub-group size {} (expected {})", sub.size(), members.len())
    })?;
    ensure(comm, check, Some(sub.rank()) == new_rank, || {
        format!("sub-group rank {} (expected {new_rank:?})", sub.rank())
    })?;
    let old_rank = Tensor::from_slice(&[rank as i64], [1])?;
    let sum = sub.all_reduce(&old_rank, ReduceOp::Sum)?;
    let expected: i64 = members.iter().map(|&r| r as i64).sum();
    expect_values(comm, "all_reduce in a split group", &sum, &[expected])?;
    let gathered = sub.all_gather(&old_rank)?;
    let order = gathered
        .iter()
        .map(|t| Ok(t.to_vec::<i64>()?.first().copied().unwrap_or(-1)))
        .collect::<Result<Vec<i64>>>()?;
    let expected: Vec<i64> = members.iter().map(|&r| r as i64).collect();
    ensure(
        comm,
        "all_gather in a split group",
        order == expected,
        || format!("gathered old ranks {order:?}, expected {expected:?}"),
    )?;
    sub.barrier()?;
    drop(sub);

    // One color for everyone, ordered by old rank: the same group again.
    let whole = comm.split(0, rank)?;
    ensure(
        comm,
        "split with one color",
        (whole.rank(), whole.size()) == (rank, size),
        || format!("got rank {} of {}", whole.rank(), whole.size()),
    )?;
    whole.barrier()?;
    Ok(())
}

fn check_strided_inputs(comm: &dyn Communicator) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let base = |r: usize| -> Vec<f64> { (0..12).map(|k| (r * 12 + k) as f64).collect() };
    // The transpose of a [3, 4] row-major block, in logical order.
    let transposed = |r: usize| -> Vec<f64> {
        let b = base(r);
        (0..4)
            .flat_map(|j| (0..3).map(move |i| (i, j)))
            .map(|(i, j)| b[i * 4 + j])
            .collect()
    };
    let view = Tensor::from_f64(&base(rank), DType::F32, [3, 4])?.transpose(0, 1)?;

    let sum = comm.all_reduce(&view, ReduceOp::Sum)?;
    let expected: Vec<f64> = (0..12)
        .map(|k| (0..size).map(|r| transposed(r)[k]).sum())
        .collect();
    expect_tensor(
        comm,
        "all_reduce of a transposed view",
        &sum,
        DType::F32,
        &[4, 3],
        &expected,
    )?;

    let gathered = comm.all_gather(&view)?;
    for (peer, t) in gathered.iter().enumerate() {
        let check = format!("all_gather of a transposed view from rank {peer}");
        expect_tensor(comm, &check, t, DType::F32, &[4, 3], &transposed(peer))?;
    }

    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;
    comm.send(&view, next, 31)?;
    let got = comm.recv(prev, 31)?;
    expect_tensor(
        comm,
        "send of a transposed view",
        &got,
        DType::F32,
        &[4, 3],
        &transposed(prev),
    )?;
    comm.barrier()?;
    Ok(())
}

fn wrong(comm: &dyn Communicator, check: &str, detail: String) -> ConformanceError {
    ConformanceError::Wrong {
        check: check.to_string(),
        rank: comm.rank(),
        size: comm.size(),
        detail,
    }
}

fn ensure(
    comm: &dyn Communicator,
    check: &str,
    ok: bool,
    detail: impl FnOnce() -> String,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(wrong(comm, check, detail()))
    }
}

fn expect_invalid<T: Debug>(
    comm: &dyn Communicator,
    check: &str,
    result: crate::Result<T>,
) -> Result<()> {
    match result {
        Err(Error::InvalidArgument { rank, .. }) if rank == comm.rank() => Ok(()),
        other => Err(wrong(
            comm,
            check,
            format!("expected InvalidArgument on this rank, got {other:?}"),
        )),
    }
}

fn expect_count(comm: &dyn Communicator, check: &str, got: usize, expected: usize) -> Result<()> {
    ensure(comm, check, got == expected, || {
        format!("{got} tensors returned, expected {expected}")
    })
}

fn expect_shape(
    comm: &dyn Communicator,
    check: &str,
    t: &Tensor,
    dtype: DType,
    dims: &[usize],
) -> Result<()> {
    ensure(comm, check, t.dtype() == dtype && t.dims() == dims, || {
        format!(
            "got {} {:?}, expected {dtype} {dims:?}",
            t.dtype(),
            t.dims()
        )
    })
}

fn expect_values<T: luoshu_tensor::Element>(
    comm: &dyn Communicator,
    check: &str,
    t: &Tensor,
    expected: &[T],
) -> Result<()> {
    let got = t.to_vec::<T>()?;
    ensure(comm, check, got == expected, || {
        format!("got {got:?}, expected {expected:?}")
    })
}

/// Checks dtype, shape and values; `expected` (exact values) is rounded to `dtype` first.
fn expect_tensor(
    comm: &dyn Communicator,
    check: &str,
    t: &Tensor,
    dtype: DType,
    dims: &[usize],
    expected: &[f64],
) -> Result<()> {
    expect_shape(comm, check, t, dtype, dims)?;
    let expected = Tensor::from_f64(expected, dtype, dims)?.to_f64_vec();
    let got = t.to_f64_vec();
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    ensure(comm, check, same, || {
        format!("got {got:?}, expected {expected:?}")
    })
}

/// Results must own their storage so the caller may update them in place.
fn expect_owned(comm: &dyn Communicator, check: &str, t: &Tensor) -> Result<()> {
    let owners = Arc::strong_count(t.storage());
    ensure(comm, check, owners == 1, || {
        format!("the result's storage has {owners} owners; results must own it exclusively")
    })
}
