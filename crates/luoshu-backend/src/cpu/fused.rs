//! The fused elementwise kernel: an `ElementwiseProgram` run over the output in blocks of
//! [`BLOCK`] elements. Each instruction runs over a whole block into a register of that
//! block (f32 for f32/bf16/f16, f64, i64, i32, u8 for u8/bool), so the op and dtype are
//! dispatched once per instruction per block, never per element, and every input and the
//! output are touched once. Blocks are grouped into rayon tasks of fixed size.

use super::access::{output, Access, Operand, View};
use super::dispatch::with_any;
use super::numeric::{nan_max, nan_min, CastTo, Int, Math};
use super::parallel::for_blocks;
use super::rows::Acc;
use super::strided::{Lane, Walker};
use crate::ops::{BinaryOp, CompareOp, ElementwiseProgram, FusedInstr, UnaryOp};
use crate::{Error, Result};
use bytemuck::Pod;
use half::{bf16, f16};
use luoshu_tensor::{Borrows, DType, Tensor};
use std::sync::Mutex;

const OP: &str = "fused_elementwise";
/// Elements per block: small enough that a program's registers stay in L1/L2.
const BLOCK: usize = 256;

/// One register: a block of values in the compute type of its dtype.
enum Reg {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl Reg {
    fn new(dtype: DType) -> Reg {
        match dtype {
            DType::F64 => Reg::F64(vec![0.0; BLOCK]),
            DType::F32 | DType::BF16 | DType::F16 => Reg::F32(vec![0.0; BLOCK]),
            DType::I64 => Reg::I64(vec![0; BLOCK]),
            DType::I32 => Reg::I32(vec![0; BLOCK]),
            DType::U8 | DType::Bool => Reg::U8(vec![0; BLOCK]),
        }
    }
}

/// A register of another compute type than the instruction needs: a bug, since
/// `register_dtypes` validated the program.
fn mismatch(what: &str) -> Error {
    Error::invalid(
        OP,
        format!("{what}: register types do not match the program"),
    )
}

/// Element types of inputs and outputs: how they widen into and round out of registers.
trait Elem: Pod + Send + Sync {
    /// `reg[at..at + len] = lane` converted to the register's compute type.
    fn read(reg: &mut Reg, at: usize, lane: Lane<'_, Self>, len: usize) -> Result<()>;
    /// `dst = reg[..dst.len()]`, rounded to this type.
    fn write(reg: &Reg, dst: &mut [Self]) -> Result<()>;
}

macro_rules! elem {
    ($t:ty, $variant:ident, $load:expr, $store:expr) => {
        impl Elem for $t {
            fn read(reg: &mut Reg, at: usize, lane: Lane<'_, Self>, len: usize) -> Result<()> {
                let Reg::$variant(r) = reg else {
                    return Err(mismatch("load"));
                };
                let load = $load;
                let r = &mut r[at..at + len];
                match lane.stride {
                    0 => r.fill(load(lane.data[0])),
                    1 => r
                        .iter_mut()
                        .zip(&lane.data[..len])
                        .for_each(|(d, &v)| *d = load(v)),
                    s => r
                        .iter_mut()
                        .zip(lane.data.iter().step_by(s))
                        .for_each(|(d, &v)| *d = load(v)),
                }
                Ok(())
            }
            fn write(reg: &Reg, dst: &mut [Self]) -> Result<()> {
                let Reg::$variant(r) = reg else {
                    return Err(mismatch("store"));
                };
                let store = $store;
                dst.iter_mut().zip(r).for_each(|(d, &v)| *d = store(v));
                Ok(())
            }
        }
    };
}
elem!(f64, F64, |v: f64| v, |v: f64| v);
elem!(f32, F32, |v: f32| v, |v: f32| v);
elem!(bf16, F32, bf16::to_f32, bf16::from_f32);
elem!(f16, F32, f16::to_f32, f16::from_f32);
elem!(i64, I64, |v: i64| v, |v: i64| v);
elem!(i32, I32, |v: i32| v, |v: i32| v);
elem!(u8, U8, |v: u8| v, |v: u8| v);

/// Fills a register with input `k`'s elements at output positions `start..start + n`.
type Loader<'a> = Box<dyn Fn(&mut Reg, usize, usize) -> Result<()> + Send + Sync + 'a>;

enum Source<'a> {
    Input(Loader<'a>),
    /// The input is the output region itself (in place): read the block before writing it.
    Output,
}

fn loader<'a, T: Elem>(view: View<'a, T>) -> Loader<'a> {
    let walker = Walker::new(view.dims, [view.strides]);
    let [stride] = walker.inner_strides();
    Box::new(move |reg, start, n| {
        let mut status = Ok(());
        walker.for_each_run(start..start + n, |pos, len, [offset]| {
            if status.is_ok() {
                status = T::read(reg, pos - start, Lane::new(view.data, offset, stride), len);
            }
        });
        status
    })
}

