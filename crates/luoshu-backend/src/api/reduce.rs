//! Reductions of [`Ops`]: sum, mean, max and min over axes, and argmax.

use super::{check_dim, check_no_overlap, check_out, Ops};
use crate::ops::ReduceOp;
use crate::{Error, Result};
use luoshu_tensor::{DType, Tensor};

/// Sorted, unique, in-range axes; the keepdim output dims.
fn reduced_dims(op: &'static str, x: &Tensor, axes: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
    if axes.is_empty() {
        return Err(Error::invalid(op, "no axes to reduce over"));
    }
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != axes.len() {
        return Err(Error::invalid(op, format!("repeated axis in {axes:?}")));
    }
    for &a in &sorted {
        check_dim(op, a, x.rank())?;
    }
    let mut dims = x.dims().to_vec();
    for &a in &sorted {
        dims[a] = 1;
    }
    Ok((sorted, dims))
}

fn drop_axes(dims: &[usize], axes: &[usize]) -> Vec<usize> {
    dims.iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect()
}

fn check_reduce_dtype(op: ReduceOp, x: &Tensor) -> Result<()> {
    let ok = x.dtype().is_float()
        || (op != ReduceOp::Mean && matches!(x.dtype(), DType::I64 | DType::I32));
    if ok {
        return Ok(());
    }
    Err(Error::UnsupportedDType {
        op: op.name(),
        dtype: x.dtype(),
        supported: if op == ReduceOp::Mean {
            "f32, bf16, f16"
        } else {
            "f32, bf16, f16, i64, i32"
        },
    })
}

impl Ops<'_> {
    /// Reduce over `axes`; `out` keeps the reduced axes with size 1.
    pub fn reduce_into(
        &self,
        op: ReduceOp,
        x: &Tensor,
        axes: &[usize],
        out: &Tensor,
    ) -> Result<()> {
        check_reduce_dtype(op, x)?;
        let (axes, dims) = reduced_dims(op.name(), x, axes)?;
        let empty = axes.iter().any(|&a| x.dims()[a] == 0);
        if empty && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            return Err(Error::invalid(
                op.name(),
                format!(
                    "reducing an empty axis of shape {:?} has no identity",
                    x.dims()
                ),
            ));
        }
        check_out(op.name(), "out", out, x.dtype(), &dims)?;
        check_no_overlap(op.name(), "out", out, &[x])?;
        self.backend.reduce(op, x, &axes, out)
    }

    /// `op` over `axes` (unique, in range, non-empty; any order) in a new tensor of `x`'s dtype;
    /// `keepdim` keeps the reduced axes with size 1, otherwise they are dropped. Max and min of
    /// an empty axis are errors; mean takes floats only.
    pub fn reduce(
        &self,
        op: ReduceOp,
        x: &Tensor,
        axes: &[usize],
        keepdim: bool,
    ) -> Result<Tensor> {
        check_reduce_dtype(op, x)?;
        let (sorted, dims) = reduced_dims(op.name(), x, axes)?;
        let out = self.alloc(x.dtype(), &dims)?;
        self.reduce_into(op, x, &sorted, &out)?;
        if keepdim {
            return Ok(out);
        }
        Ok(out.reshape(drop_axes(x.dims(), &sorted))?)
    }

    /// Sum over `axes` (see [`Ops::reduce`]).
    pub fn sum(&self, x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, x, axes, keepdim)
    }

    /// Sum `x` down to `dims` (the inverse of broadcasting `dims` to `x`'s shape), the
    /// gradient of a broadcast.
    pub fn sum_to(&self, x: &Tensor, dims: &[usize]) -> Result<Tensor> {
        luoshu_tensor::broadcast_shapes("sum_to", dims, x.dims())
            .ok()
            .filter(|s| s.dims() == x.dims())
            .ok_or_else(|| luoshu_tensor::Error::NotBroadcastable {
                op: "sum_to",
                lhs: dims.to_vec(),
                rhs: x.dims().to_vec(),
            })?;
        let lead = x.rank() - dims.len();
        let axes: Vec<usize> = (0..x.rank())
            .filter(|&i| i < lead || (dims[i - lead] == 1 && x.dims()[i] != 1))
            .collect();
        if axes.is_empty() {
            return Ok(x.clone());
        }
        let reduced = self.reduce(ReduceOp::Sum, x, &axes, true)?;
        Ok(reduced.reshape(dims)?)
    }

    /// Index of the first maximum along `axis` into `out` (`I64`, `x`'s dims with `axis` of
    /// size 1); `x` is float, `i64` or `i32` and `axis` must not be empty.
    pub fn argmax_into(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
        check_dim("argmax", axis, x.rank())?;
        if !(x.dtype().is_float() || matches!(x.dtype(), DType::I64 | DType::I32)) {
            return Err(Error::UnsupportedDType {
                op: "argmax",
                dtype: x.dtype(),
                supported: "f32, bf16, f16, i64, i32",
            });
        }
        if x.dims()[axis] == 0 {
            return Err(Error::invalid(
                "argmax",
                format!("axis {axis} of {:?} is empty", x.dims()),
            ));
        }
        let mut dims = x.dims().to_vec();
        dims[axis] = 1;
        check_out("argmax", "out", out, DType::I64, &dims)?;
        check_no_overlap("argmax", "out", out, &[x])?;
        self.backend.argmax(x, axis, out)
    }

    /// Index of the first maximum along `axis` as a new `I64` tensor; `keepdim` keeps `axis`
    /// with size 1, otherwise it is dropped.
    pub fn argmax(&self, x: &Tensor, axis: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("argmax", axis, x.rank())?;
        let mut dims = x.dims().to_vec();
        dims[axis] = 1;
        let out = self.alloc(DType::I64, &dims)?;
        self.argmax_into(x, axis, &out)?;
        if keepdim {
            return Ok(out);
        }
        Ok(out.reshape(drop_axes(x.dims(), &[axis]))?)
    }
}
