//! The threads backend: the backend-neutral conformance suite on several group sizes, plus
//! what only an in-process backend can test directly (ranks dying, op mismatches, timeouts
//! with a controlled absent rank, randomized shapes against a serial computation).

use luoshu_comm::conformance::{check_argument_errors, check_collectives, check_timeouts};
use luoshu_comm::{threads, Communicator, Error, ReduceOp};
use luoshu_tensor::{DType, Tensor};
use proptest::prelude::*;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(300);
/// Long enough that a test only sees a timeout if prompt failure detection is broken.
const LONG: Duration = Duration::from_secs(60);

#[test]
fn conformance_on_one_to_five_ranks() {
    for size in 1..=5 {
        let results = threads::run_with_timeout(size, LONG, |comm| {
            check_collectives(comm.as_ref())?;
            check_argument_errors(comm.as_ref())
        });
        for (rank, result) in results.into_iter().enumerate() {
            if let Err(err) = result {
                panic!("{size} ranks, rank {rank}: {err}");
            }
        }
    }
}

#[test]
fn conformance_timeouts() {
    for size in [1, 3] {
        // A longer timeout than SHORT: the suite's closing barrier must not time out while a
        // busy machine delays one rank's report.
        let timeout = Duration::from_secs(1);
        let results =
            threads::run_with_timeout(size, timeout, |comm| check_timeouts(comm.as_ref()));
        for result in results {
            if let Err(err) = result {
                panic!("{size} ranks: {err}");
            }
        }
    }
}

#[test]
fn a_rank_that_never_arrives_is_named_by_the_timeout() {
    let absent_done = Barrier::new(3);
    let results = threads::run_with_timeout(3, SHORT, |comm| {
        // Rank 1 keeps its communicator alive (so it is absent, not departed) until the
        // others have timed out.
        let result = if comm.rank() == 1 {
            None
        } else {
            let x = Tensor::from_slice(&[1.0f32], [1]).unwrap();
            let first = comm.all_reduce(&x, ReduceOp::Sum);
            let after = comm.barrier();
            Some((first, after))
        };
        absent_done.wait();
        result
    });
    for (rank, result) in results.into_iter().enumerate() {
        let Some((first, after)) = result else {
            assert_eq!(rank, 1);
            continue;
        };
        let err = first.unwrap_err();
        let Error::Timeout {
            op,
            rank: r,
            size,
            missing,
            timeout,
        } = &err
        else {
            panic!("rank {rank}: expected a timeout, got {err:?}");
        };
        assert_eq!((op.as_str(), *r, *size), ("all_reduce", rank, 3));
        assert_eq!(missing, &[1]);
        assert_eq!(*timeout, SHORT);
        let message = err.to_string();
        assert!(
            message.contains("all_reduce") && message.contains("[1]"),
            "{message}"
        );
        // A rank that gave up no longer takes part in the group.
        match after {
            Err(Error::PeerFailed { peer, op, .. }) => {
                assert_eq!((peer, op.as_str()), (rank, "barrier"))
            }
            other => panic!("rank {rank}: expected PeerFailed after giving up, got {other:?}"),
        }
    }
}

#[test]
fn recv_times_out_naming_the_source() {
    // Rank 1 stays (absent, not departed) until rank 0 has timed out.
    let timed_out = Barrier::new(2);
    let results = threads::run_with_timeout(2, SHORT, |comm| {
        let result = (comm.rank() == 0).then(|| comm.recv(1, 5));
        timed_out.wait();
        result
    });
    match &results[0] {
        Some(Err(Error::Timeout { op, missing, .. })) => {
            assert_eq!((op.as_str(), missing.as_slice()), ("recv", &[1][..]))
        }
        other => panic!("expected a recv timeout, got {other:?}"),
    }
}

