//! CPU kernel: batched matmul through the `gemm` crate, plus the slice-checked tile gemm
//! that the fused attention kernels share.

use super::rows::{output, Acc};
use crate::{Error, Result};
use gemm::Parallelism;
use half::{bf16, f16};
use luoshu_tensor::{Borrows, DType, Element, Layout, Tensor};
use rayon::prelude::*;

/// Below this many multiply-adds per matrix a batch is parallelised over its matrices (each
/// gemm single-threaded): gemm's own threading only pays off for larger products.
const SMALL_MATRIX_MACS: usize = 1 << 21;

/// A scalar the `gemm` crate computes in natively (it panics on any other type, so the
/// bound keeps every call well-typed).
pub(super) trait GemmScalar: Acc + Element {}

impl GemmScalar for f32 {}
impl GemmScalar for f64 {}

/// A strided matrix inside a slice: element `(i, j)` is `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a, A> {
    pub data: &'a [A],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<A> Strided<'_, A> {
    /// Whether a `rows × cols` matrix stays inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Where [`gemm_into`] writes: a row-major matrix at row stride `rs` inside `data`, either
/// overwritten or added to.
pub(super) struct GemmDst<'a, A> {
    data: &'a mut [A],
    rs: usize,
    accumulate: bool,
}

impl<'a, A> GemmDst<'a, A> {
    /// The product replaces the matrix's elements.
    pub fn overwrite(data: &'a mut [A], rs: usize) -> Self {
        GemmDst {
            data,
            rs,
            accumulate: false,
        }
    }

    /// The product is added to the matrix's elements.
    pub fn accumulate(data: &'a mut [A], rs: usize) -> Self {
        GemmDst {
            data,
            rs,
            accumulate: true,
        }
    }
}

/// `dst[m×n] = (dst.accumulate ? dst : 0) + scale · lhs[m×k] · rhs[k×n]`. Every extent is
/// checked against its slice before calling gemm.
pub(super) fn gemm_into<A: GemmScalar>(
    (m, n, k): (usize, usize, usize),
    dst: GemmDst<'_, A>,
    lhs: Strided<'_, A>,
    rhs: Strided<'_, A>,
    scale: A,
    parallelism: Parallelism,
) -> Result<()> {
    let GemmDst {
        data: dst,
        rs: dst_rs,
        accumulate,
    } = dst;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dst_fits = (m - 1) * dst_rs + n <= dst.len() && (m == 1 || dst_rs >= n);
    if !dst_fits || !lhs.fits(m, k) || !rhs.fits(k, n) {
        return Err(Error::invalid(
            "matmul",
            format!("internal: a {m}×{k}·{k}×{n} tile does not fit its buffers"),
        ));
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs.max(n)).take(m) {
                row[..n].fill(A::ZERO);
            }
        }
        return Ok(());
    }
    // SAFETY: `fits` above proved every element gemm reads (lhs, rhs) or writes (dst, rows
    // of `n` at stride `dst_rs >= n`, so rows do not overlap) lies inside its slice; `dst`
    // is borrowed mutably and the operands immutably, so they do not alias; `A` is f32 or
    // f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.cs as isize,
            rhs.rs as isize,
            A::ONE,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// Shapes and storage offsets of a batched product.
struct Plan {
    m: usize,
    n: usize,
    k: usize,
    /// Offset of each batch's `a` and `b` matrix from the tensor's first element.
    a_offsets: Vec<usize>,
    b_offsets: Vec<usize>,
    a_strides: (usize, usize),
    b_strides: (usize, usize),
}

/// Each batch's matrix offset, counted from the tensor's first element (the start of the
/// region the kernel reads), and the matrix strides.
fn matrix_parts(layout: &Layout) -> Result<(Vec<usize>, (usize, usize))> {
    let r = layout.rank();
    let batch = Layout::from_parts(
        &layout.dims()[..r - 2],
        layout.strides()[..r - 2].to_vec(),
        0,
    )?;
    let strides = (layout.strides()[r - 2], layout.strides()[r - 1]);
    Ok((batch.offsets().collect(), strides))
}

