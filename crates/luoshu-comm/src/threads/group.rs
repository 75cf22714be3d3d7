//! The state one group of thread ranks shares, and the waits every operation makes on it.

use super::op::Op;
use crate::{Error, Result};
use luoshu_tensor::Tensor;
use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A group of ranks: one mutex-protected [`State`] and one condition variable signalled on
/// every change of it.
pub(super) struct Group {
    size: usize,
    timeout: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

/// A rank's contribution to one collective.
#[derive(Clone)]
struct Arrival {
    seq: u64,
    op: Op,
    payload: Arc<dyn Any + Send + Sync>,
}

struct State {
    /// Sequence number of each rank's next collective.
    next_seq: Vec<u64>,
    /// Each rank's contribution to its current collective (kept after it gives up, so a
    /// peer can tell "arrived, then failed" from "never arrived").
    arrivals: Vec<Option<Arrival>>,
    /// Number of collectives each rank has finished the first phase of (two-phase
    /// collectives only; single-phase ones skip the number).
    halfway: Vec<u64>,
    /// Number of collectives each rank has finished reading its peers' inputs for.
    finished: Vec<u64>,
    /// Why a rank left the group (communicator dropped, thread panicked, gave up after a
    /// failure); peers waiting on it fail at once instead of at the timeout.
    departed: Vec<Option<String>>,
    /// Point-to-point messages by `(src, dst, tag)`, oldest first.
    mailboxes: HashMap<(usize, usize, u64), VecDeque<Tensor>>,
}

/// A point of a collective that every rank must pass before any rank goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Milestone {
    /// The first phase of a two-phase collective is done.
    Halfway,
    /// The rank no longer reads its peers' payloads.
    Finished,
}

/// What a wait found: done, or still waiting for the listed ranks.
enum Progress<T> {
    Ready(T),
    Waiting(Vec<usize>),
}

