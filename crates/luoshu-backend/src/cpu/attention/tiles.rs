//! Shared pieces of the attention kernels: head-major views of strided inputs, tile loads
//! into the compute precision, and the tile sizes.

pub(super) use crate::cpu::fast_exp::vectorized;
use crate::cpu::fast_exp::ExpSlice;
use crate::cpu::matmul::{GemmScalar, Strided};
pub(super) use crate::cpu::rows::lane_max;
use crate::cpu::rows::Float;
use crate::{Error, Result};
use luoshu_tensor::{Borrows, Tensor};
use std::any::TypeId;

/// Query rows per tile.
pub(super) const BLOCK_Q: usize = 128;
/// Key rows per tile.
pub(super) const BLOCK_K: usize = 128;

/// The precision attention computes in (f32, or f64 for f64 inputs): gemm-capable, with a
/// slice `exp` that vectorizes.
pub(super) trait Compute: GemmScalar + ExpSlice {}

impl<A: GemmScalar + ExpSlice> Compute for A {}

/// A `[batch, heads, seq, dim]` tensor whose last dimension is contiguous, as strides.
#[derive(Clone, Copy, Debug)]
pub(super) struct Heads {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub dim: usize,
    strides: [usize; 3],
}

impl Heads {
    pub fn of(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Heads> {
        let (dims, strides) = (t.dims(), t.layout().strides());
        if dims.len() != 4 || (dims[3] > 1 && strides[3] != 1) {
            return Err(Error::BadLayout {
                op,
                arg,
                requirement: "a [batch, heads, seq, dim] view with a contiguous last dim",
                dims: dims.to_vec(),
                strides: strides.to_vec(),
            });
        }
        Ok(Heads {
            batch: dims[0],
            heads: dims[1],
            seq: dims[2],
            dim: dims[3],
            strides: [strides[0], strides[1], strides[2]],
        })
    }

    /// Index of element `[b, h, s, 0]` in the tensor's region (see [`input`]).
    pub fn row(&self, b: usize, h: usize, s: usize) -> usize {
        b * self.strides[0] + h * self.strides[1] + s * self.strides[2]
    }
}

/// The storage region of an input tensor (from its first element), claimed for reading.
pub(super) fn input<'s, 'a, T: Float>(borrows: &'s Borrows<'a>, t: &'a Tensor) -> Result<&'s [T]> {
    Ok(borrows.read("attention", t.storage(), t.dtype(), t.element_range())?)
}

/// Rows `s0..s0 + rows` of head `(b, h)` into `dst` (row-major, `view.dim` wide),
/// converted to the compute precision.
pub(super) fn load_rows<T: Float>(
    data: &[T],
    view: &Heads,
    (b, h): (usize, usize),
    s0: usize,
    rows: usize,
    dst: &mut Vec<T::Acc>,
) {
    dst.clear();
    for s in s0..s0 + rows {
        let start = view.row(b, h, s);
        dst.extend(data[start..start + view.dim].iter().map(|&x| x.load()));
    }
}

/// Rows of one head as a gemm operand: row `i` starts at `data[offset + i * stride]` and its
/// elements are contiguous.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a, A> {
    data: &'a [A],
    offset: usize,
    stride: usize,
}

impl<'a, A> Rows<'a, A> {
    /// The rows from row `i` on.
    pub fn skip(self, i: usize) -> Rows<'a, A> {
        Rows {
            offset: self.offset + i * self.stride,
            ..self
        }
    }

    /// The rows as a matrix (one row per row).
    pub fn matrix(self) -> Strided<'a, A> {
        Strided {
            data: self.data,
            offset: self.offset,
            rs: self.stride,
            cs: 1,
        }
    }

    /// The rows as the columns of a matrix (its transpose).
    pub fn transposed(self) -> Strided<'a, A> {
        Strided {
            data: self.data,
            offset: self.offset,
            rs: 1,
            cs: self.stride,
        }
    }
}

/// Rows `s0..s0 + rows` of head `(b, h)` in the compute precision: the input itself when it
/// already is in that precision (f32, f64: gemm reads it in place, no copy), else converted
/// into `scratch`.
pub(super) fn rows_of<'a, T: Float>(
    data: &'a [T],
    view: &Heads,
    (b, h): (usize, usize),
    (s0, rows): (usize, usize),
    scratch: &'a mut Vec<T::Acc>,
) -> Rows<'a, T::Acc>
where
    T::Acc: Compute,
{
    let same_precision = TypeId::of::<T>() == TypeId::of::<T::Acc>();
    match bytemuck::try_cast_slice::<T, T::Acc>(data) {
        Ok(data) if same_precision => Rows {
            data,
            offset: view.row(b, h, s0),
            stride: view.strides[2],
        },
        _ => {
            load_rows(data, view, (b, h), s0, rows, scratch);
            Rows {
                data: scratch,
                offset: 0,
                stride: view.dim,
            }
        }
    }
}

/// A row-major `cols`-wide matrix in a slice, as a gemm operand (`transposed` reads it as
/// its transpose).
pub(super) fn row_major<A>(data: &[A], cols: usize, transposed: bool) -> Strided<'_, A> {
    let (rs, cs) = if transposed { (1, cols) } else { (cols, 1) };
    Strided {
        data,
        offset: 0,
        rs,
        cs,
    }
}
