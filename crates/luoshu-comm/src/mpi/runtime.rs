//! Process-wide MPI state: initialization, the lock that serializes every MPI call, the
//! sends still in flight (posted here, which keeps their buffers until MPI is done with
//! them), and finalization.
//!
//! MPI is initialized with `MPI_THREAD_SERIALIZED`: any thread may call MPI, never two at
//! once. Every MPI call in this backend happens while holding [`MpiLock`], which is what
//! makes the raw MPI handles (communicators, requests) safe to share between threads.

use super::backoff::Backoff;
use super::buffer::MpiBuffer;
use crate::{Error, Result};
use mpi::environment::Universe;
use mpi::point_to_point::Destination;
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::{Rank, Tag, Threading};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

enum State {
    Uninitialized,
    Running {
        /// `None` when MPI was initialized outside luoshu (then it is not ours to finalize).
        universe: Option<Universe>,
        /// Sends that MPI has not finished with yet; their buffers live until then.
        pending_sends: Vec<PendingSend>,
    },
    Finalized,
}

static STATE: Mutex<State> = Mutex::new(State::Uninitialized);

/// Proof that the caller holds the process-wide MPI lock and that MPI is running. Functions
/// that call MPI take `&MpiLock` (or `&mut MpiLock`) so they cannot be called without it.
pub(super) struct MpiLock(MutexGuard<'static, State>);

impl MpiLock {
    /// Hands a posted send to the runtime, which completes it later (see [`MpiLock::reap`]).
    fn keep_pending(&mut self, send: PendingSend) {
        if let State::Running { pending_sends, .. } = &mut *self.0 {
            pending_sends.push(send);
        }
    }

    /// Frees the buffers of sends that MPI has completed.
    pub(super) fn reap(&mut self) {
        if let State::Running { pending_sends, .. } = &mut *self.0 {
            let in_flight = std::mem::take(pending_sends);
            *pending_sends = in_flight
                .into_iter()
                .filter_map(PendingSend::test)
                .collect();
        }
    }

    fn pending_send_count(&self) -> usize {
        match &*self.0 {
            State::Running { pending_sends, .. } => pending_sends.len(),
            _ => 0,
        }
    }
}

/// A posted send and the buffer it reads.
pub(super) struct PendingSend {
    request: Request<'static, [u8]>,
    buffer: MpiBuffer,
}

// SAFETY: MPI request handles and the leaked buffer are plain memory valid in any thread;
// every MPI call on them happens under the process-wide MPI lock (MPI_THREAD_SERIALIZED).
unsafe impl Send for PendingSend {}

impl PendingSend {
    /// Posts a non-blocking send of `bytes` to `dst` and hands it to the runtime, which
    /// frees the buffer once MPI completes it.
    pub(super) fn post(
        mpi: &mut MpiLock,
        comm: &SimpleCommunicator,
        dst: Rank,
        tag: Tag,
        bytes: Vec<u8>,
    ) {
        let buffer = MpiBuffer::leak(bytes.into_boxed_slice());
        // SAFETY: the buffer is reclaimed only in `test`, after the request completed.
        let data = unsafe { buffer.for_mpi_read() };
        let request = comm
            .process_at_rank(dst)
            .immediate_send_with_tag(StaticScope, data, tag);
        mpi.keep_pending(PendingSend { request, buffer });
    }

    /// `None` (and the buffer freed) if MPI completed the send, else the send again.
    fn test(self) -> Option<PendingSend> {
        let PendingSend { request, buffer } = self;
        match request.test() {
            Ok(_) => {
                // SAFETY: the request completed, MPI no longer reads the buffer.
                drop(unsafe { buffer.reclaim() });
                None
            }
            Err(request) => Some(PendingSend { request, buffer }),
        }
    }

    /// Gives up on the send: the request is forgotten and its buffer leaked, since MPI may
    /// still read it.
    fn abandon(self) {
        std::mem::forget(self.request);
    }
}

fn state() -> Result<MutexGuard<'static, State>> {
    STATE
        .lock()
        .map_err(|_| Error::Mpi("the MPI lock was poisoned by a panic in another thread".into()))
}

/// Takes the MPI lock; fails if MPI is not running (never initialized, or finalized).
pub(super) fn lock(op: &str) -> Result<MpiLock> {
    let guard = state()?;
    match &*guard {
        State::Running { .. } => Ok(MpiLock(guard)),
        State::Uninitialized => Err(Error::Mpi(format!(
            "{op}: MPI is not initialized (create the communicator with MpiComm::world)"
        ))),
        State::Finalized => Err(Error::Mpi(format!("{op}: MPI was already finalized"))),
    }
}

/// Initializes MPI on first use (keeping the `Universe` in this module's state until
/// [`finalize`]) and takes the MPI lock.
pub(super) fn initialize() -> Result<MpiLock> {
    let mut guard = state()?;
    if matches!(*guard, State::Uninitialized) {
        // `None`: MPI was initialized outside luoshu; use it without owning it.
        let universe = mpi::initialize_with_threading(Threading::Serialized).map(|(u, _)| u);
        *guard = State::Running {
            universe,
            pending_sends: Vec::new(),
        };
    }
    if matches!(*guard, State::Finalized) {
        return Err(Error::Mpi(
            "MPI was finalized; it cannot be initialized again in this process".into(),
        ));
    }
    let provided = mpi::environment::threading_support();
    if matches!(provided, Threading::Single | Threading::Funneled) {
        return Err(Error::Mpi(format!(
            "the MPI library provides thread level {provided:?}; luoshu needs Serialized"
        )));
    }
    Ok(MpiLock(guard))
}

/// The MPI lock if MPI is running, else `None` (communicators free their MPI handles only
/// while it runs).
pub(super) fn try_lock_running() -> Option<MpiLock> {
    let guard = STATE.lock().ok()?;
    matches!(*guard, State::Running { .. }).then_some(MpiLock(guard))
}

/// How long [`finalize`] waits for sends still in flight before finalizing anyway.
const FINALIZE_DRAIN: Duration = Duration::from_secs(5);

/// Finalizes MPI (`MPI_Finalize`). Call it once at the end of an MPI program, after the
/// last communication, on every rank: OpenMPI's `mpirun` reports a process that exits
/// without finalizing as failed. Sends still in flight get up to 5 s to complete first.
/// Communicators may outlive this call (their handles are then left to the OS); any
/// operation on them afterwards fails with [`Error::Mpi`]. A no-op if MPI never started.
///
/// After an [`Error::Timeout`] other ranks may be stuck, and `MPI_Finalize` can wait for
/// them; a program that gives up after a timeout should print the error and end with
/// `std::process::exit` (or `MPI_Abort` via `mpirun`'s own teardown) instead.
pub fn finalize() -> Result<()> {
    let drain_until = Instant::now() + FINALIZE_DRAIN;
    let mut backoff = Backoff::new();
    loop {
        let Some(mut mpi) = try_lock_running() else {
            break;
        };
        mpi.reap();
        if mpi.pending_send_count() == 0 || Instant::now() >= drain_until {
            break;
        }
        drop(mpi);
        backoff.pause();
    }
    let mut guard = state()?;
    if let State::Running {
        universe,
        pending_sends,
    } = std::mem::replace(&mut *guard, State::Finalized)
    {
        // Buffers of sends MPI never completed must outlive MPI: leak them.
        pending_sends.into_iter().for_each(PendingSend::abandon);
        // Dropping the universe calls MPI_Finalize.
        drop(universe);
    }
    Ok(())
}
