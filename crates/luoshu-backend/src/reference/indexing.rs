//! Reference kernels: index_select, index_add, gather, scatter_add, concat, arange.
//!
//! Each kernel works on logical row-major positions: it computes, for every output (or
//! source) element, the position of the element it reads (or adds into), then moves values.

use super::access::{read, write, write_floats, Values};
use crate::{Error, Result};
use luoshu_tensor::{Shape, Tensor};

/// The values of `indices`, every one checked to lie in `0..size` before anything is
/// written, so a bad index leaves the output untouched.
fn checked_indices(
    op: &'static str,
    indices: &Tensor,
    dim: usize,
    size: usize,
) -> Result<Vec<usize>> {
    let Values::Int(v) = read(indices)? else {
        return Err(Error::invalid(op, "indices must be integers"));
    };
    v.into_iter()
        .map(|index| {
            usize::try_from(index)
                .ok()
                .filter(|&i| i < size)
                .ok_or_else(|| {
                    luoshu_tensor::Error::IndexOutOfRange {
                        op,
                        index,
                        dim,
                        size,
                    }
                    .into()
                })
        })
        .collect()
}

/// `dims` seen as `[outer, dims[dim], inner]`.
fn around(dims: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = dims[..dim].iter().product();
    let inner = dims[dim + 1..].iter().product();
    (outer, dims[dim], inner)
}

/// For a tensor of `dims` and each element of `[outer, idx.len(), inner]` in order, the
/// position of `[o, idx[i], j]`.
fn slab_positions(dims: &[usize], dim: usize, idx: &[usize]) -> Vec<usize> {
    let (outer, size, inner) = around(dims, dim);
    let mut positions = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            positions.extend((0..inner).map(|j| (o * size + i) * inner + j));
        }
    }
    positions
}

/// For each element of a row-major `index_dims` index (`idx` its values), the position in a
/// row-major tensor of `dims` of the same coordinates with coordinate `dim` replaced by the
/// index value.
fn along_positions(dims: &[usize], index_dims: &[usize], dim: usize, idx: &[usize]) -> Vec<usize> {
    let strides = Shape::new(dims).contiguous_strides();
    let mut coord = vec![0; index_dims.len()];
    idx.iter()
        .enumerate()
        .map(|(p, &i)| {
            let mut rest = p;
            for (c, &d) in coord.iter_mut().zip(index_dims).rev() {
                *c = rest % d;
                rest /= d;
            }
            coord[dim] = i;
            coord.iter().zip(&strides).map(|(c, s)| c * s).sum()
        })
        .collect()
}

pub(super) fn index_select(x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
    let idx = checked_indices("index_select", indices, dim, x.dims()[dim])?;
    let positions = slab_positions(x.dims(), dim, &idx);
    write(out, &read(x)?.pick("index_select", &positions)?)
}

pub(super) fn index_add(dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
    let idx = checked_indices("index_add", indices, dim, dst.dims()[dim])?;
    let targets = slab_positions(dst.dims(), dim, &idx);
    let mut sum = read(dst)?;
    sum.accumulate("index_add", &targets, &read(src)?)?;
    write(dst, &sum)
}

pub(super) fn gather(x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
    let idx = checked_indices("gather", index, dim, x.dims()[dim])?;
    let positions = along_positions(x.dims(), index.dims(), dim, &idx);
    write(out, &read(x)?.pick("gather", &positions)?)
}

pub(super) fn scatter_add(dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
    let idx = checked_indices("scatter_add", index, dim, dst.dims()[dim])?;
    let targets = along_positions(dst.dims(), index.dims(), dim, &idx);
    let mut sum = read(dst)?;
    sum.accumulate("scatter_add", &targets, &read(src)?)?;
    write(dst, &sum)
}

/// Picks from the inputs laid end to end: for each outer index, each input's slab in turn.
pub(super) fn concat(inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
    let (outer, _, inner) = around(out.dims(), dim);
    let mut positions = Vec::with_capacity(out.numel());
    for o in 0..outer {
        let mut start = 0;
        for t in inputs {
            let slab = t.dims()[dim] * inner;
            positions.extend(start + o * slab..start + (o + 1) * slab);
            start += t.numel();
        }
    }
    let parts = inputs.iter().map(|t| read(t)).collect::<Result<Vec<_>>>()?;
    write(
        out,
        &Values::join("concat", parts)?.pick("concat", &positions)?,
    )
}

pub(super) fn arange(start: f64, step: f64, out: &Tensor) -> Result<()> {
    let values: Vec<f64> = (0..out.numel()).map(|i| start + i as f64 * step).collect();
    write_floats(out, &values)
}
