//! Byte buffers handed to MPI: leaked boxes, since MPI may read or write them for as long
//! as the request lives, which after a timeout can be forever. They are reclaimed when the
//! request completes and stay leaked if it never does.

use std::ptr::NonNull;

/// A leaked byte buffer that MPI reads or writes while a request is in flight.
pub(super) struct MpiBuffer(NonNull<[u8]>);

impl MpiBuffer {
    pub(super) fn leak(bytes: Box<[u8]>) -> Self {
        MpiBuffer(NonNull::from(Box::leak(bytes)))
    }

    /// The bytes for a request to read.
    ///
    /// # Safety
    /// The buffer must not be reclaimed while the returned reference is used by MPI.
    pub(super) unsafe fn for_mpi_read(&self) -> &'static [u8] {
        // SAFETY: the allocation is leaked, so it lives until `reclaim`, which the caller
        // defers until the request completed; nothing writes it meanwhile.
        unsafe { self.0.as_ref() }
    }

    /// The bytes for a request to write.
    ///
    /// # Safety
    /// As [`MpiBuffer::for_mpi_read`], and no other reference to the bytes may exist.
    pub(super) unsafe fn for_mpi_write(&mut self) -> &'static mut [u8] {
        // SAFETY: as in `for_mpi_read`; the request is the only user of the bytes.
        unsafe { self.0.as_mut() }
    }

    /// Takes the bytes back.
    ///
    /// # Safety
    /// The request that used the buffer must have completed.
    pub(super) unsafe fn reclaim(self) -> Box<[u8]> {
        // SAFETY: the pointer came from `Box::leak` in `leak` and is reclaimed once, after
        // MPI stopped using it (caller's promise).
        unsafe { Box::from_raw(self.0.as_ptr()) }
    }
}