fn source<'s, 'a>(access: &Access<'s, 'a>, t: &'a Tensor, out: &Tensor) -> Result<Source<'s>> {
    with_any!(OP, t.dtype(), |T| Ok(match access.input::<T>(OP, t)? {
        Operand::View(v) => Source::Input(loader::<T>(v)),
        Operand::Output if t.dtype() == out.dtype() => Source::Output,
        Operand::Output => return Err(Error::Aliasing { op: OP, arg: "out" }),
    }))
}

pub(crate) fn fused_elementwise(
    program: &ElementwiseProgram,
    inputs: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let dtypes = program.register_dtypes()?;
    with_any!(OP, out.dtype(), |O| run::<O>(program, &dtypes, inputs, out))
}

fn run<'a, O: Elem>(
    program: &ElementwiseProgram,
    dtypes: &[DType],
    inputs: &[&'a Tensor],
    out: &'a Tensor,
) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, access) = output::<O>(&borrows, OP, out)?;
    let sources = inputs
        .iter()
        .map(|t| source(&access, t, out))
        .collect::<Result<Vec<_>>>()?;
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let work_per_block = BLOCK * program.instrs.len().max(1);
    for_blocks(dst, BLOCK, work_per_block, |first_block, chunk| {
        let result = registers(program, dtypes).and_then(|mut regs| {
            for (b, block) in chunk.chunks_mut(BLOCK).enumerate() {
                let start = (first_block + b) * BLOCK;
                run_block(program, &sources, &mut regs, start, block)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            if let Ok(mut slot) = failure.lock() {
                slot.get_or_insert(e);
            }
        }
    });
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(Error::invalid(OP, "a worker panicked")),
    }
}

/// One register per instruction; constants are filled here once per task.
fn registers(program: &ElementwiseProgram, dtypes: &[DType]) -> Result<Vec<Reg>> {
    program
        .instrs
        .iter()
        .zip(dtypes)
        .map(|(instr, &dtype)| {
            let mut reg = Reg::new(dtype);
            if let FusedInstr::Constant { bits, dtype } = *instr {
                cast(
                    &Reg::F64(vec![f64::from_bits(bits); BLOCK]),
                    dtype,
                    &mut reg,
                    BLOCK,
                )?;
            }
            Ok(reg)
        })
        .collect()
}

