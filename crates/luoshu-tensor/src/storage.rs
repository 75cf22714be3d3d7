use crate::{DType, Element, Error, Result};
use std::ptr::NonNull;

/// One 64-byte block: storage is built from these so every buffer is cache-line aligned and
/// can be viewed as a slice of any element type.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// A host memory buffer shared by every view of it.
///
/// Kernels write their outputs into storage they receive by shared reference (outputs come
/// from the memory planner, not from the kernel), so the bytes are reached through a raw
/// pointer; kernels take slices of exactly the regions they touch ([`Storage::region`]).
/// The contract for writers: a kernel may take a mutable slice only of an output tensor, and
/// the backend checks before every call that no input overlaps an output region it writes
/// (except the documented in-place ops). Readers never observe a write in progress because
/// a kernel call finishes before its output is handed to a consumer.
pub struct Storage {
    /// Owned allocation of `blocks` blocks (from `Box::into_raw`, freed in `Drop`). A raw
    /// pointer rather than a `Box` so that writers never assert uniqueness over the whole
    /// buffer while other regions of it are being read.
    ptr: NonNull<Block>,
    blocks: usize,
    bytes: usize,
}

// SAFETY: access to the bytes follows the writer contract above: concurrent kernels only read
// shared inputs, and each output region has exactly one writer at a time.
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
            ptr: NonNull::new(raw).expect("Box::into_raw never returns null"),
            blocks,
            bytes,
        }
    }

    pub fn from_slice<T: Element>(data: &[T]) -> Self {
        let storage = Storage::zeroed(std::mem::size_of_val(data));
        // SAFETY: the storage was just created and is not shared yet.
        unsafe { storage.slice_mut::<T>() }.copy_from_slice(data);
        storage
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Number of elements of `dtype` the storage can hold.
    pub fn len_elements(&self, dtype: DType) -> usize {
        self.bytes / dtype.size_in_bytes()
    }

    fn check<T: Element>(&self, dtype: DType) -> Result<()> {
        if dtype.storage_dtype() != T::DTYPE {
            return Err(Error::DTypeMismatch {
                op: "storage access",
                expected: dtype,
                got: T::DTYPE,
            });
        }
        Ok(())
    }

    /// The bytes as a slice of `T`.
    ///
    /// # Safety
    /// No mutable slice of an overlapping region may exist while the returned slice lives.
    pub unsafe fn slice<T: Element>(&self) -> &[T] {
        let bytes = self.bytes;
        // SAFETY: blocks are 64-byte aligned and hold at least `bytes` bytes; the caller
        // guarantees no concurrent writer of this region.
        let all: &[u8] = unsafe { std::slice::from_raw_parts(self.blocks_ptr(), bytes) };
        bytemuck::cast_slice(&all[..bytes - bytes % std::mem::size_of::<T>()])
    }

    /// The bytes as a mutable slice of `T`.
    ///
    /// # Safety
    /// The caller must be the only reader or writer of the region it touches while the
    /// returned slice lives (see the writer contract on [`Storage`]).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut<T: Element>(&self) -> &mut [T] {
        let bytes = self.bytes;
        // SAFETY: as in `slice`; exclusivity of the touched region is the caller's promise.
        let all: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(self.blocks_ptr(), bytes) };
        let usable = bytes - bytes % std::mem::size_of::<T>();
        bytemuck::cast_slice_mut(&mut all[..usable])
    }

    /// Typed read access with a dtype check.
    ///
    /// # Safety
    /// As [`Storage::slice`].
    pub unsafe fn typed<T: Element>(&self, dtype: DType) -> Result<&[T]> {
        self.check::<T>(dtype)?;
        // SAFETY: forwarded from the caller.
        Ok(unsafe { self.slice() })
    }

    /// Typed write access with a dtype check.
    ///
    /// # Safety
    /// As [`Storage::slice_mut`].
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn typed_mut<T: Element>(&self, dtype: DType) -> Result<&mut [T]> {
        self.check::<T>(dtype)?;
        // SAFETY: forwarded from the caller.
        Ok(unsafe { self.slice_mut() })
    }

    /// Elements `[offset, offset + len)` as a slice of `T`, without forming a reference to
    /// the rest of the storage (so disjoint regions of one arena can be read and written
    /// at the same time). Fails if the region is outside the storage or `T` is not `dtype`'s
    /// element type.
    ///
    /// # Safety
    /// No mutable slice of an overlapping region may exist while the returned slice lives.
    pub unsafe fn region<T: Element>(
        &self,
        dtype: DType,
        offset: usize,
        len: usize,
    ) -> Result<&[T]> {
        let ptr = self.region_ptr::<T>(dtype, offset, len)?;
        // SAFETY: in bounds and aligned (checked by `region_ptr`); no overlapping writer
        // (caller's promise).
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Mutable twin of [`Storage::region`].
    ///
    /// # Safety
    /// No other slice of an overlapping region may exist while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn region_mut<T: Element>(
        &self,
        dtype: DType,
        offset: usize,
        len: usize,
    ) -> Result<&mut [T]> {
        let ptr = self.region_ptr::<T>(dtype, offset, len)?;
        // SAFETY: in bounds and aligned (checked by `region_ptr`); exclusive (caller's promise).
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    fn region_ptr<T: Element>(&self, dtype: DType, offset: usize, len: usize) -> Result<*mut T> {
        self.check::<T>(dtype)?;
        let available = self.len_elements(dtype);
        match offset.checked_add(len) {
            Some(end) if end <= available => {}
            _ => {
                return Err(Error::ViewOutOfStorage {
                    op: "storage region",
                    needed: offset.saturating_add(len),
                    available,
                })
            }
        }
        let base: *mut T = self.blocks_ptr().cast();
        // SAFETY: `offset + len <= available`, so the pointer stays inside the allocation.
        Ok(unsafe { base.add(offset) })
    }

    fn blocks_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Address of the first byte, to detect whether two tensors share memory.
    pub fn base_address(&self) -> usize {
        self.blocks_ptr() as usize
    }
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
