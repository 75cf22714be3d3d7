//! Reference kernels: unary, binary, compare, select. Floats compute in f64, integers in
//! i64 with wrapping arithmetic (narrower integers wrap when written back).

use super::access::{mixed_kinds, read, write, Values};
use crate::ops::{BinaryOp, CompareOp, UnaryOp};
use crate::{Error, Result};
use luoshu_tensor::Tensor;

/// `max` that propagates NaN (Rust's `f64::max` ignores it).
pub(super) fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min` that propagates NaN.
pub(super) fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn unary_float(op: UnaryOp) -> fn(f64) -> f64 {
    match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Recip => |x| 1.0 / x,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Sigmoid => sigmoid,
        // Written as a comparison so NaN passes through (`f64::max` would turn it into 0).
        UnaryOp::Relu => |x| if x < 0.0 { 0.0 } else { x },
        UnaryOp::Silu => |x| x * sigmoid(x),
        UnaryOp::Gelu => |x| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
    }
}

fn unary_int(op: UnaryOp) -> Result<fn(i64) -> i64> {
    match op {
        UnaryOp::Neg => Ok(i64::wrapping_neg),
        UnaryOp::Abs => Ok(i64::wrapping_abs),
        UnaryOp::Relu => Ok(|x| x.max(0)),
        _ => Err(Error::invalid(op.name(), "not defined on integer dtypes")),
    }
}

fn binary_float(op: BinaryOp) -> fn(f64, f64) -> f64 {
    match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Maximum => nan_max,
        BinaryOp::Minimum => nan_min,
        BinaryOp::Pow => f64::powf,
    }
}

fn binary_int(op: BinaryOp) -> Result<fn(i64, i64) -> i64> {
    match op {
        BinaryOp::Add => Ok(i64::wrapping_add),
        BinaryOp::Sub => Ok(i64::wrapping_sub),
        BinaryOp::Mul => Ok(i64::wrapping_mul),
        BinaryOp::Maximum => Ok(i64::max),
        BinaryOp::Minimum => Ok(i64::min),
        BinaryOp::Div | BinaryOp::Pow => {
            Err(Error::invalid(op.name(), "not defined on integer dtypes"))
        }
    }
}

/// Comparisons with the operators themselves, so any comparison with NaN is false.
fn compare_with<T: PartialOrd>(op: CompareOp) -> fn(&T, &T) -> bool {
    match op {
        CompareOp::Eq => |a, b| a == b,
        CompareOp::Lt => |a, b| a < b,
        CompareOp::Le => |a, b| a <= b,
        CompareOp::Gt => |a, b| a > b,
        CompareOp::Ge => |a, b| a >= b,
    }
}

pub(super) fn unary(op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
    let result = match read(x)? {
        Values::Float(v) => Values::Float(v.into_iter().map(unary_float(op)).collect()),
        Values::Int(v) => Values::Int(v.into_iter().map(unary_int(op)?).collect()),
    };
    write(out, &result)
}

pub(super) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let result = match (read(a)?, read(b)?) {
        (Values::Float(a), Values::Float(b)) => {
            let f = binary_float(op);
            Values::Float(a.into_iter().zip(b).map(|(x, y)| f(x, y)).collect())
        }
        (Values::Int(a), Values::Int(b)) => {
            let f = binary_int(op)?;
            Values::Int(a.into_iter().zip(b).map(|(x, y)| f(x, y)).collect())
        }
        _ => return Err(mixed_kinds(op.name())),
    };
    write(out, &result)
}

pub(super) fn compare(op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    fn apply<T: PartialOrd>(op: CompareOp, a: &[T], b: &[T]) -> Vec<i64> {
        let f = compare_with::<T>(op);
        a.iter().zip(b).map(|(x, y)| i64::from(f(x, y))).collect()
    }
    let result = match (read(a)?, read(b)?) {
        (Values::Float(a), Values::Float(b)) => apply(op, &a, &b),
        (Values::Int(a), Values::Int(b)) => apply(op, &a, &b),
        _ => return Err(mixed_kinds(op.name())),
    };
    write(out, &Values::Int(result))
}

/// `out[i]` is element `i` of `a` or of `b`: picked from `a` and `b` laid end to end.
pub(super) fn select(cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let Values::Int(cond) = read(cond)? else {
        return Err(mixed_kinds("where"));
    };
    let n = cond.len();
    let positions: Vec<usize> = cond
        .iter()
        .enumerate()
        .map(|(i, &c)| if c != 0 { i } else { n + i })
        .collect();
    let both = Values::join("where", vec![read(a)?, read(b)?])?;
    write(out, &both.pick("where", &positions)?)
}