fn run_block<O: Elem>(
    program: &ElementwiseProgram,
    sources: &[Source<'_>],
    regs: &mut [Reg],
    start: usize,
    block: &mut [O],
) -> Result<()> {
    let n = block.len();
    for (i, instr) in program.instrs.iter().enumerate() {
        let (prev, rest) = regs.split_at_mut(i);
        let dst = &mut rest[0];
        let reg = |r: usize| prev.get(r).ok_or_else(|| mismatch("operand"));
        match *instr {
            FusedInstr::Load(k) => match sources.get(k).ok_or_else(|| mismatch("load"))? {
                Source::Input(load) => load(dst, start, n)?,
                Source::Output => O::read(dst, 0, Lane::new(&*block, 0, 1), n)?,
            },
            FusedInstr::Constant { .. } => {}
            FusedInstr::Unary(op, x) => unary(op, reg(x)?, dst, n)?,
            FusedInstr::Binary(op, a, b) => binary(op, reg(a)?, reg(b)?, dst, n)?,
            FusedInstr::Compare(op, a, b) => compare(op, reg(a)?, reg(b)?, dst, n)?,
            FusedInstr::Select(c, a, b) => select(reg(c)?, reg(a)?, reg(b)?, dst, n)?,
            FusedInstr::Cast(x, dtype) => cast(reg(x)?, dtype, dst, n)?,
        }
    }
    let result = regs.get(program.output).ok_or_else(|| mismatch("output"))?;
    O::write(result, block)
}

#[inline]
fn map1<I: Copy, O>(x: &[I], o: &mut [O], f: impl Fn(I) -> O) {
    o.iter_mut().zip(x).for_each(|(d, &v)| *d = f(v));
}

#[inline]
fn map2<I: Copy, O>(a: &[I], b: &[I], o: &mut [O], f: impl Fn(I, I) -> O) {
    o.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(d, (&x, &y))| *d = f(x, y));
}

fn unary(op: UnaryOp, x: &Reg, o: &mut Reg, n: usize) -> Result<()> {
    match (x, o) {
        (Reg::F32(x), Reg::F32(o)) => float_unary(op, &x[..n], &mut o[..n]),
        (Reg::F64(x), Reg::F64(o)) => float_unary(op, &x[..n], &mut o[..n]),
        (Reg::I64(x), Reg::I64(o)) => int_unary(op, &x[..n], &mut o[..n]),
        (Reg::I32(x), Reg::I32(o)) => int_unary(op, &x[..n], &mut o[..n]),
        _ => Err(mismatch(op.name())),
    }
}

fn float_unary<A: Math>(op: UnaryOp, x: &[A], o: &mut [A]) -> Result<()> {
    let (one, zero, half) = (A::ONE, A::ZERO, A::HALF);
    match op {
        UnaryOp::Neg => map1(x, o, |v| -v),
        UnaryOp::Abs => map1(x, o, Math::abs),
        UnaryOp::Exp => map1(x, o, Acc::exp),
        UnaryOp::Log => map1(x, o, Acc::ln),
        UnaryOp::Sqrt => map1(x, o, Acc::sqrt),
        UnaryOp::Rsqrt => map1(x, o, |v| one / v.sqrt()),
        UnaryOp::Recip => map1(x, o, |v| one / v),
        UnaryOp::Sin => map1(x, o, Math::sin),
        UnaryOp::Cos => map1(x, o, Math::cos),
        UnaryOp::Tanh => map1(x, o, Math::tanh),
        UnaryOp::Sigmoid => map1(x, o, |v| one / (one + (-v).exp())),
        // A comparison, so NaN passes through.
        UnaryOp::Relu => map1(x, o, |v| if v < zero { zero } else { v }),
        UnaryOp::Silu => map1(x, o, |v| v / (one + (-v).exp())),
        UnaryOp::Gelu => map1(x, o, |v| half * v * (one + (v * A::FRAC_1_SQRT_2).erf())),
    }
    Ok(())
}

fn int_unary<T: Int>(op: UnaryOp, x: &[T], o: &mut [T]) -> Result<()> {
    match op {
        UnaryOp::Neg => map1(x, o, Int::wrapping_neg),
        UnaryOp::Abs => map1(x, o, Int::wrapping_abs),
        UnaryOp::Relu => map1(x, o, |v| v.max(T::ZERO)),
        _ => return Err(mismatch(op.name())),
    }
    Ok(())
}

