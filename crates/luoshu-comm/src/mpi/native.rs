//! MPI's own non-blocking collectives on tensor storage, `MPI_Ialltoallv` and `MPI_Ibcast`,
//! started under the MPI lock and polled with
//! [`Backoff`] until they complete or a deadline passes.
//!
//! MPI reads and writes the tensors' storage directly (no staging copy). [`InFlight`] holds
//! a claim of every byte range MPI reads or writes ([`ForeignClaim`], which also keeps the
//! storage alive) until MPI is done with it, so a safe access of those bytes meanwhile (a
//! `Tensor::to_vec` of a buffer MPI writes) fails with a borrow conflict instead of racing.
//! A collective abandoned at its deadline leaks its claims (MPI may still touch the bytes),
//! exactly as abandoned messages leak their buffers: the bytes stay claimed for good.

use super::backoff::Backoff;
use super::runtime::{self, MpiLock};
use crate::{Error, Result};
use luoshu_tensor::{BorrowMode, Borrows, DType, ForeignClaim, Layout, Storage, Tensor};
use mpi::datatype::Equivalence;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use std::ffi::c_int;
use std::sync::Arc;
use std::time::Instant;

/// A byte range of a storage that MPI reads or writes.
#[derive(Clone)]
pub(super) struct Bytes {
    storage: Arc<Storage>,
    offset: usize,
    len: usize,
}

impl Bytes {
    /// The elements of `x`, row-major: its own storage if contiguous, else a copy.
    pub(super) fn of(x: &Tensor) -> Result<Bytes> {
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.to_contiguous()?
        };
        let width = x.dtype().size_in_bytes();
        Ok(Bytes {
            storage: x.storage().clone(),
            offset: x.layout().offset() * width,
            len: x.numel() * width,
        })
    }

    /// The bytes of `parts` as one range, without copying if they lie back to back in one
    /// storage (e.g. `narrow` views of one tensor, each contiguous), else packed into a
    /// fresh buffer.
    pub(super) fn concatenated(parts: &[Tensor]) -> Result<Bytes> {
        if let Some(bytes) = Self::adjacent(parts) {
            return Ok(bytes);
        }
        let total = parts
            .iter()
            .map(|p| p.numel() * p.dtype().size_in_bytes())
            .sum();
        let storage = Arc::new(Storage::zeroed(total));
        let mut at = 0;
        for part in parts {
            let part = Bytes::of(part)?;
            let borrows = Borrows::new();
            let dst: &mut [u8] =
                borrows.write("concatenate", &storage, DType::U8, at..at + part.len)?;
            dst.copy_from_slice(part.read(&borrows)?);
            at += part.len;
        }
        Ok(Bytes {
            storage,
            offset: 0,
            len: total,
        })
    }

    fn adjacent(parts: &[Tensor]) -> Option<Bytes> {
        let first = parts.first()?;
        let width = first.dtype().size_in_bytes();
        let mut end = first.layout().offset();
        for part in parts {
            let same = Arc::ptr_eq(part.storage(), first.storage())
                && part.dtype() == first.dtype()
                && part.is_contiguous()
                && part.layout().offset() == end;
            if !same {
                return None;
            }
            end += part.numel();
        }
        Some(Bytes {
            storage: first.storage().clone(),
            offset: first.layout().offset() * width,
            len: (end - first.layout().offset()) * width,
        })
    }

    /// A fresh buffer holding a copy of `bytes`.
    pub(super) fn copy_of(bytes: &Bytes) -> Result<Bytes> {
        let copy = Bytes::fresh(bytes.len);
        let borrows = Borrows::new();
        copy.write(&borrows)?.copy_from_slice(bytes.read(&borrows)?);
        drop(borrows);
        Ok(copy)
    }

    /// A fresh zeroed buffer of `len` bytes.
    pub(super) fn fresh(len: usize) -> Bytes {
        Bytes {
            storage: Arc::new(Storage::zeroed(len)),
            offset: 0,
            len,
        }
    }

    /// Bytes `start..start + len` of these bytes.
    pub(super) fn range(&self, start: usize, len: usize) -> Bytes {
        debug_assert!(start + len <= self.len);
        Bytes {
            storage: self.storage.clone(),
            offset: self.offset + start,
            len,
        }
    }

    /// The bytes, claimed for writing in `borrows` (between MPI operations on them).
    pub(super) fn write<'s, 'a>(&'a self, borrows: &'s Borrows<'a>) -> Result<&'s mut [u8]> {
        Ok(borrows.write("mpi buffer", &self.storage, DType::U8, self.elements())?)
    }

    /// The bytes, claimed for reading in `borrows` (between MPI operations on them).
    pub(super) fn read<'s, 'a>(&'a self, borrows: &'s Borrows<'a>) -> Result<&'s [u8]> {
        Ok(borrows.read("mpi buffer", &self.storage, DType::U8, self.elements())?)
    }

    /// Number of bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The bytes as `U8` elements of the storage.
    fn elements(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }

    /// The bytes, claimed for MPI to read or write until the claim is dropped.
    fn claim_for_mpi(&self, op: &'static str, mode: BorrowMode) -> Result<ForeignClaim> {
        let bytes = self.offset..self.offset + self.len;
        Ok(Storage::claim_for_foreign(&self.storage, op, bytes, mode)?)
    }

    /// The tensor of `dtype` and `dims` over these bytes (which must be a fresh buffer),
    /// once MPI is done with them.
    pub(super) fn into_tensor(self, dtype: DType, dims: &[usize]) -> Result<Tensor> {
        let layout = Layout::contiguous(dims.to_vec())?;
        Ok(Tensor::from_storage(self.storage, layout, dtype)?)
    }
}

/// Converts a count to MPI's `int`.
pub(super) fn count(n: usize) -> Option<c_int> {
    c_int::try_from(n).ok()
}

/// Non-blocking collectives started together, and what they use until they complete.
#[derive(Default)]
pub(super) struct InFlight {
    requests: Vec<ffi::MPI_Request>,
    /// Claims of the bytes MPI reads or writes until the requests complete.
    buffers: Vec<ForeignClaim>,
    /// Count arrays MPI may read until the requests complete.
    counts: Vec<Vec<c_int>>,
    complete: bool,
}

fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Error::Mpi(format!(
            "{what} failed with MPI error code {rc}"
        )))
    }
}

