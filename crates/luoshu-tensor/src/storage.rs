//! Host storage shared by tensor views, and the checked borrows through which kernels read
//! and write it.

use crate::claims::Claims;
use crate::{BorrowMode, DType, Element, Error, Result};
use std::cell::RefCell;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

/// One 64-byte block: storage is built from these so every buffer is cache-line aligned and
/// can be viewed as a slice of any element type.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// A host memory buffer shared by every view of it.
///
/// Kernels write their outputs into storage they receive by shared reference (outputs come
/// from the memory planner, not from the kernel), so the bytes are reached through a raw
/// pointer and every access is checked at run time: a [`Borrows`] scope claims exactly the
/// region it reads or writes, and a claim that overlaps an active claim of another writer
/// (or a write that overlaps an active reader) fails with [`Error::BorrowConflict`] instead
/// of racing. Disjoint regions of one storage can be written at the same time.
pub struct Storage {
    /// Owned allocation of `blocks` blocks (from `Box::into_raw`, freed in `Drop`). A raw
    /// pointer rather than a `Box` so that writers never assert uniqueness over the whole
    /// buffer while other regions of it are being read.
    ptr: NonNull<Block>,
    blocks: usize,
    bytes: usize,
    claims: Claims,
}

// SAFETY: every safe access to the bytes goes through `Borrows`, whose claims (behind a
// mutex) make concurrent access follow the aliasing rules: overlapping regions are either
// all read, or held by one writer alone.
unsafe impl Sync for Storage {}
// SAFETY: the storage owns its bytes; moving it between threads moves plain memory.
unsafe impl Send for Storage {}

impl Storage {
    /// Zero-initialized storage of `bytes` bytes.
    pub fn zeroed(bytes: usize) -> Self {
        let boxed = vec![Block([0; 64]); bytes.div_ceil(64)].into_boxed_slice();
        let blocks = boxed.len();
        let raw: *mut Block = Box::into_raw(boxed).cast();
        Storage {
            ptr: NonNull::new(raw).unwrap_or(NonNull::dangling()),
            blocks,
            bytes,
            claims: Claims::default(),
        }
    }

    /// Storage holding a copy of `data`.
    pub fn from_slice<T: Element>(data: &[T]) -> Self {
        let storage = Storage::zeroed(std::mem::size_of_val(data));
        let borrows = Borrows::new();
        // The storage was just created, so no claim can conflict and the dtype matches.
        if let Ok(dst) = borrows.write::<T>("from_slice", &storage, T::DTYPE, 0..data.len()) {
            dst.copy_from_slice(data);
        }
        drop(borrows);
        storage
    }

    /// Size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Number of elements of `dtype` the storage can hold.
    pub fn len_elements(&self, dtype: DType) -> usize {
        self.bytes / dtype.size_in_bytes()
    }

    /// Address of the first byte, to detect whether two tensors share memory.
    pub fn base_address(&self) -> usize {
        self.blocks_ptr() as usize
    }

    /// Claims bytes `bytes` of `storage` for foreign code (MPI) that reads or writes them
    /// outside Rust, for as long as the returned claim lives, which keeps the storage alive.
    /// The claim is checked like a [`Borrows`] claim: it fails with
    /// [`Error::BorrowConflict`] if an active claim conflicts, and while it is held every
    /// conflicting claim (a `Tensor::to_vec` of a region foreign code writes, say) fails.
    /// Foreign code reaches the bytes only through [`ForeignClaim::as_ptr`] /
    /// [`ForeignClaim::as_mut_ptr`]. Dropping the claim releases it; a claim that is never
    /// dropped (leaked, because foreign code may still use the bytes) keeps them claimed.
    pub fn claim_for_foreign(
        storage: &Arc<Storage>,
        op: &'static str,
        bytes: Range<usize>,
        mode: BorrowMode,
    ) -> Result<ForeignClaim> {
        if bytes.start > bytes.end || bytes.end > storage.bytes {
            return Err(Error::ViewOutOfStorage {
                op,
                needed: bytes.end.max(bytes.start),
                available: storage.bytes,
            });
        }
        let id = storage.claims.try_claim(op, bytes.clone(), mode)?;
        Ok(ForeignClaim {
            storage: Arc::clone(storage),
            id,
            bytes,
            mode,
        })
    }

    /// Checks `T` against `dtype` and `elements` against the storage; returns the byte range.
    fn byte_range<T: Element>(
        &self,
        op: &'static str,
        dtype: DType,
        elements: &Range<usize>,
    ) -> Result<Range<usize>> {
        if dtype.storage_dtype() != T::DTYPE {
            return Err(Error::DTypeMismatch {
                op,
                expected: dtype,
                got: T::DTYPE,
            });
        }
        let available = self.len_elements(dtype);
        if elements.start > elements.end || elements.end > available {
            return Err(Error::ViewOutOfStorage {
                op,
                needed: elements.end.max(elements.start),
                available,
            });
        }
        let size = std::mem::size_of::<T>();
        Ok(elements.start * size..elements.end * size)
    }

    fn blocks_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }
}

/// A scope of checked borrows of storage regions, released together when it is dropped.
///
/// Each [`read`](Borrows::read) or [`write`](Borrows::write) claims its element range of a
/// storage and returns a plain slice that lives as long as the scope's borrow, so kernels
/// can hand slices to worker threads. A conflicting claim (overlapping bytes, at least one
/// writer) fails with [`Error::BorrowConflict`] naming both ops and byte ranges. Claims
/// are per byte range, so disjoint regions of one storage can be written by different
/// scopes (threads) at once.
pub struct Borrows<'a> {
    held: RefCell<Vec<(&'a Storage, u64)>>,
}