fn binary(op: BinaryOp, a: &Reg, b: &Reg, o: &mut Reg, n: usize) -> Result<()> {
    match (a, b, o) {
        (Reg::F32(a), Reg::F32(b), Reg::F32(o)) => float_binary(op, &a[..n], &b[..n], &mut o[..n]),
        (Reg::F64(a), Reg::F64(b), Reg::F64(o)) => float_binary(op, &a[..n], &b[..n], &mut o[..n]),
        (Reg::I64(a), Reg::I64(b), Reg::I64(o)) => int_binary(op, &a[..n], &b[..n], &mut o[..n]),
        (Reg::I32(a), Reg::I32(b), Reg::I32(o)) => int_binary(op, &a[..n], &b[..n], &mut o[..n]),
        (Reg::U8(a), Reg::U8(b), Reg::U8(o)) => int_binary(op, &a[..n], &b[..n], &mut o[..n]),
        _ => Err(mismatch(op.name())),
    }
}

fn float_binary<A: Math>(op: BinaryOp, a: &[A], b: &[A], o: &mut [A]) -> Result<()> {
    match op {
        BinaryOp::Add => map2(a, b, o, |x, y| x + y),
        BinaryOp::Sub => map2(a, b, o, |x, y| x - y),
        BinaryOp::Mul => map2(a, b, o, |x, y| x * y),
        BinaryOp::Div => map2(a, b, o, |x, y| x / y),
        BinaryOp::Maximum => map2(a, b, o, nan_max),
        BinaryOp::Minimum => map2(a, b, o, nan_min),
        BinaryOp::Pow => map2(a, b, o, Math::powf),
    }
    Ok(())
}

fn int_binary<T: Int>(op: BinaryOp, a: &[T], b: &[T], o: &mut [T]) -> Result<()> {
    match op {
        BinaryOp::Add => map2(a, b, o, Int::wrapping_add),
        BinaryOp::Sub => map2(a, b, o, Int::wrapping_sub),
        BinaryOp::Mul => map2(a, b, o, Int::wrapping_mul),
        BinaryOp::Maximum => map2(a, b, o, Ord::max),
        BinaryOp::Minimum => map2(a, b, o, Ord::min),
        BinaryOp::Div | BinaryOp::Pow => return Err(mismatch(op.name())),
    }
    Ok(())
}

fn compare(op: CompareOp, a: &Reg, b: &Reg, o: &mut Reg, n: usize) -> Result<()> {
    let Reg::U8(o) = o else {
        return Err(mismatch(op.name()));
    };
    let o = &mut o[..n];
    match (a, b) {
        (Reg::F32(a), Reg::F32(b)) => compare_with(op, &a[..n], &b[..n], o),
        (Reg::F64(a), Reg::F64(b)) => compare_with(op, &a[..n], &b[..n], o),
        (Reg::I64(a), Reg::I64(b)) => compare_with(op, &a[..n], &b[..n], o),
        (Reg::I32(a), Reg::I32(b)) => compare_with(op, &a[..n], &b[..n], o),
        (Reg::U8(a), Reg::U8(b)) => compare_with(op, &a[..n], &b[..n], o),
        _ => return Err(mismatch(op.name())),
    }
    Ok(())
}

fn compare_with<T: PartialOrd + Copy>(op: CompareOp, a: &[T], b: &[T], o: &mut [u8]) {
    match op {
        CompareOp::Eq => map2(a, b, o, |x, y| u8::from(x == y)),
        CompareOp::Lt => map2(a, b, o, |x, y| u8::from(x < y)),
        CompareOp::Le => map2(a, b, o, |x, y| u8::from(x <= y)),
        CompareOp::Gt => map2(a, b, o, |x, y| u8::from(x > y)),
        CompareOp::Ge => map2(a, b, o, |x, y| u8::from(x >= y)),
    }
}

