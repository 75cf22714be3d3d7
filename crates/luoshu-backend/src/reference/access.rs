//! Reading any tensor into plain values in logical order and writing values back, so every
//! reference kernel is written once over f64 (floats) or i64 (integers and bool).
//!
//! Kernels read *all* their inputs before writing any output, so an output that is the same
//! region as an input (in-place elementwise ops) never has a read and a write slice alive
//! at once.

use crate::{Error, Result};
use luoshu_tensor::{bf16, f16, Borrows, DType, Element, Tensor};

/// A tensor's elements in logical row-major order. Floats widen to f64 and integers and
/// bools to i64, both exactly, so integer arithmetic never goes through f64.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

/// The error for values of different kinds meeting in one op (`Ops` rules this out).
pub(super) fn mixed_kinds(op: &'static str) -> Error {
    Error::invalid(op, "operands mix float and integer dtypes")
}

impl Values {
    pub(super) fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
        }
    }

    /// The elements at `positions`, in that order.
    pub(super) fn pick(&self, op: &'static str, positions: &[usize]) -> Result<Values> {
        fn pick_from<T: Copy>(op: &'static str, v: &[T], positions: &[usize]) -> Result<Vec<T>> {
            positions
                .iter()
                .map(|&p| {
                    v.get(p).copied().ok_or_else(|| {
                        Error::invalid(op, format!("position {p} outside {} values", v.len()))
                    })
                })
                .collect()
        }
        Ok(match self {
            Values::Float(v) => Values::Float(pick_from(op, v, positions)?),
            Values::Int(v) => Values::Int(pick_from(op, v, positions)?),
        })
    }

    /// All `parts` one after another; they must be of one kind.
    pub(super) fn join(op: &'static str, parts: Vec<Values>) -> Result<Values> {
        let mut parts = parts.into_iter();
        let Some(mut joined) = parts.next() else {
            return Err(Error::invalid(op, "nothing to join"));
        };
        for part in parts {
            match (&mut joined, part) {
                (Values::Float(all), Values::Float(p)) => all.extend(p),
                (Values::Int(all), Values::Int(p)) => all.extend(p),
                _ => return Err(mixed_kinds(op)),
            }
        }
        Ok(joined)
    }

    /// `self[targets[i]] += src[i]` for every `i`, in order; integers wrap.
    pub(super) fn accumulate(
        &mut self,
        op: &'static str,
        targets: &[usize],
        src: &Values,
    ) -> Result<()> {
        if targets.len() != src.len() {
            return Err(Error::invalid(
                op,
                format!("{} targets for {} values", targets.len(), src.len()),
            ));
        }
        fn add_into<T: Copy>(
            op: &'static str,
            dst: &mut [T],
            targets: &[usize],
            src: &[T],
            add: fn(T, T) -> T,
        ) -> Result<()> {
            let len = dst.len();
            for (&t, &s) in targets.iter().zip(src) {
                let slot = dst.get_mut(t).ok_or_else(|| {
                    Error::invalid(op, format!("position {t} outside {len} values"))
                })?;
                *slot = add(*slot, s);
            }
            Ok(())
        }
        match (self, src) {
            (Values::Float(d), Values::Float(s)) => add_into(op, d, targets, s, |a, b| a + b),
            (Values::Int(d), Values::Int(s)) => add_into(op, d, targets, s, i64::wrapping_add),
            _ => Err(mixed_kinds(op)),
        }
    }
}

fn read_as<T: Element, U>(t: &Tensor, widen: impl Fn(T) -> U) -> Result<Vec<U>> {
    let borrows = Borrows::new();
    let region = t.element_range();
    let data: &[T] = borrows.read("reference read", t.storage(), t.dtype(), region.clone())?;
    Ok(t.layout()
        .offsets()
        .map(|o| widen(data[o - region.start]))
        .collect())
}

/// Every element of `t` in logical row-major order.
pub(super) fn read(t: &Tensor) -> Result<Values> {
    Ok(match t.dtype() {
        DType::F64 => Values::Float(read_as::<f64, _>(t, |v| v)?),
        DType::F32 => Values::Float(read_as::<f32, _>(t, f64::from)?),
        DType::BF16 => Values::Float(read_as::<bf16, _>(t, bf16::to_f64)?),
        DType::F16 => Values::Float(read_as::<f16, _>(t, f16::to_f64)?),
        DType::I64 => Values::Int(read_as::<i64, _>(t, |v| v)?),
        DType::I32 => Values::Int(read_as::<i32, _>(t, i64::from)?),
        DType::U8 | DType::Bool => Values::Int(read_as::<u8, _>(t, i64::from)?),
    })
}

fn write_as<T: Element, U: Copy>(
    out: &Tensor,
    values: &[U],
    narrow: impl Fn(U) -> T,
) -> Result<()> {
    if values.len() != out.numel() {
        return Err(Error::invalid(
            "reference write",
            format!(
                "{} values for an output of shape {:?}",
                values.len(),
                out.dims()
            ),
        ));
    }
    let borrows = Borrows::new();
    let region = out.element_range();
    let data: &mut [T] = borrows.write(
        "reference write",
        out.storage(),
        out.dtype(),
        region.clone(),
    )?;
    for (o, &v) in out.layout().offsets().zip(values) {
        data[o - region.start] = narrow(v);
    }
    Ok(())
}

/// Writes `values` (logical order) into `out`, converting like a numeric cast.
pub(super) fn write(out: &Tensor, values: &Values) -> Result<()> {
    match values {
        Values::Float(v) => write_floats(out, v),
        Values::Int(v) => write_ints(out, v),
    }
}

/// f64 into `out`'s dtype: floats round to nearest even, integers truncate toward zero and
/// saturate (Rust `as`), bool is `!= 0`.
pub(super) fn write_floats(out: &Tensor, v: &[f64]) -> Result<()> {
    match out.dtype() {
        DType::F64 => write_as(out, v, f64::from_f64),
        DType::F32 => write_as(out, v, <f32 as Element>::from_f64),
        DType::BF16 => write_as(out, v, <bf16 as Element>::from_f64),
        DType::F16 => write_as(out, v, <f16 as Element>::from_f64),
        DType::I64 => write_as(out, v, <i64 as Element>::from_f64),
        DType::I32 => write_as(out, v, <i32 as Element>::from_f64),
        DType::U8 => write_as(out, v, <u8 as Element>::from_f64),
        DType::Bool => write_as(out, v, |x: f64| u8::from(x != 0.0)),
    }
}

/// i64 into `out`'s dtype: narrower integers wrap (two's-complement truncation), floats
/// round to nearest, bool is `!= 0`.
fn write_ints(out: &Tensor, v: &[i64]) -> Result<()> {
    match out.dtype() {
        DType::F64 => write_as(out, v, |x: i64| x as f64),
        DType::F32 => write_as(out, v, |x: i64| x as f32),
        DType::BF16 => write_as(out, v, |x: i64| bf16::from_f64(x as f64)),
        DType::F16 => write_as(out, v, |x: i64| f16::from_f64(x as f64)),
        DType::I64 => write_as(out, v, |x: i64| x),
        DType::I32 => write_as(out, v, |x: i64| x as i32),
        DType::U8 => write_as(out, v, |x: i64| x as u8),
        DType::Bool => write_as(out, v, |x: i64| u8::from(x != 0)),
    }
}