impl InFlight {
    /// Starts `MPI_Ialltoallv` in bytes: `send_counts[p]` bytes from `send_displs[p]` of
    /// `send` go to rank `p`, and `recv_counts[p]` bytes from rank `p` land at
    /// `recv_displs[p]` of `recv`.
    pub(super) fn all_to_all(
        &mut self,
        _mpi: &MpiLock,
        comm: &SimpleCommunicator,
        (send, send_counts, send_displs): (&Bytes, Vec<c_int>, Vec<c_int>),
        (recv, recv_counts, recv_displs): (&Bytes, Vec<c_int>, Vec<c_int>),
    ) -> Result<()> {
        const OP: &str = "MPI_Ialltoallv";
        let byte = u8::equivalent_datatype().as_raw();
        let reading = send.claim_for_mpi(OP, BorrowMode::Read)?;
        let writing = recv.claim_for_mpi(OP, BorrowMode::Write)?;
        let recv_ptr = writing
            .as_mut_ptr()
            .ok_or_else(|| Error::Mpi(format!("{OP}: the receive buffer is not writable")))?;
        let mut request = std::mem::MaybeUninit::uninit();
        // SAFETY: FFI under the MPI lock. The caller sized the counts and displacements to
        // lie inside `send` and `recv`. MPI reads `send` under a read claim and writes
        // `recv` under a write claim (so the two do not overlap, and nothing in Rust writes
        // the one or touches the other meanwhile); claims and arrays stay in `self` until
        // the request completes, or forever if it is abandoned.
        let rc = unsafe {
            ffi::MPI_Ialltoallv(
                reading.as_ptr().cast(),
                send_counts.as_ptr(),
                send_displs.as_ptr(),
                byte,
                recv_ptr.cast(),
                recv_counts.as_ptr(),
                recv_displs.as_ptr(),
                byte,
                comm.as_raw(),
                request.as_mut_ptr(),
            )
        };
        check(rc, OP)?;
        // SAFETY: MPI_Ialltoallv succeeded, so it initialized the request.
        self.requests.push(unsafe { request.assume_init() });
        self.buffers.extend([reading, writing]);
        self.counts
            .extend([send_counts, send_displs, recv_counts, recv_displs]);
        Ok(())
    }

