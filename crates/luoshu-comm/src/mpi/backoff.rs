//! Pacing the polls of a non-blocking wait.

use std::time::{Duration, Instant};

/// How long a wait polls back to back after its last progress.
const BUSY_FOR: Duration = Duration::from_millis(2);
/// The longest pause between polls once backed off.
const MAX_PAUSE_MICROS: u64 = 64;

/// Paces the polls of a wait: for the first [`BUSY_FOR`] after the last progress it polls
/// back to back, as `MPI_Wait` does (operations usually complete within microseconds to a
/// millisecond once everyone arrived, and MPI's collectives only advance while polled; on a
/// loaded machine even `sched_yield` between polls cost 10–20× at 4 MiB, because the yielding
/// rank loses its core to other processes for whole time slices), then sleeps 1 µs, doubling
/// every 8 polls up to [`MAX_PAUSE_MICROS`], so ranks that wait long for a slow peer leave the
/// cores to others while adding at most tens of microseconds of latency. (Linux rounds short
/// sleeps up by its timer slack, about 50 µs for ordinary threads.)
pub(super) struct Backoff {
    since: Instant,
    /// Still in the first [`BUSY_FOR`].
    busy: bool,
    polls: u32,
    idle_polls: u32,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            since: Instant::now(),
            busy: true,
            polls: 0,
            idle_polls: 0,
        }
    }

    /// The last poll advanced something: spin again.
    pub(super) fn progressed(&mut self) {
        *self = Backoff::new();
    }

    /// Pauses before the next poll.
    pub(super) fn pause(&mut self) {
        // Reading the clock costs about as much as a poll: look at it every 16th time.
        self.polls = self.polls.wrapping_add(1);
        if self.busy && (!self.polls.is_multiple_of(16) || self.since.elapsed() < BUSY_FOR) {
            std::hint::spin_loop();
            return;
        }
        self.busy = false;
        let doublings = (self.idle_polls / 8).min(6);
        self.idle_polls = self.idle_polls.saturating_add(1);
        let pause = (1u64 << doublings).min(MAX_PAUSE_MICROS);
        std::thread::sleep(Duration::from_micros(pause));
    }
}
