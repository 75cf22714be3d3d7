//! CPU kernel: rotary position embedding (rotate-half convention), forward and inverse.

use super::rows::{input, output, rows_per_task, with_float, Acc, Float};
use crate::{Error, Result};
use luoshu_tensor::{Borrows, Tensor};
use rayon::prelude::*;

pub(crate) fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    inverse: bool,
    out: &Tensor,
) -> Result<()> {
    with_float!("rope", x.dtype(), |T| rope_typed::<T>(
        x, cos, sin, inverse, out
    ))
}

fn rope_typed<T: Float>(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    inverse: bool,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "rope";
    let borrows = Borrows::new();
    let &[_, seq, heads, d] = x.dims() else {
        return Err(Error::invalid(
            OP,
            format!(
                "expects x [batch, seq, heads, head_dim], got {:?}",
                x.dims()
            ),
        ));
    };
    let half = d / 2;
    let (cos, sin) = (
        input::<f32>(&borrows, OP, "cos", cos)?,
        input::<f32>(&borrows, OP, "sin", sin)?,
    );
    let x = input::<T>(&borrows, OP, "x", x)?;
    let out = output::<T>(&borrows, OP, "out", out)?;
    if out.is_empty() {
        return Ok(());
    }
    // The inverse rotation is the rotation by the opposite angle.
    let sign = if inverse { -T::Acc::ONE } else { T::Acc::ONE };
    let per_task = rows_per_task(d);
    out.par_chunks_mut(per_task * d)
        .enumerate()
        .for_each(|(task, out)| {
            for (r, out) in out.chunks_mut(d).enumerate() {
                let row = task * per_task + r;
                let pos = (row / heads) % seq;
                let (cos, sin) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
                let (x1, x2) = x[row * d..][..d].split_at(half);
                let (o1, o2) = out.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (x1[i].load(), x2[i].load());
                    let (c, s) = (T::Acc::from_f32(cos[i]), sign * T::Acc::from_f32(sin[i]));
                    o1[i] = T::store(a * c - b * s);
                    o2[i] = T::store(b * c + a * s);
                }
            }
        });
    Ok(())
}
