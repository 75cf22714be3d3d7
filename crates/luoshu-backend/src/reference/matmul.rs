//! Reference kernel: batched matmul with f64 accumulation for every float dtype.

use super::access::{read, write, Values};
use crate::{Error, Result};
use luoshu_tensor::Tensor;

/// `out[.., i, j] = Σ_p a[.., i, p] · b[.., p, j]`, summed in f64 in order of `p`.
pub(super) fn matmul(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let (Values::Float(av), Values::Float(bv)) = (read(a)?, read(b)?) else {
        return Err(Error::invalid("matmul", "operands must be floats"));
    };
    let rank = a.rank();
    if rank < 2 || b.rank() != rank || out.rank() != rank {
        return Err(Error::invalid(
            "matmul",
            format!(
                "ranks of {:?} · {:?} -> {:?}",
                a.dims(),
                b.dims(),
                out.dims()
            ),
        ));
    }
    let (m, k, n) = (a.dims()[rank - 2], a.dims()[rank - 1], b.dims()[rank - 1]);
    let batch: usize = a.dims()[..rank - 2].iter().product();
    if av.len() != batch * m * k || bv.len() != batch * k * n || out.numel() != batch * m * n {
        return Err(Error::invalid(
            "matmul",
            format!("shapes {:?} · {:?} -> {:?}", a.dims(), b.dims(), out.dims()),
        ));
    }
    let mut result = vec![0.0; batch * m * n];
    for t in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    acc += av[(t * m + i) * k + p] * bv[(t * k + p) * n + j];
                }
                result[(t * m + i) * n + j] = acc;
            }
        }
    }
    write(out, &Values::Float(result))
}