#[test]
fn a_departed_rank_fails_its_peers_promptly() {
    let results = threads::run_with_timeout(3, LONG, |comm| {
        if comm.rank() == 2 {
            return None; // drops the communicator
        }
        let x = Tensor::from_slice(&[1i64], [1]).unwrap();
        Some(comm.all_reduce(&x, ReduceOp::Sum))
    });
    for (rank, result) in results.into_iter().enumerate().take(2) {
        match result {
            Some(Err(Error::PeerFailed {
                op, peer, reason, ..
            })) => {
                assert_eq!((op.as_str(), peer), ("all_reduce", 2), "rank {rank}");
                assert!(reason.contains("dropped"), "{reason}");
            }
            other => panic!("rank {rank}: expected PeerFailed naming rank 2, got {other:?}"),
        }
    }
}

#[test]
fn a_panicking_rank_fails_its_peers_and_run_resumes_the_panic() {
    let seen = Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(|| {
        threads::run_with_timeout(3, LONG, |comm| {
            if comm.rank() == 0 {
                panic!("rank 0 fails on purpose");
            }
            let result = comm.all_gather(&Tensor::zeros(DType::F32, [2]).unwrap());
            seen.lock().unwrap().push((comm.rank(), result));
        })
    });
    assert!(outcome.is_err(), "run must resume the rank's panic");
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 2);
    for (rank, result) in seen {
        match result {
            Err(Error::PeerFailed { peer, reason, .. }) => {
                assert_eq!(peer, 0, "rank {rank}");
                assert!(reason.contains("panicked"), "{reason}");
            }
            other => panic!("rank {rank}: expected PeerFailed naming rank 0, got {other:?}"),
        }
    }
}

#[test]
fn messages_from_a_departed_rank_are_still_delivered() {
    let results = threads::run_with_timeout(2, LONG, |comm| {
        if comm.rank() == 1 {
            comm.send(&Tensor::from_slice(&[42i32], [1]).unwrap(), 0, 9)
                .unwrap();
            return None;
        }
        let first = comm.recv(1, 9).map(|t| t.to_vec::<i32>().unwrap());
        Some((first, comm.recv(1, 9)))
    });
    let (first, second) = results.into_iter().next().flatten().unwrap();
    assert_eq!(first.unwrap(), vec![42]);
    assert!(
        matches!(second, Err(Error::PeerFailed { peer: 1, .. })),
        "{second:?}"
    );
}

#[test]
fn different_operations_are_reported_on_every_rank() {
    let results = threads::run_with_timeout(3, LONG, |comm| {
        let mismatch = if comm.rank() == 1 {
            comm.barrier()
        } else {
            comm.all_gather(&Tensor::zeros(DType::F32, [1]).unwrap())
                .map(|_| ())
        };
        (mismatch, comm.barrier())
    });
    for (rank, (mismatch, after)) in results.into_iter().enumerate() {
        match mismatch {
            Err(Error::InvalidArgument {
                message, rank: r, ..
            }) => {
                assert_eq!(r, rank);
                assert!(
                    message.contains("all_gather") && message.contains("barrier"),
                    "{message}"
                );
            }
            other => panic!("rank {rank}: expected InvalidArgument, got {other:?}"),
        }
        after.unwrap();
    }
}

#[test]
fn mismatched_shapes_give_the_same_error_on_every_rank() {
    let results = threads::run_with_timeout(4, LONG, |comm| {
        let rows = if comm.rank() == 2 { 3 } else { 2 };
        let x = Tensor::zeros(DType::F32, [rows, 4]).unwrap();
        comm.all_reduce(&x, ReduceOp::Sum)
    });
    let messages: Vec<String> = results
        .into_iter()
        .map(|result| match result {
            Err(Error::InvalidArgument { message, .. }) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        })
        .collect();
    assert!(
        messages[0].contains("rank 2") && messages[0].contains("[3, 4]"),
        "{}",
        messages[0]
    );
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
}

#[test]
fn group_needs_a_rank() {
    assert!(matches!(
        threads::group(0, LONG),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(threads::run(0, |_| ()).is_empty());
    let comms = threads::group(2, LONG).unwrap();
    assert_eq!(comms.iter().map(|c| c.rank()).collect::<Vec<_>>(), [0, 1]);
    assert!(comms
        .iter()
        .all(|c| c.size() == 2 && c.backend() == "threads"));
}

/// Pseudo-random values with a wide spread of magnitudes, so float sums depend on order.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mantissa = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            mantissa * 10f32.powi(((state >> 20) % 9) as i32 - 4)
        })
        .collect()
}

