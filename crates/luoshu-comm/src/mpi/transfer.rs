//! Non-blocking MPI messages with deadlines: sends that own their buffer until MPI is done
//! with it, and receives of whole messages (probe, then receive) polled until a deadline.
//!
//! Buffers handed to MPI are leaked boxes: MPI may read or write them for as long as the
//! request lives, which after a timeout can be forever. They are reclaimed when the request
//! completes and stay leaked if it never does.

use super::runtime::{self, MpiLock};
use crate::Result;
use mpi::datatype::Equivalence;
use mpi::point_to_point::{Destination, Message, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::Tag;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// A leaked byte buffer that MPI reads or writes while a request is in flight.
struct MpiBuffer(NonNull<[u8]>);

impl MpiBuffer {
    fn leak(bytes: Box<[u8]>) -> Self {
        MpiBuffer(NonNull::from(Box::leak(bytes)))
    }

    /// The bytes for a request to read.
    ///
    /// # Safety
    /// The buffer must not be reclaimed while the returned reference is used by MPI.
    unsafe fn for_mpi_read(&self) -> &'static [u8] {
        // SAFETY: the allocation is leaked, so it lives until `reclaim`, which the caller
        // defers until the request completed; nothing writes it meanwhile.
        unsafe { self.0.as_ref() }
    }

    /// The bytes for a request to write.
    ///
    /// # Safety
    /// As [`MpiBuffer::for_mpi_read`], and no other reference to the bytes may exist.
    unsafe fn for_mpi_write(&mut self) -> &'static mut [u8] {
        // SAFETY: as in `for_mpi_read`; the request is the only user of the bytes.
        unsafe { self.0.as_mut() }
    }

    /// Takes the bytes back.
    ///
    /// # Safety
    /// The request that used the buffer must have completed.
    unsafe fn reclaim(self) -> Box<[u8]> {
        // SAFETY: the pointer came from `Box::leak` in `leak` and is reclaimed once, after
        // MPI stopped using it (caller's promise).
        unsafe { Box::from_raw(self.0.as_ptr()) }
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
        dst: usize,
        tag: Tag,
        bytes: Vec<u8>,
    ) {
        let buffer = MpiBuffer::leak(bytes.into_boxed_slice());
        // SAFETY: the buffer is reclaimed only in `test`, after the request completed.
        let data = unsafe { buffer.for_mpi_read() };
        let request =
            comm.process_at_rank(mpi_rank(dst))
                .immediate_send_with_tag(StaticScope, data, tag);
        mpi.keep_pending(PendingSend { request, buffer });
    }

    /// `None` (and the buffer freed) if MPI completed the send, else the send again.
    pub(super) fn test(self) -> Option<PendingSend> {
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
    pub(super) fn abandon(self) {
        std::mem::forget(self.request);
    }
}

/// What [`receive_all`] did not receive by its deadline.
pub(super) struct Missing {
    /// The sources (sorted, without repeats) whose message had not fully arrived.
    pub ranks: Vec<usize>,
    /// True if a message was matched but not fully received: it is lost (its receive is
    /// abandoned and its buffer leaked). Otherwise nothing was consumed and a later receive
    /// can still get the messages.
    pub abandoned_transfer: bool,
}

/// One expected message: not yet matched, being received, or received.
enum Incoming {
    Probing,
    Receiving {
        request: Request<'static, [u8]>,
        buffer: MpiBuffer,
    },
    Received(Vec<u8>),
}

