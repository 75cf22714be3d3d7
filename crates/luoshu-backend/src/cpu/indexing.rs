//! CPU kernels: index_select, index_add, gather, scatter_add, concat, arange. Every index
//! is validated before anything is written. Slices are moved with the strided run loops of
//! the elementwise engine; `index_add` groups source rows by destination row so rows can be
//! accumulated in parallel without conflicts, in the same order as a serial loop.

use super::access::{output, Access, View};
use super::dispatch::{with_index, with_numeric, with_width};
use super::map::{apply1, apply1_into};
use super::numeric::{IndexInt, Int};
use super::parallel::{for_blocks, for_chunks};
use super::rows::{with_float, Float};
use super::strided::{Lane, Walker};
use crate::Result;
use bytemuck::Pod;
use luoshu_tensor::{Borrows, DType, Element, Shape, Tensor};

/// Runs `$body` with `$T` bound to `$dtype`'s element type and `$add` to its addition
/// (wrapping for integers; f32 for bf16/f16, rounded once per add).
macro_rules! with_add {
    ($op:expr, $dtype:expr, |$T:ident, $add:ident| $body:expr) => {
        match $dtype {
            DType::I64 => {
                type $T = i64;
                let $add = Int::wrapping_add;
                $body
            }
            DType::I32 => {
                type $T = i32;
                let $add = Int::wrapping_add;
                $body
            }
            DType::U8 => {
                type $T = u8;
                let $add = Int::wrapping_add;
                $body
            }
            other => with_float!($op, other, |$T| {
                let $add = |a: $T, b: $T| <$T>::store(a.load() + b.load());
                $body
            }),
        }
    };
}

/// Fails with the first index (in logical order) outside `0..size`.
fn validate<I: IndexInt>(
    op: &'static str,
    index: View<'_, I>,
    dim: usize,
    size: usize,
) -> Result<()> {
    let walker = Walker::new(index.dims, [index.strides]);
    let [s] = walker.inner_strides();
    let mut bad = None;
    walker.for_each_run(0..walker.numel(), |_, len, [o]| {
        if bad.is_none() {
            bad = (0..len)
                .map(|t| index.data[o + t * s].to_i64())
                .find(|&v| v < 0 || v as u64 >= size as u64);
        }
    });
    match bad {
        Some(index) => Err(luoshu_tensor::Error::IndexOutOfRange {
            op,
            index,
            dim,
            size,
        }
        .into()),
        None => Ok(()),
    }
}

/// The rank-1 `indices`, validated against `0..size`.
fn index_list<'a>(
    op: &'static str,
    access: &Access<'_, 'a>,
    indices: &'a Tensor,
    dim: usize,
    size: usize,
) -> Result<Vec<usize>> {
    with_index!(op, indices.dtype(), |I| {
        let v = access.view::<I>(op, indices)?;
        validate(op, v, dim, size)?;
        let stride = v.strides.first().copied().unwrap_or(0);
        Ok((0..indices.numel())
            .map(|i| v.data[i * stride].to_i64() as usize)
            .collect())
    })
}

/// Walks over the dims before and after `dim` of a strided view.
fn outer_inner<T>(v: &View<'_, T>, dim: usize) -> (Walker<1>, Walker<1>) {
    (
        Walker::new(&v.dims[..dim], [&v.strides[..dim]]),
        Walker::new(&v.dims[dim + 1..], [&v.strides[dim + 1..]]),
    )
}

pub(crate) fn index_select(x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
    with_width!(x.dtype(), |T| index_select_typed::<T>(x, dim, indices, out))
}

fn index_select_typed<T: Pod + Send + Sync>(
    x: &Tensor,
    dim: usize,
    indices: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "index_select";
    let borrows = Borrows::new();
    let (dst, access) = output::<T>(&borrows, OP, out)?;
    let idx = index_list(OP, &access, indices, dim, x.dims()[dim])?;
    let xv = access.view::<T>(OP, x)?;
    let (outer, inner) = outer_inner(&xv, dim);
    let (n, len, sd) = (idx.len(), inner.numel(), xv.strides[dim]);
    let [si] = inner.inner_strides();
    if len == 0 {
        return Ok(());
    }
    for_blocks(dst, len, len, |first, blocks| {
        for (k, block) in blocks.chunks_mut(len).enumerate() {
            let (o, i) = ((first + k) / n, (first + k) % n);
            let [base] = outer.offsets_of(o);
            let base = base + idx[i] * sd;
            inner.for_each_run(0..len, |pos, run, [off]| {
                apply1(
                    &mut block[pos..pos + run],
                    Lane::new(xv.data, base + off, si),
                    &|v| v,
                )
            });
        }
    });
    Ok(())
}

pub(crate) fn index_add(dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
    with_add!("index_add", dst.dtype(), |T, add| index_add_typed::<T>(
        dst, dim, indices, src, add
    ))
}