impl Group {
    pub(super) fn new(size: usize, timeout: Duration) -> Arc<Group> {
        Arc::new(Group {
            size,
            timeout,
            state: Mutex::new(State {
                next_seq: vec![0; size],
                arrivals: vec![None; size],
                halfway: vec![0; size],
                finished: vec![0; size],
                departed: vec![None; size],
                mailboxes: HashMap::new(),
            }),
            changed: Condvar::new(),
        })
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The state, also after a panic elsewhere: no code panics while holding the lock
    /// half-way through an update, so the state is consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When an operation starting now times out (`None`: a timeout too long to represent,
    /// i.e. never).
    pub(super) fn deadline(&self) -> Option<Instant> {
        Instant::now().checked_add(self.timeout)
    }

    /// Runs one collective for `rank`: publishes `payload`, waits until every rank has
    /// published its own for the same operation, runs `compute` on all payloads in rank
    /// order, then waits until every rank has finished computing, so no rank returns (and
    /// lets its caller modify its input) while a peer may still be reading that input.
    ///
    /// A failed wait (timeout, departed peer) makes `rank` leave the group: the group no
    /// longer agrees on the sequence of operations, and peers waiting on `rank` should fail
    /// now rather than at their timeout. (Only if the completion wait itself times out, i.e.
    /// a live peer spent the whole timeout copying, does `rank` return while that peer may
    /// still be reading its input.)
    pub(super) fn collective<P, T>(
        &self,
        rank: usize,
        op: Op,
        payload: P,
        compute: impl FnOnce(&[&P]) -> Result<T>,
    ) -> Result<T>
    where
        P: Any + Send + Sync,
    {
        let name = op.name();
        let deadline = self.deadline();
        let seq = self.publish(rank, op, payload)?;
        let arrivals = self.arrivals(rank, name, seq, deadline)?;
        let result = payloads::<P>(&arrivals, rank, seq).and_then(|inputs| compute(&inputs));
        drop(arrivals);
        self.pass(rank, name, seq, deadline, Milestone::Finished)?;
        result
    }

    /// [`Group::collective`] in two phases with a wait for every rank in between: `first`
    /// runs on all payloads, then, once every rank has finished its `first`, `second` runs
    /// on them with `first`'s result. So `second` may read what peers' `first` wrote into
    /// their payloads.
    ///
    /// `first`'s errors must come from checks every rank makes on the same payloads (so they
    /// fail on every rank alike and no rank's `second` reads a peer's unfinished work): a
    /// failed `first` skips `second`, but the rank still passes the halfway point so its
    /// peers do not wait for it. A failed halfway wait makes `rank` leave the group, as in
    /// [`Group::collective`]; if it timed out, a live peer may still be in its `first`.
    pub(super) fn two_phase_collective<P, A, T>(
        &self,
        rank: usize,
        op: Op,
        payload: P,
        first: impl FnOnce(&[&P]) -> Result<A>,
        second: impl FnOnce(&[&P], A) -> Result<T>,
    ) -> Result<T>
    where
        P: Any + Send + Sync,
    {
        let name = op.name();
        let deadline = self.deadline();
        let seq = self.publish(rank, op, payload)?;
        let arrivals = self.arrivals(rank, name, seq, deadline)?;
        let result = match payloads::<P>(&arrivals, rank, seq) {
            Err(err) => Err(err),
            Ok(inputs) => {
                let halfway = first(&inputs);
                self.pass(rank, name, seq, deadline, Milestone::Halfway)?;
                halfway.and_then(|halfway| second(&inputs, halfway))
            }
        };
        drop(arrivals);
        self.pass(rank, name, seq, deadline, Milestone::Finished)?;
        result
    }

    /// Publishes `rank`'s `payload` for its next collective; returns the collective's
    /// sequence number.
    fn publish<P: Any + Send + Sync>(&self, rank: usize, op: Op, payload: P) -> Result<u64> {
        let seq = {
            let mut state = self.lock();
            state.ensure_present(rank, op.name())?;
            let seq = state.next_seq[rank];
            state.next_seq[rank] += 1;
            state.arrivals[rank] = Some(Arrival {
                seq,
                op,
                payload: Arc::new(payload),
            });
            seq
        };
        self.changed.notify_all();
        Ok(seq)
    }

    /// Every rank's arrival at collective `seq`, once all arrived.
    fn arrivals(
        &self,
        rank: usize,
        name: &str,
        seq: u64,
        deadline: Option<Instant>,
    ) -> Result<Vec<Arrival>> {
        self.wait(rank, name, deadline, |state| {
            state.poll_arrivals(seq, rank, name)
        })
        .map_err(|err| self.give_up(rank, name, seq, err))
    }

    /// Marks `rank` past `milestone` of collective `seq` and waits until every rank is.
    fn pass(
        &self,
        rank: usize,
        name: &str,
        seq: u64,
        deadline: Option<Instant>,
        milestone: Milestone,
    ) -> Result<()> {
        self.lock().passed_mut(milestone)[rank] = seq + 1;
        self.changed.notify_all();
        self.wait(rank, name, deadline, |state| {
            state.poll_passed(milestone, seq, rank, name)
        })
        .map_err(|err| self.give_up(rank, name, seq, err))
    }

    /// Queues `message` from `src` to `dst`; never blocks.
    pub(super) fn post(
        &self,
        op: &str,
        src: usize,
        dst: usize,
        tag: u64,
        message: Tensor,
    ) -> Result<()> {
        let mut state = self.lock();
        state.ensure_present(src, op)?;
        state
            .mailboxes
            .entry((src, dst, tag))
            .or_default()
            .push_back(message);
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// The oldest message from `src` to `rank` with `tag`, waiting for it until `deadline`.
    pub(super) fn receive(
        &self,
        op: &str,
        rank: usize,
        src: usize,
        tag: u64,
        deadline: Option<Instant>,
    ) -> Result<Tensor> {
        self.lock().ensure_present(rank, op)?;
        self.wait(rank, op, deadline, |state| {
            if let Entry::Occupied(mut queue) = state.mailboxes.entry((src, rank, tag)) {
                if let Some(message) = queue.get_mut().pop_front() {
                    if queue.get().is_empty() {
                        queue.remove();
                    }
                    return Ok(Progress::Ready(message));
                }
            }
            state.fail_if_departed(&[src], rank, op)?;
            Ok(Progress::Waiting(vec![src]))
        })
    }

    /// Marks `rank` as gone; peers waiting on it fail with [`Error::PeerFailed`] carrying
    /// `reason`. The first reason is kept (it is the cause; later ones are consequences).
    pub(super) fn depart(&self, rank: usize, reason: String) {
        let mut state = self.lock();
        if state.departed[rank].is_none() {
            state.departed[rank] = Some(reason);
        }
        drop(state);
        self.changed.notify_all();
    }

    fn give_up(&self, rank: usize, op: &str, seq: u64, err: Error) -> Error {
        self.depart(
            rank,
            format!("it gave up on {op} (operation #{seq}): {err}"),
        );
        err
    }

    /// Polls the state until `poll` is ready, fails, or `deadline` passes; a timeout names
    /// the ranks the last poll was still waiting for.
    fn wait<T>(
        &self,
        rank: usize,
        op: &str,
        deadline: Option<Instant>,
        mut poll: impl FnMut(&mut State) -> Result<Progress<T>>,
    ) -> Result<T> {
        let mut state = self.lock();
        loop {
            let missing = match poll(&mut state)? {
                Progress::Ready(value) => return Ok(value),
                Progress::Waiting(missing) => missing,
            };
            state = match deadline {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout {
                            op: op.to_string(),
                            rank,
                            size: self.size,
                            missing,
                            timeout: self.timeout,
                        });
                    }
                    self.changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl State {
    /// Fails if `rank` itself already left the group.
    fn ensure_present(&self, rank: usize, op: &str) -> Result<()> {
        match &self.departed[rank] {
            None => Ok(()),
            Some(reason) => Err(Error::PeerFailed {
                op: op.to_string(),
                rank,
                peer: rank,
                reason: format!("this rank already left the group: {reason}"),
            }),
        }
    }

    /// Fails naming the first of `ranks` that left the group.
    fn fail_if_departed(&self, ranks: &[usize], rank: usize, op: &str) -> Result<()> {
        for &peer in ranks {
            if let Some(reason) = &self.departed[peer] {
                return Err(Error::PeerFailed {
                    op: op.to_string(),
                    rank,
                    peer,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// Ready with every rank's arrival once all arrived at operation `seq`.
    fn poll_arrivals(&self, seq: u64, rank: usize, op: &str) -> Result<Progress<Vec<Arrival>>> {
        let missing: Vec<usize> = (0..self.arrivals.len())
            .filter(|&peer| self.arrivals[peer].as_ref().map(|a| a.seq) != Some(seq))
            .collect();
        if missing.is_empty() {
            // A peer that arrived and then gave up has returned to its caller, who may be
            // writing its input again: never read it.
            let all: Vec<usize> = (0..self.arrivals.len()).collect();
            self.fail_if_departed(&all, rank, op)?;
            let arrivals = self.arrivals.iter().flatten().cloned().collect();
            return Ok(Progress::Ready(arrivals));
        }
        self.fail_if_departed(&missing, rank, op)?;
        Ok(Progress::Waiting(missing))
    }

    /// How many collectives each rank has passed `milestone` of.
    fn passed_mut(&mut self, milestone: Milestone) -> &mut Vec<u64> {
        match milestone {
            Milestone::Halfway => &mut self.halfway,
            Milestone::Finished => &mut self.finished,
        }
    }

    /// Ready once every rank passed `milestone` of operation `seq`; once all finished,
    /// `rank` withdraws its input (no peer reads it any more).
    fn poll_passed(
        &mut self,
        milestone: Milestone,
        seq: u64,
        rank: usize,
        op: &str,
    ) -> Result<Progress<()>> {
        let passed = self.passed_mut(milestone);
        let missing: Vec<usize> = (0..passed.len())
            .filter(|&peer| passed[peer] <= seq)
            .collect();
        if missing.is_empty() {
            if milestone == Milestone::Finished {
                self.arrivals[rank] = None;
            }
            return Ok(Progress::Ready(()));
        }
        self.fail_if_departed(&missing, rank, op)?;
        Ok(Progress::Waiting(missing))
    }
}

/// The payloads of one operation in rank order, after checking every rank called the same
/// operation with the same arguments.
fn payloads<P: Any>(arrivals: &[Arrival], rank: usize, seq: u64) -> Result<Vec<&P>> {
    let first = arrivals[0].op;
    let mismatch = |peer: usize, theirs: Op| {
        Error::InvalidArgument {
        op: arrivals[rank].op.name().to_string(),
        rank,
        message: format!(
            "ranks called different operations as operation #{seq}: rank 0 called {first} but rank {peer} called {theirs}"
        ),
    }
    };
    if let Some((peer, arrival)) = arrivals.iter().enumerate().find(|(_, a)| a.op != first) {
        return Err(mismatch(peer, arrival.op));
    }
    // Equal operations were posted by the same method, so the payload types agree.
    arrivals
        .iter()
        .enumerate()
        .map(|(peer, arrival)| {
            arrival
                .payload
                .downcast_ref::<P>()
                .ok_or_else(|| mismatch(peer, arrival.op))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReduceOp;

    #[test]
    fn the_halfway_wait_times_out_naming_the_slow_rank() {
        let group = Group::new(2, Duration::from_millis(100));
        let op = Op::AllReduce(ReduceOp::Sum);
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let group = &group;
                    scope.spawn(move || {
                        let first = |_: &[&()]| {
                            if rank == 1 {
                                std::thread::sleep(Duration::from_millis(400));
                            }
                            Ok(())
                        };
                        group.two_phase_collective(rank, op, (), first, |_, ()| Ok(()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        match &results[0] {
            Err(Error::Timeout { op, missing, .. }) => {
                assert_eq!((op.as_str(), missing.as_slice()), ("all_reduce", &[1][..]))
            }
            other => panic!("rank 0 should time out at the halfway wait, got {other:?}"),
        }
        // Rank 0 gave up, so the slow rank fails at once instead of waiting for it.
        assert!(
            matches!(&results[1], Err(Error::PeerFailed { peer: 0, .. })),
            "{:?}",
            results[1]
        );
    }
}
