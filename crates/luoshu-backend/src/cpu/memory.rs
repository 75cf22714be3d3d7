//! CPU kernels: strided copy, fill, cast.

use super::access::output;
use super::dispatch::{with_any, with_numeric, with_width};
use super::map::map1;
use super::numeric::CastTo;
use super::parallel::for_chunks;
use crate::Result;
use luoshu_tensor::{Borrows, DType, Element, Tensor};

/// `dst = src`, any view into a contiguous output; elements are moved as plain bits.
pub(crate) fn copy(src: &Tensor, dst: &Tensor) -> Result<()> {
    let borrows = Borrows::new();
    with_width!(dst.dtype(), |T| {
        let (out, access) = output::<T>(&borrows, "copy", dst)?;
        map1(access.view::<T>("copy", src)?, out, |v| v);
        Ok(())
    })
}

pub(crate) fn fill(value: f64, out: &Tensor) -> Result<()> {
    if out.dtype() == DType::Bool {
        return fill_with("fill", out, u8::from(value != 0.0));
    }
    with_numeric!("fill", out.dtype(), |T| fill_with(
        "fill",
        out,
        T::from_f64(value)
    ))
}

fn fill_with<T: bytemuck::Pod + Send + Sync>(
    op: &'static str,
    out: &Tensor,
    value: T,
) -> Result<()> {
    let borrows = Borrows::new();
    let (out, _) = output::<T>(&borrows, op, out)?;
    for_chunks(out, |_, chunk| chunk.fill(value));
    Ok(())
}

/// `out = x` converted to `out`'s dtype.
pub(crate) fn cast(x: &Tensor, out: &Tensor) -> Result<()> {
    if x.dtype() == out.dtype() {
        return copy(x, out);
    }
    with_any!("cast", x.dtype(), |I| {
        if out.dtype() == DType::Bool {
            return cast_with::<I, u8>(x, out, |v| u8::from(v.to_f64() != 0.0));
        }
        with_numeric!("cast", out.dtype(), |O| cast_with::<I, O>(x, out, |v| v
            .cast_to()))
    })
}

fn cast_with<I: Element, O: Element>(
    x: &Tensor,
    out: &Tensor,
    f: impl Fn(I) -> O + Sync + Send,
) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, access) = output::<O>(&borrows, "cast", out)?;
    map1(access.view::<I>("cast", x)?, dst, f);
    Ok(())
}