fn select(c: &Reg, a: &Reg, b: &Reg, o: &mut Reg, n: usize) -> Result<()> {
    let Reg::U8(c) = c else {
        return Err(mismatch("where"));
    };
    let c = &c[..n];
    fn pick<T: Copy>(c: &[u8], a: &[T], b: &[T], o: &mut [T]) {
        for (i, d) in o.iter_mut().enumerate() {
            *d = if c[i] != 0 { a[i] } else { b[i] };
        }
    }
    match (a, b, o) {
        (Reg::F32(a), Reg::F32(b), Reg::F32(o)) => pick(c, &a[..n], &b[..n], &mut o[..n]),
        (Reg::F64(a), Reg::F64(b), Reg::F64(o)) => pick(c, &a[..n], &b[..n], &mut o[..n]),
        (Reg::I64(a), Reg::I64(b), Reg::I64(o)) => pick(c, &a[..n], &b[..n], &mut o[..n]),
        (Reg::I32(a), Reg::I32(b), Reg::I32(o)) => pick(c, &a[..n], &b[..n], &mut o[..n]),
        (Reg::U8(a), Reg::U8(b), Reg::U8(o)) => pick(c, &a[..n], &b[..n], &mut o[..n]),
        _ => return Err(mismatch("where")),
    }
    Ok(())
}

/// Numeric cast with the semantics of `Backend::cast`: anything to bool is `!= 0`; a cast
/// to bf16/f16 rounds to that type (the register keeps the rounded value in f32).
fn cast(x: &Reg, to: DType, o: &mut Reg, n: usize) -> Result<()> {
    if to == DType::Bool {
        let Reg::U8(o) = o else {
            return Err(mismatch("cast"));
        };
        let o = &mut o[..n];
        match x {
            Reg::F64(x) => map1(&x[..n], o, |v| u8::from(v != 0.0)),
            Reg::F32(x) => map1(&x[..n], o, |v| u8::from(v != 0.0)),
            Reg::I64(x) => map1(&x[..n], o, |v| u8::from(v != 0)),
            Reg::I32(x) => map1(&x[..n], o, |v| u8::from(v != 0)),
            Reg::U8(x) => map1(&x[..n], o, |v| u8::from(v != 0)),
        }
        return Ok(());
    }
    match x {
        Reg::F64(x) => cast_from(&x[..n], to, o),
        Reg::F32(x) => cast_from(&x[..n], to, o),
        Reg::I64(x) => cast_from(&x[..n], to, o),
        Reg::I32(x) => cast_from(&x[..n], to, o),
        Reg::U8(x) => cast_from(&x[..n], to, o),
    }
}

fn cast_from<I>(x: &[I], to: DType, o: &mut Reg) -> Result<()>
where
    I: Copy
        + CastTo<f64>
        + CastTo<f32>
        + CastTo<bf16>
        + CastTo<f16>
        + CastTo<i64>
        + CastTo<i32>
        + CastTo<u8>,
{
    let n = x.len();
    match (o, to) {
        (Reg::F64(o), _) => map1(x, &mut o[..n], |v| CastTo::<f64>::cast_to(v)),
        (Reg::F32(o), DType::BF16) => map1(x, &mut o[..n], |v| CastTo::<bf16>::cast_to(v).to_f32()),
        (Reg::F32(o), DType::F16) => map1(x, &mut o[..n], |v| CastTo::<f16>::cast_to(v).to_f32()),
        (Reg::F32(o), _) => map1(x, &mut o[..n], |v| CastTo::<f32>::cast_to(v)),
        (Reg::I64(o), _) => map1(x, &mut o[..n], |v| CastTo::<i64>::cast_to(v)),
        (Reg::I32(o), _) => map1(x, &mut o[..n], |v| CastTo::<i32>::cast_to(v)),
        (Reg::U8(o), _) => map1(x, &mut o[..n], |v| CastTo::<u8>::cast_to(v)),
    }
    Ok(())
}
