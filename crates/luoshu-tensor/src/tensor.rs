//! The host tensor: storage, layout and dtype, with constructors, views and element access.

use crate::{Borrows, DType, Element, Error, Layout, Result, Shape, Storage};
use half::{bf16, f16};
use std::ops::Range;
use std::sync::Arc;

/// A host tensor: shared storage, a strided layout into it and an element type.
///
/// Cloning is cheap (the storage is shared); views share storage with their source.
#[derive(Clone, Debug)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
    dtype: DType,
}

impl Tensor {
    /// A view of `storage`; fails if the layout reaches outside it.
    pub fn from_storage(storage: Arc<Storage>, layout: Layout, dtype: DType) -> Result<Self> {
        let available = storage.len_elements(dtype);
        let needed = layout.storage_span();
        if needed > available {
            return Err(Error::ViewOutOfStorage {
                op: "tensor",
                needed,
                available,
            });
        }
        Ok(Tensor {
            storage,
            layout,
            dtype,
        })
    }

    /// A zero-filled contiguous tensor (all-false for `Bool`) with its own storage.
    pub fn zeros(dtype: DType, shape: impl Into<Shape>) -> Result<Self> {
        let layout = Layout::contiguous(shape)?;
        let bytes = layout
            .numel()
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| Error::SizeOverflow {
                op: "zeros",
                dims: layout.dims().to_vec(),
            })?;
        Ok(Tensor {
            storage: Arc::new(Storage::zeroed(bytes)),
            layout,
            dtype,
        })
    }

    /// A contiguous tensor holding a copy of `data` in row-major order; [`Error::ElementCount`]
    /// if `data.len()` is not the shape's element count.
    pub fn from_slice<T: Element>(data: &[T], shape: impl Into<Shape>) -> Result<Self> {
        let layout = Layout::contiguous(shape)?;
        if layout.numel() != data.len() {
            return Err(Error::ElementCount {
                op: "from_slice",
                shape: layout.dims().to_vec(),
                count: data.len(),
                expected: layout.numel(),
            });
        }
        Ok(Tensor {
            storage: Arc::new(Storage::from_slice(data)),
            layout,
            dtype: T::DTYPE,
        })
    }

    /// Like [`Tensor::from_slice`], from an owned vector.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Self> {
        Self::from_slice(&data, shape)
    }

    /// A boolean tensor (stored one byte per element).
    pub fn from_bools(data: &[bool], shape: impl Into<Shape>) -> Result<Self> {
        let bytes: Vec<u8> = data.iter().map(|&b| b as u8).collect();
        let t = Self::from_slice(&bytes, shape)?;
        Ok(Tensor {
            dtype: DType::Bool,
            ..t
        })
    }

    /// Build a tensor of any dtype from f64 values (rounded like a numeric cast).
    pub fn from_f64(values: &[f64], dtype: DType, shape: impl Into<Shape>) -> Result<Self> {
        fn conv<T: Element>(v: &[f64]) -> Vec<T> {
            v.iter().map(|&x| T::from_f64(x)).collect()
        }
        match dtype {
            DType::F64 => Self::from_vec(values.to_vec(), shape),
            DType::F32 => Self::from_vec(conv::<f32>(values), shape),
            DType::BF16 => Self::from_vec(conv::<bf16>(values), shape),
            DType::F16 => Self::from_vec(conv::<f16>(values), shape),
            DType::I64 => Self::from_vec(conv::<i64>(values), shape),
            DType::I32 => Self::from_vec(conv::<i32>(values), shape),
            DType::U8 => Self::from_vec(conv::<u8>(values), shape),
            DType::Bool => {
                let b: Vec<bool> = values.iter().map(|&x| x != 0.0).collect();
                Self::from_bools(&b, shape)
            }
        }
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar<T: Element>(value: T) -> Self {
        Tensor {
            storage: Arc::new(Storage::from_slice(&[value])),
            layout: Layout::contiguous(Shape::scalar()).expect("a scalar shape is valid"),
            dtype: T::DTYPE,
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Shape, strides and offset into the storage.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Logical shape.
    pub fn shape(&self) -> &Shape {
        self.layout.shape()
    }
    /// Logical extents, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.layout.dims()
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }
    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }
    /// The storage shared with every view of this tensor.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }
    /// True when the elements are row-major without gaps (see [`Layout::is_contiguous`]).
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The storage elements `[offset, storage_span)` the tensor can touch (empty for an
    /// empty tensor): the region a reader or writer of the whole tensor claims.
    pub fn element_range(&self) -> Range<usize> {
        let start = self.layout.offset();
        start..self.layout.storage_span().max(start)
    }

    /// Elements in logical row-major order; fails if `T` is not this tensor's element type
    /// or if a kernel is writing the tensor's region right now ([`Error::BorrowConflict`]).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let borrows = Borrows::new();
        let region = self.element_range();
        let data: &[T] = borrows.read("to_vec", &self.storage, self.dtype, region.clone())?;
        if self.layout.is_contiguous() {
            return Ok(data[..self.numel()].to_vec());
        }
        Ok(self
            .layout
            .offsets()
            .map(|o| data[o - region.start])
            .collect())
    }

    /// Elements in logical order converted to f64, whatever the dtype. Waits for a kernel
    /// writing the tensor's region to finish rather than failing.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        fn conv<T: Element>(t: &Tensor) -> Vec<f64> {
            let borrows = Borrows::new();
            let region = t.element_range();
            // Cannot fail: `T` is the dtype's storage type (the match below) and the layout
            // was checked against the storage when the tensor was built.
            let read = borrows.read_waiting::<T>("to_f64_vec", &t.storage, t.dtype, region.clone());
            read.map(|data| {
                t.layout
                    .offsets()
                    .map(|o| data[o - region.start].to_f64())
                    .collect()
            })
            .unwrap_or_default()
        }
        match self.dtype.storage_dtype() {
            DType::F64 => conv::<f64>(self),
            DType::F32 => conv::<f32>(self),
            DType::BF16 => conv::<bf16>(self),
            DType::F16 => conv::<f16>(self),
            DType::I64 => conv::<i64>(self),
            DType::I32 => conv::<i32>(self),
            _ => conv::<u8>(self),
        }
    }

    /// A contiguous copy with its own storage (host-side; backends have their own copy).
    pub fn to_contiguous(&self) -> Result<Tensor> {
        let out = Tensor::zeros(self.dtype, self.shape().clone())?;
        let n = self.dtype.size_in_bytes();
        let region = self.element_range();
        let borrows = Borrows::new();
        let bytes = |r: Range<usize>| r.start * n..r.end * n;
        let src: &[u8] = borrows.read(
            "to_contiguous",
            &self.storage,
            DType::U8,
            bytes(region.clone()),
        )?;
        let dst: &mut [u8] = borrows.write(
            "to_contiguous",
            &out.storage,
            DType::U8,
            bytes(out.element_range()),
        )?;
        for (i, o) in self.layout.offsets().enumerate() {
            let at = (o - region.start) * n;
            dst[i * n..(i + 1) * n].copy_from_slice(&src[at..at + n]);
        }
        drop(borrows);
        Ok(out)
    }

    /// The same storage seen through another layout (checked against the storage size).
    pub fn with_layout(&self, layout: Layout) -> Result<Tensor> {
        Tensor::from_storage(self.storage.clone(), layout, self.dtype)
    }

    /// A view with another shape of the same element count; [`Error::ReshapeNeedsCopy`] when no
    /// strides over the same storage express it (call [`Tensor::to_contiguous`] first).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        self.with_layout(self.layout.reshape(shape)?)
    }
    /// A view with the dimensions reordered (see [`Layout::permute`]).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        self.with_layout(self.layout.permute(perm)?)
    }
    /// A view with dimensions `a` and `b` swapped.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        self.with_layout(self.layout.transpose(a, b)?)
    }
    /// A view of every `step`-th element of `start..end` along `dim` (see [`Layout::slice`]).
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        self.with_layout(self.layout.slice(dim, start, end, step)?)
    }
    /// A view of the `len` elements from `start` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        self.with_layout(self.layout.narrow(dim, start, len)?)
    }
    /// A view broadcast to `shape` by NumPy rules; expanded dimensions have stride 0, so
    /// their logical elements share one storage element.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        self.with_layout(self.layout.broadcast_to(shape)?)
    }
    /// A view without dimension `dim`, which must have extent 1.
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        self.with_layout(self.layout.squeeze(dim)?)
    }
    /// A view with an extent-1 dimension inserted before `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        self.with_layout(self.layout.unsqueeze(dim)?)
    }

    /// Byte range `[start, end)` of storage this tensor can touch.
    fn byte_range(&self) -> (usize, usize) {
        let base = self.storage.base_address();
        let n = self.dtype.size_in_bytes();
        if self.numel() == 0 {
            return (base, base);
        }
        (
            base + self.layout.offset() * n,
            base + self.layout.storage_span() * n,
        )
    }

    /// True if the two tensors may touch the same bytes (conservative: compares the spans).
    pub fn overlaps(&self, other: &Tensor) -> bool {
        let (a0, a1) = self.byte_range();
        let (b0, b1) = other.byte_range();
        a0 < b1 && b0 < a1
    }

    /// True if both are the same contiguous region with the same shape and dtype size,
    /// the one form of aliasing elementwise kernels accept (in-place update).
    pub fn same_region(&self, other: &Tensor) -> bool {
        self.is_contiguous()
            && other.is_contiguous()
            && self.byte_range() == other.byte_range()
            && self.dims() == other.dims()
    }
}