impl Plan {
    fn new(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Plan> {
        let r = out.rank();
        let bad = || {
            Error::invalid(
                "matmul",
                format!(
                    "expects a [.., m, k], b [.., k, n], out [.., m, n]; got {:?}, {:?}, {:?}",
                    a.dims(),
                    b.dims(),
                    out.dims()
                ),
            )
        };
        if r < 2 || a.rank() != r || b.rank() != r {
            return Err(bad());
        }
        let (m, k, n) = (a.dims()[r - 2], a.dims()[r - 1], b.dims()[r - 1]);
        if b.dims()[r - 2] != k || out.dims()[r - 2..] != [m, n] {
            return Err(bad());
        }
        let (a_offsets, a_strides) = matrix_parts(a.layout())?;
        let (b_offsets, b_strides) = matrix_parts(b.layout())?;
        Ok(Plan {
            m,
            n,
            k,
            a_offsets,
            b_offsets,
            a_strides,
            b_strides,
        })
    }

    fn a<'a, A>(&self, data: &'a [A], batch: usize) -> Strided<'a, A> {
        Strided {
            data,
            offset: self.a_offsets[batch],
            rs: self.a_strides.0,
            cs: self.a_strides.1,
        }
    }

    fn b<'a, A>(&self, data: &'a [A], batch: usize) -> Strided<'a, A> {
        Strided {
            data,
            offset: self.b_offsets[batch],
            rs: self.b_strides.0,
            cs: self.b_strides.1,
        }
    }

    /// Calls `one(batch, out matrix, parallelism)` for every batch: in parallel over the
    /// batch for many small matrices, otherwise one after another with gemm's threads.
    fn run<T: Send>(
        &self,
        out: &mut [T],
        one: impl Fn(usize, &mut [T], Parallelism) -> Result<()> + Sync,
    ) -> Result<()> {
        let size = self.m * self.n;
        if size == 0 {
            return Ok(());
        }
        let batches = self.a_offsets.len();
        if batches > 1 && self.m * self.n * self.k < SMALL_MATRIX_MACS {
            out.par_chunks_mut(size)
                .enumerate()
                .try_for_each(|(batch, dst)| one(batch, dst, Parallelism::None))
        } else {
            out.chunks_mut(size)
                .enumerate()
                .try_for_each(|(batch, dst)| one(batch, dst, Parallelism::Rayon(0)))
        }
    }
}

pub(crate) fn matmul(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    match out.dtype() {
        DType::F32 => matmul_native::<f32>(a, b, out),
        DType::F64 => matmul_native::<f64>(a, b, out),
        DType::BF16 => matmul_via_f32::<bf16>(a, b, out),
        DType::F16 => matmul_via_f32::<f16>(a, b, out),
        dtype => Err(Error::UnsupportedDType {
            op: "matmul",
            dtype,
            supported: "f64, f32, bf16, f16",
        }),
    }
}

fn matmul_native<A: GemmScalar>(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let borrows = Borrows::new();
    let plan = Plan::new(a, b, out)?;
    let a_data: &[A] = borrows.read("matmul", a.storage(), a.dtype(), a.element_range())?;
    let b_data: &[A] = borrows.read("matmul", b.storage(), b.dtype(), b.element_range())?;
    let dst = output::<A>(&borrows, "matmul", "out", out)?;
    plan.run(dst, |batch, dst, par| {
        gemm_into(
            (plan.m, plan.n, plan.k),
            GemmDst::overwrite(dst, plan.n),
            plan.a(a_data, batch),
            plan.b(b_data, batch),
            A::ONE,
            par,
        )
    })
}

/// Copies a strided `rows × cols` matrix into a row-major f32 buffer.
fn to_f32_panel<T: Element>(src: Strided<'_, T>, rows: usize, cols: usize, dst: &mut Vec<f32>) {
    dst.clear();
    for i in 0..rows {
        let row = src.offset + i * src.rs;
        dst.extend((0..cols).map(|j| src.data[row + j * src.cs].to_f32()));
    }
}

/// bf16/f16: each matrix is widened to f32, multiplied with f32 accumulation, and the
/// result rounded back.
fn matmul_via_f32<T: Element>(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let borrows = Borrows::new();
    let plan = Plan::new(a, b, out)?;
    let (m, n, k) = (plan.m, plan.n, plan.k);
    let a_data: &[T] = borrows.read("matmul", a.storage(), a.dtype(), a.element_range())?;
    let b_data: &[T] = borrows.read("matmul", b.storage(), b.dtype(), b.element_range())?;
    let dst = output::<T>(&borrows, "matmul", "out", out)?;
    plan.run(dst, |batch, dst, par| {
        let (mut a32, mut b32) = (Vec::new(), Vec::new());
        to_f32_panel(plan.a(a_data, batch), m, k, &mut a32);
        to_f32_panel(plan.b(b_data, batch), k, n, &mut b32);
        let mut out32 = vec![0f32; m * n];
        let row_major = |data, cols| Strided {
            data,
            offset: 0,
            rs: cols,
            cs: 1,
        };
        gemm_into(
            (m, n, k),
            GemmDst::overwrite(&mut out32, n),
            row_major(&a32, k),
            row_major(&b32, n),
            1.0,
            par,
        )?;
        for (d, s) in dst.iter_mut().zip(&out32) {
            *d = T::from_f32(*s);
        }
        Ok(())
    })
}