fn index_add_typed<T: Pod + Send + Sync>(
    dst: &Tensor,
    dim: usize,
    indices: &Tensor,
    src: &Tensor,
    add: impl Fn(T, T) -> T + Sync,
) -> Result<()> {
    const OP: &str = "index_add";
    let borrows = Borrows::new();
    let (out, access) = output::<T>(&borrows, OP, dst)?;
    let size = dst.dims()[dim];
    let idx = index_list(OP, &access, indices, dim, size)?;
    let sv = access.view::<T>(OP, src)?;
    let (outer, inner) = outer_inner(&sv, dim);
    let (len, sd) = (inner.numel(), sv.strides[dim]);
    let [si] = inner.inner_strides();
    if len == 0 || size == 0 {
        return Ok(());
    }
    // Counting sort of source positions by destination row (stable: ascending `i`).
    let mut starts = vec![0usize; size + 1];
    for &r in &idx {
        starts[r + 1] += 1;
    }
    for r in 0..size {
        starts[r + 1] += starts[r];
    }
    let mut next = starts.clone();
    let mut order = vec![0usize; idx.len()];
    for (i, &r) in idx.iter().enumerate() {
        order[next[r]] = i;
        next[r] += 1;
    }
    let rows_per_dst_row = idx.len().div_ceil(size).max(1);
    for_blocks(out, len, len * rows_per_dst_row, |first, blocks| {
        for (k, block) in blocks.chunks_mut(len).enumerate() {
            let (o, r) = ((first + k) / size, (first + k) % size);
            let [base] = outer.offsets_of(o);
            for &i in &order[starts[r]..starts[r + 1]] {
                let base = base + i * sd;
                inner.for_each_run(0..len, |pos, run, [off]| {
                    apply1_into(
                        &mut block[pos..pos + run],
                        Lane::new(sv.data, base + off, si),
                        &add,
                    )
                });
            }
        }
    });
    Ok(())
}

pub(crate) fn gather(x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
    with_width!(x.dtype(), |T| with_index!("gather", index.dtype(), |I| {
        gather_typed::<T, I>(x, dim, index, out)
    }))
}

fn gather_typed<T: Pod + Send + Sync, I: IndexInt>(
    x: &Tensor,
    dim: usize,
    index: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "gather";
    let borrows = Borrows::new();
    let (dst, access) = output::<T>(&borrows, OP, out)?;
    let iv = access.view::<I>(OP, index)?;
    validate(OP, iv, dim, x.dims()[dim])?;
    let xv = access.view::<T>(OP, x)?;
    // `x` is walked with the index's shape; its step along `dim` comes from the index.
    let mut xs = xv.strides.to_vec();
    let sd = std::mem::replace(&mut xs[dim], 0);
    let walker = Walker::new(iv.dims, [iv.strides, &xs]);
    let [si, sx] = walker.inner_strides();
    for_chunks(dst, |start, chunk| {
        walker.for_each_run(start..start + chunk.len(), |pos, len, [oi, ox]| {
            for (t, d) in chunk[pos - start..][..len].iter_mut().enumerate() {
                let j = iv.data[oi + t * si].to_i64() as usize;
                *d = xv.data[ox + t * sx + j * sd];
            }
        })
    });
    Ok(())
}

pub(crate) fn scatter_add(dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
    with_add!("scatter_add", dst.dtype(), |T, add| with_index!(
        "scatter_add",
        index.dtype(),
        |I| scatter_add_typed::<T, I>(dst, dim, index, src, add)
    ))
}

/// Serial: repeated indices add into the same element, in logical order.
fn scatter_add_typed<T: Pod, I: IndexInt>(
    dst: &Tensor,
    dim: usize,
    index: &Tensor,
    src: &Tensor,
    add: impl Fn(T, T) -> T,
) -> Result<()> {
    const OP: &str = "scatter_add";
    let borrows = Borrows::new();
    let (out, access) = output::<T>(&borrows, OP, dst)?;
    let iv = access.view::<I>(OP, index)?;
    validate(OP, iv, dim, dst.dims()[dim])?;
    let sv = access.view::<T>(OP, src)?;
    let mut ds = dst.shape().contiguous_strides();
    let sd = std::mem::replace(&mut ds[dim], 0);
    let walker = Walker::new(iv.dims, [iv.strides, sv.strides, &ds]);
    let [si, ss, so] = walker.inner_strides();
    walker.for_each_run(0..walker.numel(), |_, len, [oi, os, od]| {
        for t in 0..len {
            let j = iv.data[oi + t * si].to_i64() as usize;
            let p = od + t * so + j * sd;
            out[p] = add(out[p], sv.data[os + t * ss]);
        }
    });
    Ok(())
}

pub(crate) fn concat(inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
    with_width!(out.dtype(), |T| concat_typed::<T>(inputs, dim, out))
}

fn concat_typed<T: Pod + Send + Sync>(inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
    const OP: &str = "concat";
    let borrows = Borrows::new();
    let (dst, access) = output::<T>(&borrows, OP, out)?;
    let row = Shape::new(&out.dims()[dim..]).numel();
    if row == 0 {
        return Ok(());
    }
    // Per input: its view, a walk over it, its block length per outer index, and where the
    // block starts inside an output row.
    let mut pieces = Vec::with_capacity(inputs.len());
    let mut column = 0;
    for t in inputs {
        let v = access.view::<T>(OP, t)?;
        let block = Shape::new(&v.dims[dim..]).numel();
        pieces.push((v, Walker::new(v.dims, [v.strides]), block, column));
        column += block;
    }
    for_blocks(dst, row, row, |first, rows| {
        for (k, out_row) in rows.chunks_mut(row).enumerate() {
            let o = first + k;
            for (v, walker, block, column) in &pieces {
                let piece = &mut out_row[*column..*column + *block];
                let [s] = walker.inner_strides();
                walker.for_each_run(o * block..(o + 1) * block, |pos, len, [off]| {
                    apply1(
                        &mut piece[pos - o * block..][..len],
                        Lane::new(v.data, off, s),
                        &|x| x,
                    )
                });
            }
        }
    });
    Ok(())
}

pub(crate) fn arange(start: f64, step: f64, out: &Tensor) -> Result<()> {
    let borrows = Borrows::new();
    with_numeric!("arange", out.dtype(), |T| {
        let (dst, _) = output::<T>(&borrows, "arange", out)?;
        for_chunks(dst, |first, chunk| {
            for (i, d) in chunk.iter_mut().enumerate() {
                *d = T::from_f64(start + (first + i) as f64 * step);
            }
        });
        Ok(())
    })
}
