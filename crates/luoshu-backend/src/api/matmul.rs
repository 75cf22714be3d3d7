//! Matrix products of [`Ops`].

use super::{check_dtype, check_float, check_no_overlap, check_out, Ops};
use crate::{Error, Result};
use luoshu_tensor::{broadcast_shapes, Tensor};

/// Output dims of `a · b` and the batch-broadcast views of `a` and `b`.
fn plan(a: &Tensor, b: &Tensor) -> Result<(Vec<usize>, Tensor, Tensor)> {
    check_float("matmul", a)?;
    check_dtype("matmul", b, a.dtype())?;
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::invalid(
            "matmul",
            format!(
                "operands need rank >= 2, got {:?} and {:?}",
                a.dims(),
                b.dims()
            ),
        ));
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k) = (a.dims()[ra - 2], a.dims()[ra - 1]);
    let (k2, n) = (b.dims()[rb - 2], b.dims()[rb - 1]);
    if k != k2 {
        return Err(Error::invalid(
            "matmul",
            format!("contracted dims differ: {:?} · {:?}", a.dims(), b.dims()),
        ));
    }
    let batch = broadcast_shapes("matmul", &a.dims()[..ra - 2], &b.dims()[..rb - 2])?;
    let with = |x: usize, y: usize| {
        let mut d = batch.dims().to_vec();
        d.extend([x, y]);
        d
    };
    let a = a.broadcast_to(with(m, k))?;
    let b = b.broadcast_to(with(k, n))?;
    Ok((with(m, n), a, b))
}

impl Ops<'_> {
    /// Batched matrix product with NumPy broadcasting of the batch dims.
    pub fn matmul_into(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        let (dims, a2, b2) = plan(a, b)?;
        check_out("matmul", "out", out, a.dtype(), &dims)?;
        check_no_overlap("matmul", "out", out, &[a, b])?;
        self.backend.matmul(&a2, &b2, out)
    }

    /// Batched `a · b` (`[..., m, k] · [..., k, n] -> [..., m, n]`) in a new tensor, with NumPy
    /// broadcasting of the batch dims; both operands share one float dtype.
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (dims, a2, b2) = plan(a, b)?;
        let out = self.alloc(a.dtype(), &dims)?;
        self.backend.matmul(&a2, &b2, &out)?;
        Ok(out)
    }
}