    /// Starts `MPI_Ibcast` of `buffer`'s bytes from `root`: read on the root, written
    /// everywhere else.
    pub(super) fn broadcast(
        &mut self,
        _mpi: &MpiLock,
        comm: &SimpleCommunicator,
        buffer: &Bytes,
        root: usize,
    ) -> Result<()> {
        const OP: &str = "MPI_Ibcast";
        let len =
            count(buffer.len).ok_or_else(|| Error::Mpi(format!("{OP} of {} bytes", buffer.len)))?;
        let is_root = usize::try_from(comm.rank()).ok() == Some(root);
        let root = c_int::try_from(root).unwrap_or(c_int::MAX);
        // MPI only reads the buffer on the root and only writes it elsewhere; its signature
        // takes a mutable pointer for both.
        let (claim, ptr) = if is_root {
            let claim = buffer.claim_for_mpi(OP, BorrowMode::Read)?;
            let ptr = claim.as_ptr().cast_mut();
            (claim, ptr)
        } else {
            let claim = buffer.claim_for_mpi(OP, BorrowMode::Write)?;
            let ptr = claim
                .as_mut_ptr()
                .ok_or_else(|| Error::Mpi(format!("{OP}: the buffer is not writable")))?;
            (claim, ptr)
        };
        let mut request = std::mem::MaybeUninit::uninit();
        // SAFETY: FFI under the MPI lock. The claimed bytes are `len` long and the claim
        // stays in `self.buffers` until the request completes (or forever). On the root MPI
        // only reads them, under a read claim; elsewhere it writes them under a write
        // claim, so nothing in Rust touches them meanwhile.
        let rc = unsafe {
            ffi::MPI_Ibcast(
                ptr.cast(),
                len,
                u8::equivalent_datatype().as_raw(),
                root,
                comm.as_raw(),
                request.as_mut_ptr(),
            )
        };
        check(rc, OP)?;
        // SAFETY: MPI_Ibcast succeeded, so it initialized the request.
        self.requests.push(unsafe { request.assume_init() });
        self.buffers.push(claim);
        Ok(())
    }

    /// True once every request has completed (progressing them).
    fn test(&mut self, _mpi: &MpiLock) -> Result<bool> {
        let mut flag: c_int = 0;
        let n = c_int::try_from(self.requests.len()).unwrap_or(c_int::MAX);
        // SAFETY: FFI under the MPI lock on requests this struct started and has not
        // completed; MPI sets completed ones to MPI_REQUEST_NULL in place.
        let rc = unsafe {
            ffi::MPI_Testall(
                n,
                self.requests.as_mut_ptr(),
                &mut flag,
                ffi::RSMPI_STATUSES_IGNORE,
            )
        };
        check(rc, "MPI_Testall")?;
        Ok(flag != 0)
    }

    /// Polls until every request completed (true) or `deadline` passed (false; the
    /// requests are abandoned and their buffers leaked).
    pub(super) fn wait(mut self, op: &str, deadline: Instant) -> Result<bool> {
        let mut backoff = Backoff::new();
        loop {
            let done = {
                let mpi = runtime::lock(op)?;
                self.test(&mpi)?
            };
            if done {
                self.complete = true;
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            backoff.pause();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.complete && !self.requests.is_empty() {
            // MPI may still read or write these bytes: they must outlive it and stay
            // claimed, so leaking the claims keeps the storage alive and its bytes claimed.
            std::mem::forget(std::mem::take(&mut self.buffers));
            std::mem::forget(std::mem::take(&mut self.counts));
        }
    }
}