/// The rank-order f32 sum of `inputs`, elementwise.
fn serial_sum(inputs: &[Vec<f32>]) -> Vec<f32> {
    let mut acc = inputs[0].clone();
    for x in &inputs[1..] {
        for (a, v) in acc.iter_mut().zip(x) {
            *a += v;
        }
    }
    acc
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn reductions_are_deterministic_and_in_rank_order() {
    let size = 4;
    let n = 1000;
    let inputs: Vec<Vec<f32>> = (0..size).map(|r| noise(r as u64, n)).collect();
    let expected = bits(&serial_sum(&inputs));
    for _ in 0..2 {
        let results = threads::run_with_timeout(size, LONG, |comm| {
            let x = Tensor::from_slice(&inputs[comm.rank()], [n]).unwrap();
            let first = comm.all_reduce(&x, ReduceOp::Sum).unwrap();
            let second = comm.all_reduce(&x, ReduceOp::Sum).unwrap();
            (
                first.to_vec::<f32>().unwrap(),
                second.to_vec::<f32>().unwrap(),
            )
        });
        for (first, second) in results {
            assert_eq!(bits(&first), expected);
            assert_eq!(bits(&second), expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gather_and_reduce_scatter_match_a_serial_computation(
        size in 1usize..=5,
        gather_rows in proptest::collection::vec(0usize..4, 5),
        part_rows in proptest::collection::vec(0usize..4, 5),
        cols in 1usize..4,
        seed in any::<u64>(),
    ) {
        // Rank r gathers `gather_rows[r]` rows; part i of reduce_scatter has `part_rows[i]`.
        let gather_input = |r: usize| noise(seed ^ r as u64, gather_rows[r] * cols);
        let part_input = |r: usize, i: usize| noise(seed ^ (100 + r * 10 + i) as u64, part_rows[i] * cols);
        let results = threads::run_with_timeout(size, LONG, |comm| {
            let r = comm.rank();
            let x = Tensor::from_slice(&gather_input(r), [gather_rows[r], cols]).unwrap();
            let gathered = comm.all_gather(&x).unwrap();
            let parts: Vec<Tensor> = (0..size)
                .map(|i| Tensor::from_slice(&part_input(r, i), [part_rows[i], cols]).unwrap())
                .collect();
            let reduced = comm.reduce_scatter(&parts, ReduceOp::Sum).unwrap();
            (gathered, reduced)
        });
        for (rank, (gathered, reduced)) in results.into_iter().enumerate() {
            prop_assert_eq!(gathered.len(), size);
            for (peer, t) in gathered.iter().enumerate() {
                prop_assert_eq!(t.dims(), &[gather_rows[peer], cols][..]);
                prop_assert_eq!(bits(&t.to_vec::<f32>().unwrap()), bits(&gather_input(peer)));
            }
            let column: Vec<Vec<f32>> = (0..size).map(|r| part_input(r, rank)).collect();
            prop_assert_eq!(reduced.dims(), &[part_rows[rank], cols][..]);
            prop_assert_eq!(bits(&reduced.to_vec::<f32>().unwrap()), bits(&serial_sum(&column)));
        }
    }
}

#[test]
fn split_groups_are_independent() {
    // Two sub-groups run different numbers of operations; neither waits on the other.
    let results = threads::run_with_timeout(4, LONG, |comm| {
        let sub: Arc<dyn Communicator> = comm.split(comm.rank() / 2, 0).unwrap();
        let rounds = if comm.rank() < 2 { 5 } else { 1 };
        let mut last = 0;
        for round in 0..rounds {
            let x = Tensor::from_slice(&[round], [1]).unwrap();
            last = sub
                .all_reduce(&x, ReduceOp::Sum)
                .unwrap()
                .to_vec::<i32>()
                .unwrap()[0];
        }
        comm.barrier().unwrap();
        last
    });
    assert_eq!(results, vec![8, 8, 0, 0]);
}
