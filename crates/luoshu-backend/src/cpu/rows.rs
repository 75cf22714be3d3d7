//! Shared pieces of the fused row kernels: the float element types and the precision they
//! compute in, typed access to the contiguous regions `Ops` hands over, fixed (and so
//! deterministic) chunking of rows for rayon, and lane-split sums that vectorize.

use crate::{Error, Result};
use half::{bf16, f16};
use luoshu_tensor::{Borrows, DType, Element, Tensor};
use rayon::iter::Either;
use rayon::prelude::*;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// Elements one rayon task handles at least, so a task does real work.
const TASK_ELEMS: usize = 16 * 1024;
/// Most per-task partial results a cross-row reduction keeps (bounds their memory).
const MAX_PARTIALS: usize = 32;
/// Independent accumulators of [`lane_sum`]: breaks the add dependency chain so the loop
/// vectorizes, with a fixed combination order.
const LANES: usize = 8;

/// The precision a kernel computes in: f32 for f32/bf16/f16, f64 for f64.
pub(crate) trait Acc:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn from_usize(v: usize) -> Self;
    fn to_f32(self) -> f32;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn max(self, other: Self) -> Self;
}

macro_rules! acc_impl {
    ($t:ty) => {
        impl Acc for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
        }
    };
}
acc_impl!(f32);
acc_impl!(f64);

/// A float element type: read into its compute precision on the fly, rounded once on store.
pub(crate) trait Float: Element {
    type Acc: Acc;
    fn load(self) -> Self::Acc;
    fn store(v: Self::Acc) -> Self;
    /// Read into another element type's precision (a weight of a different dtype).
    fn load_as<A: Acc>(self) -> A;
    /// Round a value of another element type's precision to this type.
    fn store_from<A: Acc>(v: A) -> Self;
}

impl Float for f64 {
    type Acc = f64;
    fn load(self) -> f64 {
        self
    }
    fn store(v: f64) -> Self {
        v
    }
    fn load_as<A: Acc>(self) -> A {
        A::from_f64(self)
    }
    fn store_from<A: Acc>(v: A) -> Self {
        v.to_f64()
    }
}

macro_rules! f32_computed {
    ($t:ty) => {
        impl Float for $t {
            type Acc = f32;
            fn load(self) -> f32 {
                Element::to_f32(self)
            }
            fn store(v: f32) -> Self {
                <$t as Element>::from_f32(v)
            }
            fn load_as<A: Acc>(self) -> A {
                A::from_f32(Element::to_f32(self))
            }
            fn store_from<A: Acc>(v: A) -> Self {
                <$t as Element>::from_f32(v.to_f32())
            }
        }
    };
}
f32_computed!(f32);
f32_computed!(bf16);
f32_computed!(f16);

/// Runs `$body` with `$T` bound to the Rust type of the float dtype `$dtype`.
macro_rules! with_float {
    ($op:expr, $dtype:expr, |$T:ident| $body:expr) => {
        match $dtype {
            luoshu_tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            luoshu_tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            luoshu_tensor::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            luoshu_tensor::DType::F16 => {
                type $T = half::f16;
                $body
            }
            other => Err($crate::cpu::rows::not_float($op, other)),
        }
    };
}
pub(crate) use with_float;

pub(crate) fn not_float(op: &'static str, dtype: DType) -> Error {
    Error::UnsupportedDType {
        op,
        dtype,
        supported: "f64, f32, bf16, f16",
    }
}

fn check_region(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    // An empty tensor has no elements to misplace, whatever its strides say.
    if t.numel() == 0 || t.is_contiguous() {
        return Ok(());
    }
    Err(Error::BadLayout {
        op,
        arg,
        requirement: "contiguous (Ops copies inputs before fused kernels)",
        dims: t.dims().to_vec(),
        strides: t.layout().strides().to_vec(),
    })
}

/// The elements of the contiguous input `t`, in row-major order, claimed for reading in
/// `borrows`.
pub(crate) fn input<'s, 'a, T: Element>(
    borrows: &'s Borrows<'a>,
    op: &'static str,
    arg: &'static str,
    t: &'a Tensor,
) -> Result<&'s [T]> {
    check_region(op, arg, t)?;
    Ok(borrows.read(op, t.storage(), t.dtype(), t.element_range())?)
}

