//! Indexing ops of [`Ops`]: index select and add, gather and scatter-add, concatenation and
//! ranges.

use super::{
    check_contiguous, check_dim, check_dtype, check_index_dtype, check_no_overlap, check_out, Ops,
};
use crate::{Error, Result};
use luoshu_tensor::{DType, Tensor};

fn index_select_dims(x: &Tensor, dim: usize, indices: &Tensor) -> Result<Vec<usize>> {
    check_dim("index_select", dim, x.rank())?;
    check_index_dtype("index_select", indices)?;
    if indices.rank() != 1 {
        return Err(Error::invalid(
            "index_select",
            format!("indices must be rank 1, got shape {:?}", indices.dims()),
        ));
    }
    let mut dims = x.dims().to_vec();
    dims[dim] = indices.numel();
    Ok(dims)
}

/// `index` has `x`'s rank and, outside `dim`, no dim larger than `x`'s.
fn check_gather_index(op: &'static str, x: &Tensor, dim: usize, index: &Tensor) -> Result<()> {
    check_dim(op, dim, x.rank())?;
    check_index_dtype(op, index)?;
    let fits = index.rank() == x.rank()
        && index
            .dims()
            .iter()
            .zip(x.dims())
            .enumerate()
            .all(|(i, (&a, &b))| i == dim || a <= b);
    if !fits {
        return Err(Error::invalid(
            op,
            format!(
                "index of shape {:?} does not fit a tensor of shape {:?} along dim {dim}",
                index.dims(),
                x.dims()
            ),
        ));
    }
    Ok(())
}

impl Ops<'_> {
    /// `out = x` with dimension `dim` replaced by `x[indices[i]]`; `indices` is rank-1 `I64` or
    /// `I32`, `out` contiguous and not overlapping the inputs. Errors on an index outside
    /// `0..x.dims()[dim]`.
    pub fn index_select_into(
        &self,
        x: &Tensor,
        dim: usize,
        indices: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        let dims = index_select_dims(x, dim, indices)?;
        check_out("index_select", "out", out, x.dtype(), &dims)?;
        check_no_overlap("index_select", "out", out, &[x, indices])?;
        self.backend.index_select(x, dim, indices, out)
    }

    /// Rows (or slices along `dim`) of `x` picked by `indices`: an embedding lookup.
    pub fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor) -> Result<Tensor> {
        let dims = index_select_dims(x, dim, indices)?;
        let out = self.alloc(x.dtype(), &dims)?;
        self.backend.index_select(x, dim, indices, &out)?;
        Ok(out)
    }

    /// In place `dst[.., indices[i], ..] += src[.., i, ..]`.
    pub fn index_add(
        &self,
        dst: &Tensor,
        dim: usize,
        indices: &Tensor,
        src: &Tensor,
    ) -> Result<()> {
        let dims = index_select_dims(dst, dim, indices)?;
        check_contiguous("index_add", "dst", dst)?;
        check_dtype("index_add", src, dst.dtype())?;
        super::check_dims("index_add", src, &dims)?;
        check_no_overlap("index_add", "dst", dst, &[src, indices])?;
        self.backend.index_add(dst, dim, indices, src)
    }

    /// `out[i][j][k] = x[i][index[i][j][k]][k]` for `dim == 1` (PyTorch `gather`): `index` has
    /// `x`'s rank and `out`'s shape, and outside `dim` no dimension larger than `x`'s.
    pub fn gather_into(&self, x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
        check_gather_index("gather", x, dim, index)?;
        check_out("gather", "out", out, x.dtype(), index.dims())?;
        check_no_overlap("gather", "out", out, &[x, index])?;
        self.backend.gather(x, dim, index, out)
    }

    /// [`Ops::gather_into`] into a new tensor of `index`'s shape.
    pub fn gather(&self, x: &Tensor, dim: usize, index: &Tensor) -> Result<Tensor> {
        check_gather_index("gather", x, dim, index)?;
        let out = self.alloc(x.dtype(), index.dims())?;
        self.backend.gather(x, dim, index, &out)?;
        Ok(out)
    }

    /// In place `dst[i][index[i][j][k]][k] += src[i][j][k]` (for `dim == 1`).
    pub fn scatter_add(
        &self,
        dst: &Tensor,
        dim: usize,
        index: &Tensor,
        src: &Tensor,
    ) -> Result<()> {
        check_gather_index("scatter_add", dst, dim, index)?;
        check_contiguous("scatter_add", "dst", dst)?;
        check_dtype("scatter_add", src, dst.dtype())?;
        super::check_dims("scatter_add", src, index.dims())?;
        check_no_overlap("scatter_add", "dst", dst, &[src, index])?;
        self.backend.scatter_add(dst, dim, index, src)
    }

    /// `out` = the inputs joined along `dim`: one dtype, equal dims except `dim`, at least one
    /// input; `out` must not overlap them.
    pub fn concat_into(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
        let dims = concat_dims(inputs, dim)?;
        check_out("concat", "out", out, inputs[0].dtype(), &dims)?;
        check_no_overlap("concat", "out", out, inputs)?;
        self.backend.concat(inputs, dim, out)
    }

    /// The inputs joined along `dim` in a new tensor (see [`Ops::concat_into`]).
    pub fn concat(&self, inputs: &[&Tensor], dim: usize) -> Result<Tensor> {
        let dims = concat_dims(inputs, dim)?;
        let out = self.alloc(inputs[0].dtype(), &dims)?;
        self.backend.concat(inputs, dim, &out)?;
        Ok(out)
    }

    /// `out[i] = start + i * step` for a contiguous rank-1 `out` of any dtype but `Bool`.
    pub fn arange_into(&self, start: f64, step: f64, out: &Tensor) -> Result<()> {
        check_contiguous("arange", "out", out)?;
        if out.rank() != 1 || out.dtype() == DType::Bool {
            return Err(Error::invalid(
                "arange",
                format!(
                    "output must be a rank-1 numeric tensor, got {} {:?}",
                    out.dtype(),
                    out.dims()
                ),
            ));
        }
        self.backend.arange(start, step, out)
    }

    /// `[start, start + step, ...]`, `len` elements.
    pub fn arange(&self, start: f64, step: f64, len: usize, dtype: DType) -> Result<Tensor> {
        let out = self.alloc(dtype, &[len])?;
        self.arange_into(start, step, &out)?;
        Ok(out)
    }
}

fn concat_dims(inputs: &[&Tensor], dim: usize) -> Result<Vec<usize>> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid("concat", "no inputs"))?;
    check_dim("concat", dim, first.rank())?;
    let mut dims = first.dims().to_vec();
    dims[dim] = 0;
    for t in inputs {
        check_dtype("concat", t, first.dtype())?;
        let same_rest = t.rank() == first.rank()
            && t.dims()
                .iter()
                .zip(first.dims())
                .enumerate()
                .all(|(i, (a, b))| i == dim || a == b);
        if !same_rest {
            return Err(luoshu_tensor::Error::ShapeMismatch {
                op: "concat",
                expected: first.dims().to_vec(),
                got: t.dims().to_vec(),
            }
            .into());
        }
        dims[dim] += t.dims()[dim];
    }
    Ok(dims)
}