impl Default for Borrows<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Borrows<'a> {
    /// An empty scope.
    pub fn new() -> Self {
        Borrows {
            held: RefCell::new(Vec::new()),
        }
    }

    /// Elements `elements` of `storage` (of element type `dtype`) for reading by `op`.
    /// Fails if the region is outside the storage, `T` is not `dtype`'s element type, or an
    /// active claim writes an overlapping region.
    pub fn read<T: Element>(
        &self,
        op: &'static str,
        storage: &'a Storage,
        dtype: DType,
        elements: Range<usize>,
    ) -> Result<&[T]> {
        let ptr = self.claim::<T>(op, storage, dtype, &elements, Wait::No, BorrowMode::Read)?;
        // SAFETY: the region is inside the allocation and aligned for `T` (blocks are
        // 64-byte aligned, the offset is a multiple of `size_of::<T>()`); the read claim,
        // held until this scope drops (which the returned borrow of `self` outlasts), rules
        // out any writer of these bytes meanwhile.
        Ok(unsafe { std::slice::from_raw_parts(ptr, elements.len()) })
    }

    /// As [`read`](Borrows::read), but waits for conflicting writers to finish instead of
    /// failing (for callers that cannot report an error, such as `Tensor::to_f64_vec`).
    pub fn read_waiting<T: Element>(
        &self,
        op: &'static str,
        storage: &'a Storage,
        dtype: DType,
        elements: Range<usize>,
    ) -> Result<&[T]> {
        let ptr = self.claim::<T>(op, storage, dtype, &elements, Wait::Yes, BorrowMode::Read)?;
        // SAFETY: as in `read`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, elements.len()) })
    }

    /// Elements `elements` of `storage` for writing by `op`. Fails like
    /// [`read`](Borrows::read), or if any active claim (read or write) overlaps the region.
    // A `&mut` from `&self` is the point of the scope: exclusivity comes from the claim,
    // not from the borrow of the scope.
    #[allow(clippy::mut_from_ref)]
    pub fn write<T: Element>(
        &self,
        op: &'static str,
        storage: &'a Storage,
        dtype: DType,
        elements: Range<usize>,
    ) -> Result<&mut [T]> {
        let ptr = self.claim::<T>(op, storage, dtype, &elements, Wait::No, BorrowMode::Write)?;
        // SAFETY: in bounds and aligned as in `read`; the write claim, held until this scope
        // drops, rules out every other reader and writer of these bytes meanwhile, so this
        // is the only reference to them.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, elements.len()) })
    }

    /// Checks the region, claims it in `mode` (failing on a conflict, or waiting it out),
    /// holds the claim until this scope drops, and returns the region's first element.
    fn claim<T: Element>(
        &self,
        op: &'static str,
        storage: &'a Storage,
        dtype: DType,
        elements: &Range<usize>,
        wait: Wait,
        mode: BorrowMode,
    ) -> Result<*mut T> {
        let bytes = storage.byte_range::<T>(op, dtype, elements)?;
        let id = match wait {
            Wait::No => storage.claims.try_claim(op, bytes.clone(), mode)?,
            Wait::Yes => storage.claims.claim_waiting(op, bytes.clone(), mode),
        };
        self.held.borrow_mut().push((storage, id));
        Ok(region_ptr::<T>(storage, &bytes))
    }
}

/// What a claim does when an active claim conflicts with it.
#[derive(Clone, Copy)]
enum Wait {
    /// Fail with [`Error::BorrowConflict`].
    No,
    /// Wait until the conflicting claims are released.
    Yes,
}

impl Drop for Borrows<'_> {
    fn drop(&mut self) {
        for (storage, id) in self.held.get_mut().drain(..) {
            storage.claims.release(id);
        }
    }
}

/// A claim of a storage's byte range held by foreign code (MPI's non-blocking collectives)
/// rather than by a [`Borrows`] scope: made by [`Storage::claim_for_foreign`], released when
/// dropped. The only way to the storage's address, so every foreign access is claimed.
pub struct ForeignClaim {
    storage: Arc<Storage>,
    id: u64,
    bytes: Range<usize>,
    mode: BorrowMode,
}

impl ForeignClaim {
    /// The first claimed byte, for foreign code to read the claimed bytes through while the
    /// claim lives.
    pub fn as_ptr(&self) -> *const u8 {
        region_ptr::<u8>(&self.storage, &self.bytes).cast_const()
    }

    /// The first claimed byte, for foreign code to write the claimed bytes through while
    /// the claim lives; `None` for a read claim.
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        (self.mode == BorrowMode::Write).then(|| region_ptr::<u8>(&self.storage, &self.bytes))
    }

    /// Number of claimed bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if no byte is claimed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether the claim reads or writes.
    pub fn mode(&self) -> BorrowMode {
        self.mode
    }
}

impl Drop for ForeignClaim {
    fn drop(&mut self) {
        self.storage.claims.release(self.id);
    }
}

impl std::fmt::Debug for ForeignClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ForeignClaim({:?} bytes {:?} of {:?})",
            self.mode, self.bytes, self.storage
        )
    }
}

/// Pointer to the first byte of `bytes` (checked to lie inside the storage) as `*mut T`.
fn region_ptr<T>(storage: &Storage, bytes: &Range<usize>) -> *mut T {
    storage.blocks_ptr().wrapping_add(bytes.start).cast()
}

impl Drop for Storage {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.blocks);
        // SAFETY: `ptr`/`blocks` came from `Box::into_raw` of a `Box<[Block]>` of that length
        // in `zeroed`, and are freed exactly once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} bytes)", self.bytes)
    }
}
