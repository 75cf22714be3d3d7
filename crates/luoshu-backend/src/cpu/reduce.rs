//! CPU kernels: reduce (sum, mean, max, min) and argmax, as [`Reduction`]s run by the
//! shared engine. Float sums accumulate in f64 (8 independent lanes along contiguous runs,
//! so the loop still vectorizes), which keeps sums of 1e5+ f32 elements within f32
//! rounding of the exact value; integer sums wrap.

use super::access::output;
use super::numeric::{nan_max, nan_min, Int, Math};
use super::reduction::{reduce_into, Reduction};
use super::rows::{lane_sum, with_float, Acc, Float};
use crate::ops::ReduceOp;
use crate::{Error, Result};
use bytemuck::Pod;
use half::{bf16, f16};
use luoshu_tensor::{Borrows, DType, Tensor};
use std::marker::PhantomData;

const LANES: usize = 8;

pub(crate) fn reduce(op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
    let name = op.name();
    match (op, x.dtype()) {
        (ReduceOp::Sum | ReduceOp::Max | ReduceOp::Min, DType::I64) => {
            reduce_int::<i64>(op, x, axes, out)
        }
        (ReduceOp::Sum | ReduceOp::Max | ReduceOp::Min, DType::I32) => {
            reduce_int::<i32>(op, x, axes, out)
        }
        (_, dtype) => with_float!(name, dtype, |T| match op {
            ReduceOp::Sum => run::<T, _>(name, &FloatSum::<T>::new(false), x, axes, out),
            ReduceOp::Mean => run::<T, _>(name, &FloatSum::<T>::new(true), x, axes, out),
            ReduceOp::Max =>
                run::<T, _>(name, &FloatExtremum::<T, true>(PhantomData), x, axes, out),
            ReduceOp::Min =>
                run::<T, _>(name, &FloatExtremum::<T, false>(PhantomData), x, axes, out),
        }),
    }
}

fn reduce_int<T: Int>(op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
    let name = op.name();
    match op {
        ReduceOp::Sum => run::<T, _>(name, &IntSum::<T>(PhantomData), x, axes, out),
        ReduceOp::Max => run::<T, _>(name, &IntExtremum::<T, true>(PhantomData), x, axes, out),
        ReduceOp::Min => run::<T, _>(name, &IntExtremum::<T, false>(PhantomData), x, axes, out),
        ReduceOp::Mean => Err(Error::UnsupportedDType {
            op: name,
            dtype: x.dtype(),
            supported: "f64, f32, bf16, f16",
        }),
    }
}

/// Index of the first maximum along `axis` (a NaN counts as the maximum).
pub(crate) fn argmax(x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
    match x.dtype() {
        DType::I64 => run::<i64, _>("argmax", &ArgMax, x, &[axis], out),
        DType::I32 => run::<i32, _>("argmax", &ArgMax, x, &[axis], out),
        other => with_float!("argmax", other, |T| run::<T, _>(
            "argmax",
            &ArgMax,
            x,
            &[axis],
            out
        )),
    }
}

fn run<T: Pod + Sync, R: Reduction<T>>(
    op: &'static str,
    r: &R,
    x: &Tensor,
    axes: &[usize],
    out: &Tensor,
) -> Result<()>
where
    R::Out: Pod,
{
    let borrows = Borrows::new();
    let (dst, access) = output::<R::Out>(&borrows, op, out)?;
    reduce_into(r, access.view::<T>(op, x)?, axes, dst);
    Ok(())
}

/// Sum (or mean) of floats, accumulated in f64.
struct FloatSum<T> {
    mean: bool,
    element: PhantomData<T>,
}

impl<T> FloatSum<T> {
    fn new(mean: bool) -> Self {
        FloatSum {
            mean,
            element: PhantomData,
        }
    }
}

