//! CPU kernels: unary, binary, compare, select. Dtype and op are dispatched once per call;
//! each (dtype, op) pair gets its own monomorphized loop from the elementwise engine.
//! bf16/f16 compute in f32 and round once on store.

use super::access::{output, Operand};
use super::dispatch::{with_any, with_width};
use super::map::{map1, map2, map3, map_in_place, map_into};
use super::numeric::{nan_max, nan_min, Int, Math};
use super::rows::{with_float, Acc, Float};
use crate::ops::{BinaryOp, CompareOp, UnaryOp};
use crate::{Error, Result};
use bytemuck::Pod;
use luoshu_tensor::{Borrows, DType, Tensor};

pub(crate) fn unary(op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
    match out.dtype() {
        DType::I64 => unary_int::<i64>(op, x, out),
        DType::I32 => unary_int::<i32>(op, x, out),
        other => with_float!(op.name(), other, |T| unary_float::<T>(op, x, out)),
    }
}

fn unary_float<T: Float>(op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()>
where
    T::Acc: Math,
{
    let one = <T::Acc as Acc>::ONE;
    let zero = <T::Acc as Acc>::ZERO;
    let half = <T::Acc as Math>::HALF;
    let frac_1_sqrt_2 = <T::Acc as Math>::FRAC_1_SQRT_2;
    let name = op.name();
    match op {
        UnaryOp::Neg => unary_with::<T>(name, x, out, |v| -v),
        UnaryOp::Abs => unary_with::<T>(name, x, out, Math::abs),
        UnaryOp::Exp => unary_with::<T>(name, x, out, Acc::exp),
        UnaryOp::Log => unary_with::<T>(name, x, out, Acc::ln),
        UnaryOp::Sqrt => unary_with::<T>(name, x, out, Acc::sqrt),
        UnaryOp::Rsqrt => unary_with::<T>(name, x, out, |v| one / v.sqrt()),
        UnaryOp::Recip => unary_with::<T>(name, x, out, |v| one / v),
        UnaryOp::Sin => unary_with::<T>(name, x, out, Math::sin),
        UnaryOp::Cos => unary_with::<T>(name, x, out, Math::cos),
        UnaryOp::Tanh => unary_with::<T>(name, x, out, Math::tanh),
        UnaryOp::Sigmoid => unary_with::<T>(name, x, out, |v| one / (one + (-v).exp())),
        // A comparison, so NaN passes through.
        UnaryOp::Relu => unary_with::<T>(name, x, out, |v| if v < zero { zero } else { v }),
        UnaryOp::Silu => unary_with::<T>(name, x, out, |v| v / (one + (-v).exp())),
        UnaryOp::Gelu => unary_with::<T>(name, x, out, |v| {
            half * v * (one + (v * frac_1_sqrt_2).erf())
        }),
    }
}

fn unary_with<T: Float>(
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    f: impl Fn(T::Acc) -> T::Acc + Sync + Send,
) -> Result<()> {
    same_type_unary::<T>(op, x, out, move |v| T::store(f(v.load())))
}

fn unary_int<T: Int>(op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
    let name = op.name();
    match op {
        UnaryOp::Neg => same_type_unary::<T>(name, x, out, Int::wrapping_neg),
        UnaryOp::Abs => same_type_unary::<T>(name, x, out, Int::wrapping_abs),
        UnaryOp::Relu => same_type_unary::<T>(name, x, out, |v| v.max(T::ZERO)),
        _ => Err(Error::UnsupportedDType {
            op: name,
            dtype: out.dtype(),
            supported: "f64, f32, bf16, f16",
        }),
    }
}

/// `out = f(x)` where `out` may be the same region as `x`.
fn same_type_unary<T: Pod + Send + Sync>(
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    f: impl Fn(T) -> T + Sync + Send,
) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, access) = output::<T>(&borrows, op, out)?;
    match access.input::<T>(op, x)? {
        Operand::View(x) => map1(x, dst, f),
        Operand::Output => map_in_place(dst, f),
    }
    Ok(())
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let name = op.name();
    match out.dtype() {
        DType::I64 => binary_int::<i64>(op, a, b, out),
        DType::I32 => binary_int::<i32>(op, a, b, out),
        DType::U8 => binary_int::<u8>(op, a, b, out),
        other => with_float!(name, other, |T| binary_float::<T>(op, a, b, out)),
    }
}

