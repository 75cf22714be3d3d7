//! Elementwise ops of [`Ops`]: unary, binary (with broadcasting), comparisons, select and
//! random tensors.

use super::{check_dtype, check_no_overlap, check_no_partial_overlap, check_out, Ops};
use crate::ops::{BinaryOp, CompareOp, RandomDist, UnaryOp};
use crate::{Error, Result};
use luoshu_tensor::{broadcast_shapes, DType, Tensor};

fn check_unary_dtype(op: UnaryOp, x: &Tensor) -> Result<()> {
    let ok = x.dtype().is_float()
        || (op.allows_integers() && matches!(x.dtype(), DType::I64 | DType::I32));
    if ok {
        return Ok(());
    }
    Err(Error::UnsupportedDType {
        op: op.name(),
        dtype: x.dtype(),
        supported: if op.allows_integers() {
            "f32, bf16, f16, i64, i32"
        } else {
            "f32, bf16, f16"
        },
    })
}

fn check_binary_dtype(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<()> {
    check_dtype(op.name(), b, a.dtype())?;
    let ok = a.dtype().is_float()
        || (op.allows_integers() && matches!(a.dtype(), DType::I64 | DType::I32 | DType::U8));
    if ok {
        return Ok(());
    }
    Err(Error::UnsupportedDType {
        op: op.name(),
        dtype: a.dtype(),
        supported: if op.allows_integers() {
            "f32, bf16, f16, i64, i32, u8"
        } else {
            "f32, bf16, f16"
        },
    })
}

impl Ops<'_> {
    /// `out = op(x)`; `out` contiguous with `x`'s shape and dtype, either `x`'s own contiguous
    /// region (in place) or not overlapping it. Floats, and `i64`/`i32` where
    /// [`UnaryOp::allows_integers`].
    pub fn unary_into(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
        check_unary_dtype(op, x)?;
        check_out(op.name(), "out", out, x.dtype(), x.dims())?;
        check_no_partial_overlap(op.name(), out, &[x])?;
        self.backend.unary(op, x, out)
    }

    /// `op(x)` in a new tensor of `x`'s shape and dtype.
    pub fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        check_unary_dtype(op, x)?;
        let out = self.alloc(x.dtype(), x.dims())?;
        self.backend.unary(op, x, &out)?;
        Ok(out)
    }

    /// `out = op(a, b)` with `a` and `b` broadcast to `out`'s shape.
    pub fn binary_into(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        check_binary_dtype(op, a, b)?;
        let shape = broadcast_shapes(op.name(), a.dims(), b.dims())?;
        check_out(op.name(), "out", out, a.dtype(), shape.dims())?;
        check_no_partial_overlap(op.name(), out, &[a, b])?;
        let (a, b) = (a.broadcast_to(shape.clone())?, b.broadcast_to(shape)?);
        self.backend.binary(op, &a, &b, out)
    }

    /// `op(a, b)` with NumPy broadcasting.
    pub fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_binary_dtype(op, a, b)?;
        let shape = broadcast_shapes(op.name(), a.dims(), b.dims())?;
        let out = self.alloc(a.dtype(), shape.dims())?;
        let (a, b) = (a.broadcast_to(shape.clone())?, b.broadcast_to(shape)?);
        self.backend.binary(op, &a, &b, &out)?;
        Ok(out)
    }

    /// `a + b` with NumPy broadcasting.
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, a, b)
    }
    /// `a - b` with NumPy broadcasting.
    pub fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, a, b)
    }
    /// `a * b` with NumPy broadcasting.
    pub fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, a, b)
    }
    /// `a / b` with NumPy broadcasting (floats only).
    pub fn div(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `x * value` (a scalar broadcast; `x` a float tensor).
    pub fn scale(&self, x: &Tensor, value: f64) -> Result<Tensor> {
        let s = self.full(value, x.dtype(), &[])?;
        self.mul(x, &s)
    }

    /// `x + value` (a scalar broadcast).
    pub fn add_scalar(&self, x: &Tensor, value: f64) -> Result<Tensor> {
        let s = self.full(value, x.dtype(), &[])?;
        self.add(x, &s)
    }

    /// `out = op(a, b)` as `Bool`, `a` and `b` of one dtype broadcast to `out`'s shape; `out`
    /// must not overlap them.
    pub fn compare_into(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        check_dtype(op.name(), b, a.dtype())?;
        let shape = broadcast_shapes(op.name(), a.dims(), b.dims())?;
        check_out(op.name(), "out", out, DType::Bool, shape.dims())?;
        check_no_overlap(op.name(), "out", out, &[a, b])?;
        let (a, b) = (a.broadcast_to(shape.clone())?, b.broadcast_to(shape)?);
        self.backend.compare(op, &a, &b, out)
    }

    /// `op(a, b)` as a new `Bool` tensor of the broadcast shape.
    pub fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let shape = broadcast_shapes(op.name(), a.dims(), b.dims())?;
        let out = self.alloc(DType::Bool, shape.dims())?;
        self.compare_into(op, a, b, &out)?;
        Ok(out)
    }

    /// `out = cond ? a : b` with all three broadcast to `out`'s shape.
    pub fn select_into(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        check_dtype("where", cond, DType::Bool)?;
        check_dtype("where", b, a.dtype())?;
        let ab = broadcast_shapes("where", a.dims(), b.dims())?;
        let shape = broadcast_shapes("where", cond.dims(), ab.dims())?;
        check_out("where", "out", out, a.dtype(), shape.dims())?;
        check_no_overlap("where", "out", out, &[cond, a, b])?;
        let cond = cond.broadcast_to(shape.clone())?;
        let (a, b) = (a.broadcast_to(shape.clone())?, b.broadcast_to(shape)?);
        self.backend.select(&cond, &a, &b, out)
    }

    /// `cond ? a : b` in a new tensor, the three broadcast together (`cond` is `Bool`).
    pub fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let ab = broadcast_shapes("where", a.dims(), b.dims())?;
        let shape = broadcast_shapes("where", cond.dims(), ab.dims())?;
        let out = self.alloc(a.dtype(), shape.dims())?;
        self.select_into(cond, a, b, &out)?;
        Ok(out)
    }

    /// Fills the contiguous `out` with random values of `dist`, a pure function of `(seed, stream,
    /// element index)` (see [`crate::Backend::random`]). `out` is a float tensor, or `Bool` for
    /// Bernoulli; a distribution with non-finite or inverted bounds, a negative standard
    /// deviation or `p` outside `[0, 1]` is an error.
    pub fn random_into(
        &self,
        dist: RandomDist,
        seed: u64,
        stream: u64,
        out: &Tensor,
    ) -> Result<()> {
        super::check_contiguous("random", "out", out)?;
        if !(out.dtype().is_float()
            || matches!(dist, RandomDist::Bernoulli { .. }) && out.dtype() == DType::Bool)
        {
            return Err(Error::UnsupportedDType {
                op: "random",
                dtype: out.dtype(),
                supported: "f32, bf16, f16 (and bool for bernoulli)",
            });
        }
        let valid = match dist {
            RandomDist::Uniform { low, high } => low.is_finite() && high.is_finite() && low <= high,
            RandomDist::Normal { mean, std } => mean.is_finite() && std.is_finite() && std >= 0.0,
            RandomDist::Bernoulli { p } => (0.0..=1.0).contains(&p),
        };
        if !valid {
            return Err(Error::invalid(
                "random",
                format!("invalid distribution {dist:?}"),
            ));
        }
        self.backend.random(dist, seed, stream, out)
    }

    /// A new `dtype` tensor of `dims` filled like [`Ops::random_into`].
    pub fn random(
        &self,
        dist: RandomDist,
        seed: u64,
        stream: u64,
        dtype: DType,
        dims: &[usize],
    ) -> Result<Tensor> {
        let out = self.alloc(dtype, dims)?;
        self.random_into(dist, seed, stream, &out)?;
        Ok(out)
    }
}
