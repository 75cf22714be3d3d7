//! Sound access to a kernel's operands. The output's region becomes one `&mut [T]`; inputs
//! become read-only slices. An input living in the output's storage (one arena holding many
//! tensors) is read from the parts of the same borrow split off around the output region,
//! so no `&[T]` and `&mut [T]` ever cover the same bytes; an input that *is* the output
//! region (in-place elementwise) is reported as [`Operand::Output`].

use crate::{Error, Result};
use bytemuck::Pod;
use luoshu_tensor::Tensor;
use std::sync::Arc;

/// A read-only strided input; `data` starts at the tensor's first element, so its strides
/// index `data` from offset 0.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) dims: &'a [usize],
    pub(crate) strides: &'a [usize],
}

/// An input of an elementwise kernel.
pub(crate) enum Operand<'a, T> {
    View(View<'a, T>),
    /// The input is exactly the output region: read it from the output slice.
    Output,
}

impl<'a, T> Operand<'a, T> {
    /// The view, for kernels that never run in place.
    pub(crate) fn view(self, op: &'static str) -> Result<View<'a, T>> {
        match self {
            Operand::View(v) => Ok(v),
            Operand::Output => Err(Error::Aliasing { op, arg: "out" }),
        }
    }
}

/// Reads inputs next to a borrowed output region.
pub(crate) struct Access<'a> {
    out: &'a Tensor,
    before: &'a [u8],
    after: &'a [u8],
    after_start: usize,
}

fn check_width<T>(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype().size_in_bytes() == std::mem::size_of::<T>() {
        return Ok(());
    }
    Err(Error::invalid(
        op,
        format!("kernel element width does not match dtype {}", t.dtype()),
    ))
}

/// Byte range `[start, end)` of `t` inside its storage (empty for an empty tensor).
fn byte_range(t: &Tensor) -> (usize, usize) {
    if t.numel() == 0 {
        return (0, 0);
    }
    let size = t.dtype().size_in_bytes();
    (t.layout().offset() * size, t.layout().storage_span() * size)
}

fn cast<'a, T: Pod>(op: &'static str, bytes: &'a [u8]) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| Error::invalid(op, format!("storage view: {e}")))
}

fn out_of_storage(op: &'static str) -> Error {
    Error::invalid(op, "a tensor reaches outside its storage")
}

/// The contiguous output (or in-place destination) `out` as `&mut [T]`, and an [`Access`]
/// to read the inputs.
// Returning `&mut` from `&Tensor` is the storage's interior-mutability contract (see
// `Storage::slice_mut`): `Ops` makes this kernel the region's only writer.
#[allow(clippy::mut_from_ref)]
pub(crate) fn output<'a, T: Pod>(
    op: &'static str,
    out: &'a Tensor,
) -> Result<(&'a mut [T], Access<'a>)> {
    check_width::<T>(op, out)?;
    // An empty output is trivially contiguous, whatever strides its shape was given.
    if out.numel() > 0 && !out.is_contiguous() {
        return Err(Error::BadLayout {
            op,
            arg: "out",
            requirement: "contiguous",
            dims: out.dims().to_vec(),
            strides: out.layout().strides().to_vec(),
        });
    }
    let (start, end) = if out.numel() == 0 {
        (0, 0)
    } else {
        let size = out.dtype().size_in_bytes();
        let start = out.layout().offset() * size;
        (start, start + out.numel() * size)
    };
    // SAFETY: `Ops` guarantees this kernel is the only writer of the output region and that
    // no input overlaps it except the documented same-region aliasing, which `input` hands
    // back as `Operand::Output` instead of a second slice. The whole-storage borrow is split
    // here at once into the output region and the two disjoint parts around it.
    let all: &'a mut [u8] = unsafe { out.storage().slice_mut::<u8>() };
    if end > all.len() {
        return Err(out_of_storage(op));
    }
    let (before, rest) = all.split_at_mut(start);
    let (region, after) = rest.split_at_mut(end - start);
    let region = bytemuck::try_cast_slice_mut(region)
        .map_err(|e| Error::invalid(op, format!("storage view: {e}")))?;
    Ok((
        region,
        Access {
            out,
            before,
            after,
            after_start: end,
        },
    ))
}

impl<'a> Access<'a> {
    /// An input of element type `T`.
    pub(crate) fn input<T: Pod>(&self, op: &'static str, t: &'a Tensor) -> Result<Operand<'a, T>> {
        check_width::<T>(op, t)?;
        let (start, end) = byte_range(t);
        let bytes: &'a [u8] = if t.numel() == 0 {
            return Ok(Operand::View(View {
                data: &[],
                dims: t.dims(),
                strides: t.layout().strides(),
            }));
        } else if Arc::ptr_eq(t.storage(), self.out.storage()) {
            if t.same_region(self.out) && self.out.numel() > 0 {
                return Ok(Operand::Output);
            }
            if end <= self.before.len() {
                &self.before[start..end]
            } else if start >= self.after_start && end - self.after_start <= self.after.len() {
                &self.after[start - self.after_start..end - self.after_start]
            } else {
                return Err(Error::Aliasing { op, arg: "out" });
            }
        } else {
            // SAFETY: `t` lives in another storage than the output; kernels only read it and
            // `Ops` guarantees nothing writes it during this call.
            let all: &'a [u8] = unsafe { t.storage().slice::<u8>() };
            all.get(start..end).ok_or_else(|| out_of_storage(op))?
        };
        Ok(Operand::View(View {
            data: cast(op, bytes)?,
            dims: t.dims(),
            strides: t.layout().strides(),
        }))
    }

    /// An input that must not alias the output.
    pub(crate) fn view<T: Pod>(&self, op: &'static str, t: &'a Tensor) -> Result<View<'a, T>> {
        self.input(op, t)?.view(op)
    }
}