/// The elements of the contiguous output (or in-place operand) `t`, claimed for writing in
/// `borrows`.
pub(crate) fn output<'s, 'a, T: Element>(
    borrows: &'s Borrows<'a>,
    op: &'static str,
    arg: &'static str,
    t: &'a Tensor,
) -> Result<&'s mut [T]> {
    check_region(op, arg, t)?;
    Ok(borrows.write(op, t.storage(), t.dtype(), t.element_range())?)
}

/// Rows per rayon task for row kernels on rows of `width` elements (depends only on the
/// width, never on the thread count).
pub(crate) fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMS / width.max(1)).max(1)
}

/// Rows per task for kernels that also reduce across rows: at most [`MAX_PARTIALS`] tasks,
/// each producing one partial result. A function of the shape only, so the partial sums
/// and their combination order are the same on every run.
pub(crate) fn rows_per_partial(rows: usize, width: usize) -> usize {
    rows_per_task(width).max(rows.div_ceil(MAX_PARTIALS))
}

/// Number of tasks covering `rows` rows with `per_task` rows each.
pub(crate) fn task_count(rows: usize, per_task: usize) -> usize {
    rows.div_ceil(per_task)
}

/// `data` (rows of `width` elements, `rows` of them) split into tasks of `per_task` rows.
/// Yields exactly `task_count(rows, per_task)` chunks, even when `width` is 0.
pub(crate) fn row_chunks_mut<T: Send>(
    data: &mut [T],
    width: usize,
    rows: usize,
    per_task: usize,
) -> impl IndexedParallelIterator<Item = &mut [T]> {
    if width == 0 {
        Either::Left((0..task_count(rows, per_task)).into_par_iter().map(|_| {
            let empty: &mut [T] = &mut [];
            empty
        }))
    } else {
        Either::Right(data.par_chunks_mut(per_task * width))
    }
}

/// Element chunk length for elementwise kernels.
pub(crate) const ELEMS_PER_TASK: usize = TASK_ELEMS;

/// `Σ f(i)` for `i < n` with [`LANES`] independent accumulators combined in a fixed order.
#[inline]
pub(crate) fn lane_sum<A: Acc>(n: usize, f: impl Fn(usize) -> A) -> A {
    let mut lanes = [A::ZERO; LANES];
    for block in 0..n / LANES {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += f(block * LANES + l);
        }
    }
    let mut tail = A::ZERO;
    for i in n - n % LANES..n {
        tail += f(i);
    }
    lanes.iter().fold(A::ZERO, |s, &v| s + v) + tail
}

/// The largest element (`-inf` for none), over independent lanes so the loop vectorizes.
pub(crate) fn lane_max<A: Acc>(x: &[A]) -> A {
    let mut lanes = [A::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(A::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Sums per-task partial vectors element by element in task order (deterministic).
pub(crate) fn sum_partials<'a, A: Acc>(
    partials: impl Iterator<Item = &'a [A]>,
    width: usize,
) -> Vec<A> {
    let mut total = vec![A::ZERO; width];
    for partial in partials {
        for (t, &p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    total
}

/// A small parameter vector (a norm's weight) of any float dtype, read into precision `A`
/// once so the row loops do not convert it again for every row.
pub(crate) fn load_vec<A: Acc>(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Vec<A>> {
    let borrows = Borrows::new();
    with_float!(op, t.dtype(), |W| Ok(input::<W>(&borrows, op, arg, t)?
        .iter()
        .map(|&w| w.load_as::<A>())
        .collect()))
}

/// Writes `values` into the parameter-shaped output `t` of any float dtype.
pub(crate) fn store_vec<A: Acc>(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    values: &[A],
) -> Result<()> {
    let borrows = Borrows::new();
    with_float!(op, t.dtype(), |W| {
        for (o, &v) in output::<W>(&borrows, op, arg, t)?.iter_mut().zip(values) {
            *o = W::store_from(v);
        }
        Ok(())
    })
}
