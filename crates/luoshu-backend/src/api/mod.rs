//! [`Ops`]: the validated entry point to a backend. Every call checks shapes, dtypes,
//! layouts and aliasing and returns an error naming the op and the offending arguments;
//! only then does it call the backend's kernel. The allocating forms (`ops.add(a, b)`)
//! allocate their outputs; the `_into` forms write into caller-provided outputs, which is
//! what the executor uses with planner-owned buffers.

mod elementwise;
mod fused;
mod indexing;
mod matmul;
mod nn;
mod reduce;

use crate::{Backend, Error, Result};
use luoshu_tensor::{DType, Shape, Tensor};

/// Validated access to a backend's kernels.
#[derive(Clone, Copy)]
pub struct Ops<'a> {
    backend: &'a dyn Backend,
}

impl<'a> Ops<'a> {
    /// Validating access to `backend`'s kernels.
    pub fn new(backend: &'a dyn Backend) -> Self {
        Ops { backend }
    }

    /// The backend whose kernels are called, for what [`Ops`] does not wrap.
    pub fn backend(&self) -> &'a dyn Backend {
        self.backend
    }

    /// A zero-filled contiguous tensor.
    pub fn alloc(&self, dtype: DType, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims);
        shape.checked_numel().and_then(|n| {
            n.checked_mul(dtype.size_in_bytes())
                .ok_or(luoshu_tensor::Error::SizeOverflow {
                    op: "alloc",
                    dims: dims.to_vec(),
                })
        })?;
        self.backend.alloc(dtype, &shape)
    }

    /// `dst = src` (same shape and dtype; `src` any view, `dst` contiguous).
    pub fn copy_into(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        check_out("copy", "dst", dst, src.dtype(), src.dims())?;
        check_no_overlap("copy", "dst", dst, &[src])?;
        self.backend.copy(src, dst)
    }

    /// `x` itself if contiguous, else a contiguous copy.
    pub fn contiguous(&self, x: &Tensor) -> Result<Tensor> {
        if x.is_contiguous() {
            return Ok(x.clone());
        }
        let out = self.alloc(x.dtype(), x.dims())?;
        self.backend.copy(x, &out)?;
        Ok(out)
    }

    /// `x` viewed as `dims`, copying first if its strides cannot express the new shape.
    pub fn reshape(&self, x: &Tensor, dims: &[usize]) -> Result<Tensor> {
        match x.reshape(dims) {
            Ok(view) => Ok(view),
            Err(luoshu_tensor::Error::ReshapeNeedsCopy { .. }) => {
                Ok(self.contiguous(x)?.reshape(dims)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets every element of the contiguous `out` to `value` (converted like a numeric cast).
    pub fn fill_into(&self, value: f64, out: &Tensor) -> Result<()> {
        check_contiguous("fill", "out", out)?;
        self.backend.fill(value, out)
    }

    /// A tensor of `dims` with every element `value`.
    pub fn full(&self, value: f64, dtype: DType, dims: &[usize]) -> Result<Tensor> {
        let out = self.alloc(dtype, dims)?;
        if value != 0.0 {
            self.backend.fill(value, &out)?;
        }
        Ok(out)
    }

    /// `out = x` converted to `out`'s dtype (see [`Backend::cast`] for rounding); same shape,
    /// `out` contiguous and not overlapping `x`.
    pub fn cast_into(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        check_out("cast", "out", out, out.dtype(), x.dims())?;
        check_no_overlap("cast", "out", out, &[x])?;
        self.backend.cast(x, out)
    }

    /// `x` converted to `dtype` in a new tensor (see [`Backend::cast`] for rounding).
    pub fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let out = self.alloc(dtype, x.dims())?;
        self.backend.cast(x, &out)?;
        Ok(out)
    }
}

/// `out` must be contiguous with the given dtype and dims.
pub(crate) fn check_out(
    op: &'static str,
    arg: &'static str,
    out: &Tensor,
    dtype: DType,
    dims: &[usize],
) -> Result<()> {
    check_contiguous(op, arg, out)?;
    check_dtype(op, out, dtype)?;
    check_dims(op, out, dims)
}

pub(crate) fn check_contiguous(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    if t.is_contiguous() {
        return Ok(());
    }
    Err(Error::BadLayout {
        op,
        arg,
        requirement: "contiguous",
        dims: t.dims().to_vec(),
        strides: t.layout().strides().to_vec(),
    })
}

pub(crate) fn check_dtype(op: &'static str, t: &Tensor, dtype: DType) -> Result<()> {
    if t.dtype() == dtype {
        return Ok(());
    }
    Err(luoshu_tensor::Error::DTypeMismatch {
        op,
        expected: dtype,
        got: t.dtype(),
    }
    .into())
}

pub(crate) fn check_dims(op: &'static str, t: &Tensor, dims: &[usize]) -> Result<()> {
    if t.dims() == dims {
        return Ok(());
    }
    Err(luoshu_tensor::Error::ShapeMismatch {
        op,
        expected: dims.to_vec(),
        got: t.dims().to_vec(),
    }
    .into())
}

pub(crate) fn check_float(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype().is_float() {
        return Ok(());
    }
    Err(Error::UnsupportedDType {
        op,
        dtype: t.dtype(),
        supported: "f64, f32, bf16, f16",
    })
}

pub(crate) fn check_index_dtype(op: &'static str, t: &Tensor) -> Result<()> {
    if matches!(t.dtype(), DType::I64 | DType::I32) {
        return Ok(());
    }
    Err(Error::UnsupportedDType {
        op,
        dtype: t.dtype(),
        supported: "i64, i32 (indices)",
    })
}

/// The output must not share bytes with any input.
pub(crate) fn check_no_overlap(
    op: &'static str,
    arg: &'static str,
    out: &Tensor,
    inputs: &[&Tensor],
) -> Result<()> {
    if inputs.iter().any(|i| i.overlaps(out)) {
        return Err(Error::Aliasing { op, arg });
    }
    Ok(())
}

/// Like [`check_no_overlap`], but an input that is exactly `out`'s region is allowed
/// (elementwise ops may run in place).
pub(crate) fn check_no_partial_overlap(
    op: &'static str,
    out: &Tensor,
    inputs: &[&Tensor],
) -> Result<()> {
    if inputs
        .iter()
        .any(|i| i.overlaps(out) && !i.same_region(out))
    {
        return Err(Error::Aliasing { op, arg: "out" });
    }
    Ok(())
}

pub(crate) fn check_dim(op: &'static str, dim: usize, rank: usize) -> Result<()> {
    if dim < rank {
        return Ok(());
    }
    Err(luoshu_tensor::Error::DimOutOfRange { op, dim, rank }.into())
}
