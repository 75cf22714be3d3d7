//! The `threads` backend: the ranks of a group are threads of this process.
//!
//! A group shares one mutex-protected state and one condition variable. A collective is a
//! rendezvous matched by a per-group sequence number: each rank publishes its input (the
//! tensor itself, an `Arc` clone; strided views are made contiguous first), waits until every
//! rank has published for the same operation, then copies or reduces its peers' inputs
//! straight into its own fresh output (one copy, reductions in rank order), and finally
//! waits until every rank has finished reading, so no input is modified while a peer still
//! reads it. All-reduce splits its work in two phases with a wait in between: each rank
//! reduces one chunk of the elements, then copies the other chunks from the ranks that
//! reduced them (see `all_reduce.rs`); `all_reduce_in_place` does the same with every rank's
//! input as its output, allocating nothing. All `unsafe` is in `shared.rs`. Ranks check the operation and arguments of every peer, so a mismatch is the
//! same [`crate::Error::InvalidArgument`] on every rank.
//!
//! Point-to-point messages go through per-`(src, dst, tag)` mailboxes: `send` queues a copy
//! and returns; `recv` waits for it. Sending to oneself is allowed.
//!
//! Every wait ends at the communicator's timeout with [`crate::Error::Timeout`] naming the
//! ranks that never arrived. A rank whose communicator is dropped (its thread returned or
//! panicked), or that gave up on a collective after a timeout or failure, leaves the group:
//! peers waiting on it fail at once with [`crate::Error::PeerFailed`] naming it, and its own
//! later operations fail too (the group no longer agrees on the sequence of operations).

mod all_reduce;
mod checks;
mod comm;
mod group;
mod op;
mod published;
mod shared;

use crate::{Communicator, Error, Result, DEFAULT_TIMEOUT};
use comm::ThreadComm;
use group::Group;
use std::sync::Arc;
use std::time::Duration;

/// The `size` communicators of a new group, in rank order; hand one to each thread.
/// Operations wait at most `timeout` for peers.
pub fn group(size: usize, timeout: Duration) -> Result<Vec<Arc<dyn Communicator>>> {
    if size == 0 {
        return Err(Error::InvalidArgument {
            op: "threads::group".to_string(),
            rank: 0,
            message: "a group needs at least one rank".to_string(),
        });
    }
    Ok(communicators(size, timeout))
}

/// Runs `f` once per rank of a new `size`-rank group, each on its own scoped thread, and
/// returns the results in rank order. Operations wait at most [`DEFAULT_TIMEOUT`].
///
/// See [`run_with_timeout`].
pub fn run<T, F>(size: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Arc<dyn Communicator>) -> T + Sync,
{
    run_with_timeout(size, DEFAULT_TIMEOUT, f)
}

/// Runs `f` once per rank of a new `size`-rank group whose operations wait at most
/// `timeout`, each on its own scoped thread, and returns the results in rank order (empty
/// for `size == 0`).
///
/// A rank that panics drops its communicator while unwinding, so its peers' operations fail
/// promptly with [`crate::Error::PeerFailed`] instead of hanging; once every rank has
/// finished, the first panic is resumed on the calling thread.
pub fn run_with_timeout<T, F>(size: usize, timeout: Duration, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Arc<dyn Communicator>) -> T + Sync,
{
    let f = &f;
    let outcomes: Vec<std::thread::Result<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = communicators(size, timeout)
            .into_iter()
            .map(|comm| scope.spawn(move || f(comm)))
            .collect();
        handles.into_iter().map(|handle| handle.join()).collect()
    });
    let mut results = Vec::with_capacity(size);
    for outcome in outcomes {
        match outcome {
            Ok(result) => results.push(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    results
}

fn communicators(size: usize, timeout: Duration) -> Vec<Arc<dyn Communicator>> {
    let group = Group::new(size, timeout);
    (0..size)
        .map(|rank| Arc::new(ThreadComm::new(group.clone(), rank)) as Arc<dyn Communicator>)
        .collect()
}