fn binary_float<T: Float>(op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()>
where
    T::Acc: Math,
{
    let name = op.name();
    match op {
        BinaryOp::Add => binary_with::<T>(name, a, b, out, |x, y| x + y),
        BinaryOp::Sub => binary_with::<T>(name, a, b, out, |x, y| x - y),
        BinaryOp::Mul => binary_with::<T>(name, a, b, out, |x, y| x * y),
        BinaryOp::Div => binary_with::<T>(name, a, b, out, |x, y| x / y),
        BinaryOp::Maximum => binary_with::<T>(name, a, b, out, nan_max),
        BinaryOp::Minimum => binary_with::<T>(name, a, b, out, nan_min),
        BinaryOp::Pow => binary_with::<T>(name, a, b, out, Math::powf),
    }
}

fn binary_with<T: Float>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    f: impl Fn(T::Acc, T::Acc) -> T::Acc + Sync + Send + Copy,
) -> Result<()> {
    same_type_binary::<T>(op, a, b, out, move |x, y| T::store(f(x.load(), y.load())))
}

fn binary_int<T: Int>(op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let name = op.name();
    match op {
        BinaryOp::Add => same_type_binary::<T>(name, a, b, out, Int::wrapping_add),
        BinaryOp::Sub => same_type_binary::<T>(name, a, b, out, Int::wrapping_sub),
        BinaryOp::Mul => same_type_binary::<T>(name, a, b, out, Int::wrapping_mul),
        BinaryOp::Maximum => same_type_binary::<T>(name, a, b, out, Ord::max),
        BinaryOp::Minimum => same_type_binary::<T>(name, a, b, out, Ord::min),
        BinaryOp::Div | BinaryOp::Pow => Err(Error::UnsupportedDType {
            op: name,
            dtype: out.dtype(),
            supported: "f64, f32, bf16, f16",
        }),
    }
}

/// `out = f(a, b)` where `out` may be the same region as `a`, `b` or both.
fn same_type_binary<T: Pod + Send + Sync>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    f: impl Fn(T, T) -> T + Sync + Send + Copy,
) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, access) = output::<T>(&borrows, op, out)?;
    match (access.input::<T>(op, a)?, access.input::<T>(op, b)?) {
        (Operand::View(a), Operand::View(b)) => map2(a, b, dst, f),
        (Operand::Output, Operand::View(b)) => map_into(b, dst, f),
        (Operand::View(a), Operand::Output) => map_into(a, dst, move |o, x| f(x, o)),
        (Operand::Output, Operand::Output) => map_in_place(dst, move |o| f(o, o)),
    }
    Ok(())
}

pub(crate) fn compare(op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let name = op.name();
    with_any!(name, a.dtype(), |T| match op {
        CompareOp::Eq => compare_with::<T>(name, a, b, out, |x, y| x == y),
        CompareOp::Lt => compare_with::<T>(name, a, b, out, |x, y| x < y),
        CompareOp::Le => compare_with::<T>(name, a, b, out, |x, y| x <= y),
        CompareOp::Gt => compare_with::<T>(name, a, b, out, |x, y| x > y),
        CompareOp::Ge => compare_with::<T>(name, a, b, out, |x, y| x >= y),
    })
}

/// Compares in the element type itself: bf16/f16 order exactly like their f32 values, and
/// every comparison with NaN is false.
fn compare_with<T: Pod + PartialOrd + Sync>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    f: impl Fn(T, T) -> bool + Sync + Send,
) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, access) = output::<u8>(&borrows, op, out)?;
    map2(
        access.view::<T>(op, a)?,
        access.view::<T>(op, b)?,
        dst,
        move |x, y| u8::from(f(x, y)),
    );
    Ok(())
}

pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let borrows = Borrows::new();
    with_width!(out.dtype(), |T| {
        let (dst, access) = output::<T>(&borrows, "where", out)?;
        let cond = access.view::<u8>("where", cond)?;
        let (a, b) = (access.view::<T>("where", a)?, access.view::<T>("where", b)?);
        map3(cond, a, b, dst, |c, x, y| if c != 0 { x } else { y });
        Ok(())
    })
}
