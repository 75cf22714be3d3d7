//! Checked access to a kernel's operands. The output's region becomes one `&mut [T]`; inputs
//! become read-only slices, each claimed in the kernel's [`Borrows`] scope, so no `&[T]`
//! and `&mut [T]` ever cover the same bytes (a conflict is an error, not a race). An input
//! that *is* the output region (in-place elementwise) is reported as [`Operand::Output`];
//! one that partly overlaps it is [`Error::Aliasing`].

use crate::{Error, Result};
use bytemuck::Pod;
use luoshu_tensor::{Borrows, DType, Tensor};
use std::ops::Range;
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

/// Reads inputs next to a borrowed output region, claiming each in the kernel's
/// [`Borrows`] scope.
pub(crate) struct Access<'s, 'a> {
    borrows: &'s Borrows<'a>,
    out: &'a Tensor,
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

/// Bytes of `elements` of `t`'s dtype.
fn byte_range(t: &Tensor, elements: Range<usize>) -> Range<usize> {
    let size = t.dtype().size_in_bytes();
    elements.start * size..elements.end * size
}

fn cast<'s, T: Pod>(op: &'static str, bytes: &'s [u8]) -> Result<&'s [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| Error::invalid(op, format!("storage view: {e}")))
}

/// The contiguous output (or in-place destination) `out` as `&mut [T]`, claimed for
/// writing in `borrows`, and an [`Access`] to read the inputs.
pub(crate) fn output<'s, 'a, T: Pod>(
    borrows: &'s Borrows<'a>,
    op: &'static str,
    out: &'a Tensor,
) -> Result<(&'s mut [T], Access<'s, 'a>)> {
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
    let region = byte_range(out, out.element_range());
    let bytes: &'s mut [u8] = borrows.write(op, out.storage(), DType::U8, region)?;
    let region = bytemuck::try_cast_slice_mut(bytes)
        .map_err(|e| Error::invalid(op, format!("storage view: {e}")))?;
    Ok((region, Access { borrows, out }))
}

impl<'s, 'a> Access<'s, 'a> {
    /// An input of element type `T`.
    pub(crate) fn input<T: Pod>(&self, op: &'static str, t: &'a Tensor) -> Result<Operand<'s, T>> {
        check_width::<T>(op, t)?;
        if t.numel() == 0 {
            return Ok(Operand::View(View {
                data: &[],
                dims: t.dims(),
                strides: t.layout().strides(),
            }));
        }
        if self.out.numel() > 0 && t.same_region(self.out) {
            return Ok(Operand::Output);
        }
        let region = byte_range(t, t.element_range());
        let out_region = byte_range(self.out, self.out.element_range());
        let overlaps = region.start < out_region.end && out_region.start < region.end;
        if overlaps && Arc::ptr_eq(t.storage(), self.out.storage()) {
            return Err(Error::Aliasing { op, arg: "out" });
        }
        let bytes: &'s [u8] = self.borrows.read(op, t.storage(), DType::U8, region)?;
        Ok(Operand::View(View {
            data: cast(op, bytes)?,
            dims: t.dims(),
            strides: t.layout().strides(),
        }))
    }

    /// An input that must not alias the output.
    pub(crate) fn view<T: Pod>(&self, op: &'static str, t: &'a Tensor) -> Result<View<'s, T>> {
        self.input(op, t)?.view(op)
    }
}
