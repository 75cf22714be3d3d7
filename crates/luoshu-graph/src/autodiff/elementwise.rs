//! Gradients of elementwise ops. Inputs may have been broadcast, so each input's gradient is
//! summed back to its own shape.

use super::step::{Grads, Step};
use crate::{Graph, Op, Result, Value};
use luoshu_backend::ops::{BinaryOp, CompareOp, UnaryOp};

/// `1/√(2π)`, the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    match &s.node.op {
        Op::Unary(op) => s.each(g, |g, _, dy| unary(g, *op, s.x(0), s.y(0), dy).map(Some)),
        Op::Binary(op) => s.each(g, |g, i, dy| {
            let d = binary(g, *op, i, s, dy)?;
            let shape = g.shape_of(s.x(i));
            g.sum_to(d, &shape).map(Some)
        }),
        Op::Select => s.each(g, |g, i, dy| {
            if i == 0 {
                return Ok(None);
            }
            let zero = g.scalar(0.0, g.dtype_of(dy))?;
            let (on_true, on_false) = if i == 1 { (dy, zero) } else { (zero, dy) };
            let d = g.select(s.x(0), on_true, on_false)?;
            let shape = g.shape_of(s.x(i));
            g.sum_to(d, &shape).map(Some)
        }),
        // Only float-to-float casts get here: gradients flow through float values only.
        Op::Cast(_) => s.each(g, |g, _, dy| {
            let dtype = g.dtype_of(s.x(0));
            g.cast(dy, dtype).map(Some)
        }),
        // Comparisons are piecewise constant: no gradient.
        Op::Compare(_) => Ok(vec![None; s.node.inputs.len()]),
        _ => Err(s.not_in_family("elementwise")),
    }
}

/// `dy · f'(x)` for `y = f(x)`.
fn unary(g: &mut Graph, op: UnaryOp, x: Value, y: Value, dy: Value) -> Result<Value> {
    let local = match op {
        UnaryOp::Neg => return g.neg(dy),
        UnaryOp::Log => return g.div(dy, x),
        UnaryOp::Relu => {
            let zero = g.scalar(0.0, g.dtype_of(x))?;
            let positive = g.compare(CompareOp::Gt, x, zero)?;
            return g.select(positive, dy, zero);
        }
        UnaryOp::Sqrt => {
            let twice = g.mul_scalar(y, 2.0)?;
            return g.div(dy, twice);
        }
        UnaryOp::Abs => sign(g, x)?,
        UnaryOp::Exp => y,
        UnaryOp::Rsqrt => {
            let cube = g.mul(y, y)?;
            let cube = g.mul(cube, y)?;
            g.mul_scalar(cube, -0.5)?
        }
        UnaryOp::Recip => {
            let square = g.mul(y, y)?;
            g.neg(square)?
        }
        UnaryOp::Sin => g.cos(x)?,
        UnaryOp::Cos => {
            let sin = g.sin(x)?;
            g.neg(sin)?
        }
        UnaryOp::Tanh => {
            let square = g.mul(y, y)?;
            one_minus(g, square)?
        }
        UnaryOp::Sigmoid => {
            let rest = one_minus(g, y)?;
            g.mul(y, rest)?
        }
        // silu' = s·(1 + x·(1 - s)) with s = sigmoid(x).
        UnaryOp::Silu => {
            let s = g.sigmoid(x)?;
            let rest = one_minus(g, s)?;
            let t = g.mul(x, rest)?;
            let t = g.add_scalar(t, 1.0)?;
            g.mul(s, t)?
        }
        UnaryOp::Gelu => gelu_derivative(g, x, y)?,
    };
    g.mul(dy, local)
}

fn one_minus(g: &mut Graph, v: Value) -> Result<Value> {
    let one = g.scalar(1.0, g.dtype_of(v))?;
    g.sub(one, v)
}

/// `sign(x)` in `x`'s dtype (0 at 0).
fn sign(g: &mut Graph, x: Value) -> Result<Value> {
    let dtype = g.dtype_of(x);
    let zero = g.scalar(0.0, dtype)?;
    let positive = g.compare(CompareOp::Gt, x, zero)?;
    let negative = g.compare(CompareOp::Lt, x, zero)?;
    let positive = g.cast(positive, dtype)?;
    let negative = g.cast(negative, dtype)?;
    g.sub(positive, negative)
}

/// `d/dx x·Φ(x) = Φ(x) + x·φ(x)`. There is no erf primitive, so `Φ(x) = gelu(x)/x`, with
/// its Taylor form `1/2 + x/√(2π)` near 0, where the quotient is 0/0 or loses precision.
fn gelu_derivative(g: &mut Graph, x: Value, y: Value) -> Result<Value> {
    let dtype = g.dtype_of(x);
    let magnitude = g.abs(x)?;
    let threshold = g.scalar(1e-4, dtype)?;
    let near_zero = g.compare(CompareOp::Lt, magnitude, threshold)?;
    let taylor = g.mul_scalar(x, INV_SQRT_2PI)?;
    let taylor = g.add_scalar(taylor, 0.5)?;
    let quotient = g.div(y, x)?;
    let cdf = g.select(near_zero, taylor, quotient)?;
    let square = g.mul(x, x)?;
    let pdf = g.mul_scalar(square, -0.5)?;
    let pdf = g.exp(pdf)?;
    let pdf = g.mul_scalar(pdf, INV_SQRT_2PI)?;
    let x_pdf = g.mul(x, pdf)?;
    g.plus(cdf, x_pdf)
}

/// The gradient of `y = op(a, b)` for input `i`, at the broadcast output shape.
fn binary(g: &mut Graph, op: BinaryOp, i: usize, s: &Step, dy: Value) -> Result<Value> {
    let (a, b) = (s.x(0), s.x(1));
    match (op, i) {
        (BinaryOp::Add, _) | (BinaryOp::Sub, 0) => Ok(dy),
        (BinaryOp::Sub, _) => g.neg(dy),
        (BinaryOp::Mul, 0) => g.mul(dy, b),
        (BinaryOp::Mul, _) => g.mul(dy, a),
        (BinaryOp::Div, 0) => g.div(dy, b),
        // d(a/b)/db = -y/b.
        (BinaryOp::Div, _) => {
            let t = g.mul(dy, s.y(0))?;
            let t = g.div(t, b)?;
            g.neg(t)
        }
        (BinaryOp::Maximum, _) => winner_takes(g, CompareOp::Ge, i, a, b, dy),
        (BinaryOp::Minimum, _) => winner_takes(g, CompareOp::Le, i, a, b, dy),
        // d(a^b)/da = b·a^(b-1); d(a^b)/db = y·ln(a).
        (BinaryOp::Pow, 0) => {
            let b_minus_one = g.add_scalar(b, -1.0)?;
            let t = g.pow(a, b_minus_one)?;
            let t = g.mul(b, t)?;
            g.mul(dy, t)
        }
        (BinaryOp::Pow, _) => {
            let ln_a = g.log(a)?;
            let t = g.mul(s.y(0), ln_a)?;
            g.mul(dy, t)
        }
    }
}

/// Route `dy` to the input that `max`/`min` chose (`a` on ties, so the total is `dy`).
fn winner_takes(
    g: &mut Graph,
    a_wins_when: CompareOp,
    i: usize,
    a: Value,
    b: Value,
    dy: Value,
) -> Result<Value> {
    let a_wins = g.compare(a_wins_when, a, b)?;
    let zero = g.scalar(0.0, g.dtype_of(dy))?;
    if i == 0 {
        g.select(a_wins, dy, zero)
    } else {
        g.select(a_wins, zero, dy)
    }
}
