//! The run-time borrow checker of a [`Storage`](crate::Storage): which byte ranges are being
//! read or written right now. Like a `RefCell`, but per byte range, so disjoint regions of
//! one buffer (tensors of one arena, chunks of one all-reduce) can be written at once.

use crate::{BorrowMode, Error, Result};
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// One active claim: `op` reads or writes `bytes`.
struct Claim {
    id: u64,
    op: &'static str,
    bytes: Range<usize>,
    mode: BorrowMode,
}

impl Claim {
    /// Two claims conflict iff their bytes overlap and at least one writes.
    fn conflicts(&self, bytes: &Range<usize>, mode: BorrowMode) -> bool {
        let overlap = self.bytes.start < bytes.end && bytes.start < self.bytes.end;
        overlap && (self.mode == BorrowMode::Write || mode == BorrowMode::Write)
    }
}

#[derive(Default)]
struct Active {
    next_id: u64,
    claims: Vec<Claim>,
    /// Readers blocked in `claim_waiting`: releases wake them only if there are any (a
    /// condition-variable notification is a system call even when nobody waits).
    waiting: usize,
}

/// The active claims of one storage. A kernel call takes one claim per operand, so the
/// list is short and one lock per claim costs nothing next to the kernel.
#[derive(Default)]
pub(crate) struct Claims {
    active: Mutex<Active>,
    released: Condvar,
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, Active> {
        // The lock only guards this list, which every critical section leaves consistent,
        // so a panic elsewhere while holding it cannot leave it half-updated.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `bytes` for `op`, or fails naming both ops and ranges if an active claim
    /// conflicts. Returns the id to [`release`](Self::release) it with.
    pub(crate) fn try_claim(
        &self,
        op: &'static str,
        bytes: Range<usize>,
        mode: BorrowMode,
    ) -> Result<u64> {
        let mut active = self.lock();
        if let Some(held) = active.claims.iter().find(|c| c.conflicts(&bytes, mode)) {
            return Err(Error::BorrowConflict {
                op,
                mode,
                bytes,
                held_by: held.op,
                held_mode: held.mode,
                held_bytes: held.bytes.clone(),
            });
        }
        Ok(add(&mut active, op, bytes, mode))
    }

    /// Claims `bytes` for `op`, waiting until conflicting claims are released.
    pub(crate) fn claim_waiting(
        &self,
        op: &'static str,
        bytes: Range<usize>,
        mode: BorrowMode,
    ) -> u64 {
        let mut active = self.lock();
        while active.claims.iter().any(|c| c.conflicts(&bytes, mode)) {
            active.waiting += 1;
            active = self
                .released
                .wait(active)
                .unwrap_or_else(PoisonError::into_inner);
            active.waiting -= 1;
        }
        add(&mut active, op, bytes, mode)
    }

    /// Ends the claim `id`.
    pub(crate) fn release(&self, id: u64) {
        let mut active = self.lock();
        if let Some(at) = active.claims.iter().position(|c| c.id == id) {
            active.claims.swap_remove(at);
        }
        let wake = active.waiting > 0;
        drop(active);
        if wake {
            self.released.notify_all();
        }
    }
}

fn add(active: &mut Active, op: &'static str, bytes: Range<usize>, mode: BorrowMode) -> u64 {
    let id = active.next_id;
    active.next_id += 1;
    active.claims.push(Claim {
        id,
        op,
        bytes,
        mode,
    });
    id
}