impl<T: Float> Reduction<T> for FloatSum<T> {
    type Acc = f64;
    type Out = T;
    fn init(&self) -> f64 {
        0.0
    }
    fn step(&self, acc: f64, x: T, _: usize) -> f64 {
        acc + x.load().to_f64()
    }
    fn merge(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn run(&self, xs: &[T], _: usize) -> f64 {
        lane_sum(xs.len(), |i| xs[i].load().to_f64())
    }
    fn finish(&self, acc: f64, count: usize) -> T {
        if self.mean {
            T::from_f64(acc / count as f64)
        } else {
            T::from_f64(acc)
        }
    }
}

/// Max (`MAX`) or min of floats, propagating NaN.
struct FloatExtremum<T, const MAX: bool>(PhantomData<T>);

impl<T: Float, const MAX: bool> Reduction<T> for FloatExtremum<T, MAX>
where
    T::Acc: Math,
{
    type Acc = T::Acc;
    type Out = T;
    fn init(&self) -> T::Acc {
        if MAX {
            T::Acc::NEG_INFINITY
        } else {
            -T::Acc::NEG_INFINITY
        }
    }
    fn step(&self, acc: T::Acc, x: T, _: usize) -> T::Acc {
        self.merge(acc, x.load())
    }
    fn merge(&self, a: T::Acc, b: T::Acc) -> T::Acc {
        if MAX {
            nan_max(a, b)
        } else {
            nan_min(a, b)
        }
    }
    fn run(&self, xs: &[T], _: usize) -> T::Acc {
        // Independent lanes break the dependency chain so the loop vectorizes.
        let mut lanes = [self.init(); LANES];
        let blocks = xs.chunks_exact(LANES);
        let tail = blocks.remainder();
        for block in blocks {
            for (l, &x) in lanes.iter_mut().zip(block) {
                *l = self.merge(*l, x.load());
            }
        }
        let acc = lanes.iter().fold(self.init(), |a, &l| self.merge(a, l));
        tail.iter().fold(acc, |a, &x| self.merge(a, x.load()))
    }
    fn finish(&self, acc: T::Acc, _: usize) -> T {
        T::store(acc)
    }
}

/// Wrapping sum of integers.
struct IntSum<T>(PhantomData<T>);

impl<T: Int> Reduction<T> for IntSum<T> {
    type Acc = T;
    type Out = T;
    fn init(&self) -> T {
        T::ZERO
    }
    fn step(&self, acc: T, x: T, _: usize) -> T {
        acc.wrapping_add(x)
    }
    fn merge(&self, a: T, b: T) -> T {
        a.wrapping_add(b)
    }
    fn finish(&self, acc: T, _: usize) -> T {
        acc
    }
}

/// Max (`MAX`) or min of integers.
struct IntExtremum<T, const MAX: bool>(PhantomData<T>);

impl<T: Int, const MAX: bool> Reduction<T> for IntExtremum<T, MAX> {
    type Acc = T;
    type Out = T;
    fn init(&self) -> T {
        if MAX {
            T::MIN
        } else {
            T::MAX
        }
    }
    fn step(&self, acc: T, x: T, _: usize) -> T {
        self.merge(acc, x)
    }
    fn merge(&self, a: T, b: T) -> T {
        if MAX {
            a.max(b)
        } else {
            a.min(b)
        }
    }
    fn finish(&self, acc: T, _: usize) -> T {
        acc
    }
}

/// The comparison key of an argmax element.
trait ArgKey: Pod + Send + Sync {
    type Key: Copy + Send + Sync + PartialOrd;
    fn key(self) -> Self::Key;
    fn is_nan(key: Self::Key) -> bool;
}

macro_rules! float_key {
    ($($t:ty),*) => {$(
        impl ArgKey for $t {
            type Key = <$t as Float>::Acc;
            fn key(self) -> Self::Key {
                self.load()
            }
            fn is_nan(key: Self::Key) -> bool {
                key.is_nan()
            }
        }
    )*};
}
float_key!(f64, f32, bf16, f16);

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl ArgKey for $t {
            type Key = $t;
            fn key(self) -> $t {
                self
            }
            fn is_nan(_: $t) -> bool {
                false
            }
        }
    )*};
}
int_key!(i64, i32);

/// Marks an argmax accumulator that has seen no element.
const NO_INDEX: usize = usize::MAX;

struct ArgMax;

impl ArgMax {
    /// `b` (seen later) replaces `a`: strictly larger, or the first NaN.
    fn beats<T: ArgKey>(b: T::Key, a: T::Key) -> bool {
        b > a || (T::is_nan(b) && !T::is_nan(a))
    }
}

impl<T: ArgKey> Reduction<T> for ArgMax {
    type Acc = (T::Key, usize);
    type Out = i64;
    fn init(&self) -> Self::Acc {
        (T::zeroed().key(), NO_INDEX)
    }
    fn step(&self, acc: Self::Acc, x: T, i: usize) -> Self::Acc {
        let k = x.key();
        if acc.1 == NO_INDEX || Self::beats::<T>(k, acc.0) {
            (k, i)
        } else {
            acc
        }
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        if a.1 == NO_INDEX || (b.1 != NO_INDEX && Self::beats::<T>(b.0, a.0)) {
            b
        } else {
            a
        }
    }
    fn finish(&self, acc: Self::Acc, _: usize) -> i64 {
        acc.1 as i64
    }
}
