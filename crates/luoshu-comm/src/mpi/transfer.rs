//! Non-blocking receives of whole messages (probe, then receive) polled until a deadline.
//! (Sends are posted and completed by the runtime, which keeps them until MPI is done.)

use super::backoff::Backoff;
use super::buffer::MpiBuffer;
use super::runtime::{self, MpiLock};
use crate::Result;
use mpi::datatype::Equivalence;
use mpi::point_to_point::{Message, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::Tag;
use std::time::Instant;

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
    let mut backoff = Backoff::new();
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
        if progressed {
            backoff.progressed();
        }
        backoff.pause();
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

/// `rank` as an MPI rank; ranks come from MPI, so they always fit.
pub(super) fn mpi_rank(rank: usize) -> mpi::Rank {
    mpi::Rank::try_from(rank).unwrap_or(mpi::Rank::MAX)
}