/// Receives one message with `tag` from each of `sources` (a rank may appear more than
/// once: its messages are taken in the order sent), polling until `deadline`.
///
/// Returns the messages in the order of `sources`, or what was missing at the deadline.
pub(super) fn receive_all(
    op: &str,
    comm: &SimpleCommunicator,
    sources: &[usize],
    tag: Tag,
    deadline: Instant,
) -> Result<std::result::Result<Vec<Vec<u8>>, Missing>> {
    let mut incoming: Vec<Incoming> = sources.iter().map(|_| Incoming::Probing).collect();
    let mut idle_polls = 0u32;
    loop {
        let progressed = {
            let mut mpi = runtime::lock(op)?;
            mpi.reap();
            poll_once(&mpi, comm, sources, tag, &mut incoming)
        };
        if incoming.iter().all(|m| matches!(m, Incoming::Received(_))) {
            let messages = incoming
                .into_iter()
                .filter_map(|m| match m {
                    Incoming::Received(bytes) => Some(bytes),
                    _ => None,
                })
                .collect();
            return Ok(Ok(messages));
        }
        if Instant::now() >= deadline {
            let mut missing = Missing {
                ranks: Vec::new(),
                abandoned_transfer: false,
            };
            for (message, &src) in incoming.into_iter().zip(sources) {
                match message {
                    Incoming::Received(_) => {}
                    Incoming::Probing => missing.ranks.push(src),
                    Incoming::Receiving { request, .. } => {
                        // The buffer stays leaked: MPI may still write it.
                        std::mem::forget(request);
                        missing.ranks.push(src);
                        missing.abandoned_transfer = true;
                    }
                }
            }
            missing.ranks.sort_unstable();
            missing.ranks.dedup();
            return Ok(Err(missing));
        }
        idle_polls = if progressed { 0 } else { idle_polls + 1 };
        back_off(idle_polls);
    }
}

/// One pass over the expected messages; true if any of them advanced.
fn poll_once(
    _mpi: &MpiLock,
    comm: &SimpleCommunicator,
    sources: &[usize],
    tag: Tag,
    incoming: &mut [Incoming],
) -> bool {
    let mut progressed = false;
    // A source's messages are matched in order: only its first unmatched slot probes.
    let mut probing_sources = Vec::new();
    for (slot, &src) in incoming.iter_mut().zip(sources) {
        let state = std::mem::replace(slot, Incoming::Probing);
        *slot = match state {
            Incoming::Probing if probing_sources.contains(&src) => Incoming::Probing,
            Incoming::Probing => match comm
                .process_at_rank(mpi_rank(src))
                .immediate_matched_probe_with_tag(tag)
            {
                Some((message, status)) => {
                    progressed = true;
                    let len = usize::try_from(status.count(u8::equivalent_datatype()))
                        .unwrap_or_default();
                    start_receive(message, len)
                }
                None => {
                    probing_sources.push(src);
                    Incoming::Probing
                }
            },
            Incoming::Receiving { request, buffer } => match request.test() {
                Ok(_) => {
                    progressed = true;
                    // SAFETY: the receive completed, MPI no longer writes the buffer.
                    Incoming::Received(unsafe { buffer.reclaim() }.into_vec())
                }
                Err(request) => Incoming::Receiving { request, buffer },
            },
            received @ Incoming::Received(_) => received,
        };
    }
    progressed
}

fn start_receive(message: Message, len: usize) -> Incoming {
    let mut buffer = MpiBuffer::leak(vec![0u8; len].into_boxed_slice());
    // SAFETY: the buffer is reclaimed only after the request completed (or leaked).
    let data = unsafe { buffer.for_mpi_write() };
    let request = message.immediate_matched_receive_into(StaticScope, data);
    Incoming::Receiving { request, buffer }
}

/// Sleeps between polls: spin briefly (collectives usually complete within microseconds
/// once everyone arrived), then sleep up to 1 ms so waiting ranks leave the cores to others.
fn back_off(idle_polls: u32) {
    match idle_polls {
        0..=64 => std::thread::yield_now(),
        n => std::thread::sleep(Duration::from_micros(u64::from(n.min(1000)))),
    }
}

/// `rank` as an MPI rank; ranks come from MPI, so they always fit.
fn mpi_rank(rank: usize) -> mpi::Rank {
    mpi::Rank::try_from(rank).unwrap_or(mpi::Rank::MAX)
}
