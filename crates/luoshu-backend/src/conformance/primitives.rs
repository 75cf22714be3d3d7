//! Cases for the memory, elementwise, reduction and matmul primitives.
use super::cases::{fresh, label, offset_output, Dist, View, LARGE};
use super::checker::Checker;
use super::compare::Class;
use crate::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use crate::Result;
use luoshu_tensor::DType;

/// Float dtypes, f64 first (skipped where a backend does not support it).
pub const FLOATS: [DType; 4] = [DType::F64, DType::F32, DType::BF16, DType::F16];
const ALL_DTYPES: [DType; 8] = DType::ALL;

/// Scalars, size 1, empty, odd sizes, a size-1 dim inside, rank 4.
const ELEMENTWISE_SHAPES: &[&[usize]] = &[
    &[],
    &[1],
    &[0],
    &[7],
    &[3, 5],
    &[2, 0, 3],
    &[4, 1, 33],
    &[2, 3, 4, 5],
];
/// Above 65,536 elements (the CPU backend's `PARALLEL_MIN_WORK`), so parallel kernels are
/// checked too: [`super::cases::LARGE`] elements, in every mode (one layout when quick).
const LARGE_SHAPES: &[&[usize]] = &[&super::cases::LARGE];

pub fn check_all(c: &mut Checker<'_>) {
    c.primitive("copy", copy);
    c.primitive("fill", fill);
    c.primitive("cast", cast);
    for op in UnaryOp::ALL {
        c.primitive(op.name(), |c| unary(c, op));
    }
    for op in BinaryOp::ALL {
        c.primitive(op.name(), |c| binary(c, op));
    }
    for op in CompareOp::ALL {
        c.primitive(op.name(), |c| compare(c, op));
    }
    c.primitive("where", select);
    for op in ReduceOp::ALL {
        c.primitive(op.name(), |c| reduce(c, op));
    }
    c.primitive("argmax", argmax);
    c.primitive("matmul", matmul);
}

fn elementwise_shapes(c: &Checker<'_>) -> Vec<(Vec<usize>, View)> {
    let mut shapes = c.layouts(ELEMENTWISE_SHAPES);
    shapes.extend(c.layouts(LARGE_SHAPES));
    shapes
}

fn copy(c: &mut Checker<'_>) -> Result<()> {
    for dtype in ALL_DTYPES {
        for (dims, view) in elementwise_shapes(c) {
            let x = c.gen.view(dtype, &dims, Dist::default_for(dtype), view)?;
            c.case(
                &label(dtype, &dims, view),
                dtype,
                Class::Exact,
                &[&x],
                |ops| {
                    let out = ops.alloc(dtype, x.dims())?;
                    ops.copy_into(&x, &out)?;
                    Ok(vec![out])
                },
            );
        }
    }
    Ok(())
}

fn fill(c: &mut Checker<'_>) -> Result<()> {
    for dtype in ALL_DTYPES {
        let values: &[f64] = if dtype == DType::U8 {
            &[0.0, 1.0, 3.75, 200.0]
        } else {
            &[0.0, 1.0, 3.75, -2.5]
        };
        for &value in values {
            for dims in [&[][..], &[0], &[7], &[3, 5], &LARGE] {
                let name = format!("{dtype}{dims:?} value {value} at an offset");
                c.case(&name, dtype, Class::Exact, &[], |ops| {
                    let (buffer, out) = offset_output(ops, dtype, dims)?;
                    ops.fill_into(value, &out)?;
                    Ok(vec![buffer])
                });
            }
        }
    }
    Ok(())
}

/// Values every pair of dtypes converts without overflow (float to integer truncates).
fn cast_dist(from: DType, to: DType) -> Dist {
    let unsigned = from == DType::U8 || to == DType::U8;
    match (from, to) {
        (DType::Bool, _) => Dist::Ints(0, 2),
        (_, DType::Bool) if unsigned => Dist::Ints(0, 3),
        (_, DType::Bool) => Dist::Ints(-1, 2),
        (f, _) if f.is_float() && unsigned => Dist::Uniform(0.0, 200.0),
        (f, _) if f.is_float() => Dist::Uniform(-100.0, 100.0),
        _ if unsigned => Dist::Ints(0, 200),
        _ => Dist::Ints(-100, 100),
    }
}

fn cast(c: &mut Checker<'_>) -> Result<()> {
    let shapes = c.layouts(&[&[0], &[7], &[3, 5], &[2, 3, 9], &LARGE]);
    for from in ALL_DTYPES {
        for to in ALL_DTYPES {
            for (dims, view) in &shapes {
                let x = c.gen.view(from, dims, cast_dist(from, to), *view)?;
                let name = format!("{} to {to}", label(from, dims, *view));
                // An f64 case on either side may be skipped.
                let dtype = if to == DType::F64 { to } else { from };
                c.case(&name, dtype, Class::Exact, &[&x], |ops| {
                    Ok(vec![ops.cast(&x, to)?])
                });
            }
        }
    }
    Ok(())
}

fn unary_dist(op: UnaryOp, dtype: DType) -> Dist {
    match op {
        _ if !dtype.is_float() => Dist::default_for(dtype),
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => Dist::Uniform(0.05, 4.0),
        UnaryOp::Recip => Dist::Uniform(0.1, 4.0),
        _ => Dist::Uniform(-4.0, 4.0),
    }
}

fn unary(c: &mut Checker<'_>, op: UnaryOp) -> Result<()> {
    let mut dtypes = FLOATS.to_vec();
    if op.allows_integers() {
        dtypes.extend([DType::I64, DType::I32]);
    }
    let class = match op {
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu => Class::Exact,
        UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => Class::Rounding,
        _ => Class::Transcendental,
    };
    for dtype in dtypes {
        let dist = unary_dist(op, dtype);
        for (dims, view) in elementwise_shapes(c) {
            let x = c.gen.view(dtype, &dims, dist, view)?;
            c.case(&label(dtype, &dims, view), dtype, class, &[&x], |ops| {
                Ok(vec![ops.unary(op, &x)?])
            });
        }
        let x = c.gen.tensor(dtype, &[5, 7], dist)?;
        c.case(
            &format!("{dtype}[5, 7] in place"),
            dtype,
            class,
            &[&x],
            |ops| {
                let y = fresh(&x)?;
                ops.unary_into(op, &y, &y)?;
                Ok(vec![y])
            },
        );
        c.case(
            &format!("{dtype}[5, 7] into an offset output"),
            dtype,
            class,
            &[&x],
            |ops| {
                let (buffer, out) = offset_output(ops, dtype, x.dims())?;
                ops.unary_into(op, &x, &out)?;
                Ok(vec![buffer])
            },
        );
    }
    Ok(())
}

/// Operand shapes, including every NumPy broadcasting pattern.
const BINARY_SHAPES: &[(&[usize], &[usize])] = &[
    (&[], &[]),
    (&[1], &[1]),
    (&[7], &[7]),
    (&[0], &[0]),
    (&[3, 5], &[3, 5]),
    (&[3, 5], &[5]),
    (&[3, 1], &[1, 5]),
    (&[], &[4, 3]),
    (&[2, 0, 3], &[3]),
    (&[4, 1, 33], &[4, 6, 33]),
    (&[2, 3, 4, 5], &[2, 3, 4, 5]),
];
/// Above the parallel threshold, in every mode.
const LARGE_BINARY_SHAPES: &[(&[usize], &[usize])] = &[(&LARGE, &LARGE), (&LARGE, &[LARGE[1]])];

/// (shape of a, shape of b, view of a, view of b) pairs to try.
fn binary_layouts(c: &Checker<'_>) -> Vec<(Vec<usize>, Vec<usize>, View, View)> {
    let mut pairs = BINARY_SHAPES.to_vec();
    pairs.extend(LARGE_BINARY_SHAPES);
    let mut out = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let views: Vec<usize> = if c.quick {
            vec![i % 5]
        } else {
            (0..5).collect()
        };
        for v in views {
            out.push((a.to_vec(), b.to_vec(), View::ALL[v], View::ALL[(v + 2) % 5]));
        }
    }
    out
}

fn binary_dists(op: BinaryOp, dtype: DType) -> (Dist, Dist) {
    match (op, dtype) {
        (_, DType::U8) => (Dist::Ints(0, 16), Dist::Ints(0, 16)),
        (_, d) if d.is_integer() => (Dist::Ints(-50, 50), Dist::Ints(-50, 50)),
        (BinaryOp::Div, _) => (Dist::Uniform(-4.0, 4.0), Dist::Uniform(0.25, 4.0)),
        (BinaryOp::Pow, _) => (Dist::Uniform(0.1, 3.0), Dist::Uniform(-2.0, 2.0)),
        _ => (Dist::Uniform(-4.0, 4.0), Dist::Uniform(-4.0, 4.0)),
    }
}

fn binary(c: &mut Checker<'_>, op: BinaryOp) -> Result<()> {
    let mut dtypes = FLOATS.to_vec();
    if op.allows_integers() {
        dtypes.extend([DType::I64, DType::I32, DType::U8]);
    }
    let class = match op {
        BinaryOp::Maximum | BinaryOp::Minimum => Class::Exact,
        BinaryOp::Pow => Class::Transcendental,
        _ => Class::Rounding,
    };
    for dtype in dtypes {
        let (da, db) = binary_dists(op, dtype);
        for (a_dims, b_dims, va, vb) in binary_layouts(c) {
            let a = c.gen.view(dtype, &a_dims, da, va)?;
            let b = c.gen.view(dtype, &b_dims, db, vb)?;
            let name = format!(
                "{} and {}",
                label(dtype, &a_dims, va),
                label(dtype, &b_dims, vb)
            );
            c.case(&name, dtype, class, &[&a, &b], |ops| {
                Ok(vec![ops.binary(op, &a, &b)?])
            });
        }
        let a = c.gen.tensor(dtype, &[4, 9], da)?;
        let b = c.gen.tensor(dtype, &[4, 9], db)?;
        c.case(
            &format!("{dtype}[4, 9] in place on a"),
            dtype,
            class,
            &[&a, &b],
            |ops| {
                let y = fresh(&a)?;
                ops.binary_into(op, &y, &b, &y)?;
                Ok(vec![y])
            },
        );
        c.case(
            &format!("{dtype}[4, 9] in place on b"),
            dtype,
            class,
            &[&a, &b],
            |ops| {
                let y = fresh(&b)?;
                ops.binary_into(op, &a, &y, &y)?;
                Ok(vec![y])
            },
        );
        c.case(
            &format!("{dtype}[4, 9] into an offset output"),
            dtype,
            class,
            &[&a, &b],
            |ops| {
                let (buffer, out) = offset_output(ops, dtype, a.dims())?;
                ops.binary_into(op, &a, &b, &out)?;
                Ok(vec![buffer])
            },
        );
    }
    Ok(())
}

fn compare(c: &mut Checker<'_>, op: CompareOp) -> Result<()> {
    let dtypes = [FLOATS.as_slice(), &[DType::I64, DType::I32, DType::U8]].concat();
    for dtype in dtypes {
        // Few distinct values, so equal elements are common.
        let dist = if dtype == DType::U8 {
            Dist::Ints(0, 4)
        } else {
            Dist::Ints(-2, 2)
        };
        for (a_dims, b_dims, va, vb) in binary_layouts(c) {
            let a = c.gen.view(dtype, &a_dims, dist, va)?;
            let b = c.gen.view(dtype, &b_dims, dist, vb)?;
            let name = format!(
                "{} and {}",
                label(dtype, &a_dims, va),
                label(dtype, &b_dims, vb)
            );
            c.case(&name, dtype, Class::Exact, &[&a, &b], |ops| {
                Ok(vec![ops.compare(op, &a, &b)?])
            });
        }
        if dtype.is_float() {
            let a = c.gen.tensor(dtype, &[6, 11], Dist::Uniform(-1.0, 1.0))?;
            let b = c.gen.tensor(dtype, &[11], Dist::Uniform(-1.0, 1.0))?;
            c.case(
                &format!("{dtype}[6, 11] uniform"),
                dtype,
                Class::Exact,
                &[&a, &b],
                |ops| Ok(vec![ops.compare(op, &a, &b)?]),
            );
        }
    }
    Ok(())
}

/// (cond, a, b) shapes, broadcasting every operand somewhere.
const SELECT_SHAPES: &[(&[usize], &[usize], &[usize])] = &[
    (&[3, 5], &[3, 5], &[3, 5]),
    (&[3, 1], &[3, 5], &[5]),
    (&[], &[4], &[4]),
    (&[0, 3], &[0, 3], &[3]),
    (&[2, 3, 4], &[1, 4], &[2, 1, 1]),
    (&[7], &[1], &[]),
    (&LARGE, &LARGE, &[LARGE[1]]),
];

fn select(c: &mut Checker<'_>) -> Result<()> {
    for dtype in ALL_DTYPES {
        for (i, (cd, ad, bd)) in SELECT_SHAPES.iter().enumerate() {
            let views = [
                View::ALL[i % 5],
                View::ALL[(i + 1) % 5],
                View::ALL[(i + 3) % 5],
            ];
            let cond = c.gen.view(DType::Bool, cd, Dist::Ints(0, 2), views[0])?;
            let a = c.gen.view(dtype, ad, Dist::default_for(dtype), views[1])?;
            let b = c.gen.view(dtype, bd, Dist::default_for(dtype), views[2])?;
            let name = format!(
                "cond {}, {}, {}",
                label(DType::Bool, cd, views[0]),
                label(dtype, ad, views[1]),
                label(dtype, bd, views[2])
            );
            c.case(&name, dtype, Class::Exact, &[&cond, &a, &b], |ops| {
                Ok(vec![ops.select(&cond, &a, &b)?])
            });
        }
    }
    Ok(())
}

/// (shape, axes) pairs, including empty reduced and kept axes.
const REDUCE_CASES: &[(&[usize], &[usize])] = &[
    (&[1], &[0]),
    (&[7], &[0]),
    (&[3, 5], &[0]),
    (&[3, 5], &[1]),
    (&[3, 5], &[0, 1]),
    (&[2, 3, 4], &[0, 2]),
    (&[2, 3, 4], &[1]),
    (&[2, 0, 3], &[0]),
    (&[2, 0, 3], &[1]),
    (&[0], &[0]),
    (&[4, 1000], &[1]),
];
/// Above the parallel threshold, in every mode: few long rows (split within a row) and
/// many outputs (split across outputs).
const LARGE_REDUCE_CASES: &[(&[usize], &[usize])] = &[(&[3, 40000], &[1]), (&[300, 240], &[0])];

fn reduce(c: &mut Checker<'_>, op: ReduceOp) -> Result<()> {
    let mut dtypes = FLOATS.to_vec();
    if op != ReduceOp::Mean {
        dtypes.extend([DType::I64, DType::I32]);
    }
    let class = match op {
        ReduceOp::Max | ReduceOp::Min => Class::Exact,
        _ => Class::Accumulate,
    };
    let mut cases = REDUCE_CASES.to_vec();
    cases.extend(LARGE_REDUCE_CASES);
    for dtype in dtypes {
        for (i, (dims, axes)) in cases.iter().enumerate() {
            let empty = axes.iter().any(|&a| dims[a] == 0);
            if empty && matches!(op, ReduceOp::Max | ReduceOp::Min) {
                continue; // no identity: `Ops` rejects it (see tests/bad_input.rs)
            }
            let views: Vec<View> = if c.quick {
                vec![View::ALL[i % 5]]
            } else {
                View::ALL.to_vec()
            };
            for view in views {
                let x = c.gen.view(dtype, dims, Dist::default_for(dtype), view)?;
                let name = format!("{} over {axes:?}", label(dtype, dims, view));
                c.case(&name, dtype, class, &[&x], |ops| {
                    Ok(vec![ops.reduce(op, &x, axes, true)?])
                });
            }
        }
    }
    Ok(())
}

fn argmax(c: &mut Checker<'_>) -> Result<()> {
    let cases: &[(&[usize], usize)] = &[
        (&[1], 0),
        (&[7], 0),
        (&[3, 5], 0),
        (&[3, 5], 1),
        (&[2, 3, 4], 1),
        (&[2, 1, 4], 1),
        (&[0, 4], 1),
        (&[4, 300], 1),
        (&[3, 30000], 1),
        (&[300, 240], 0),
    ];
    let dtypes = [FLOATS.as_slice(), &[DType::I64, DType::I32]].concat();
    for dtype in dtypes {
        for (i, &(dims, axis)) in cases.iter().enumerate() {
            let view = View::ALL[i % 5];
            // Few distinct values: ties must resolve to the first maximum.
            for dist in [Dist::Ints(-3, 3), Dist::default_for(dtype)] {
                let x = c.gen.view(dtype, dims, dist, view)?;
                let name = format!("{} axis {axis} {dist:?}", label(dtype, dims, view));
                c.case(&name, dtype, Class::Exact, &[&x], |ops| {
                    Ok(vec![ops.argmax(&x, axis, true)?])
                });
            }
        }
    }
    Ok(())
}

/// (a dims, b dims, a view, b view): transposes by strides, empty m and k, broadcast batch.
const MATMUL_CASES: &[(&[usize], &[usize], View, View)] = &[
    (&[1, 1], &[1, 1], View::Contiguous, View::Contiguous),
    (&[0, 3], &[3, 4], View::Contiguous, View::Contiguous),
    (&[3, 0], &[0, 4], View::Contiguous, View::Contiguous),
    (&[5, 7], &[7, 3], View::Transposed, View::Contiguous),
    (&[5, 7], &[7, 3], View::Contiguous, View::Transposed),
    (&[5, 7], &[7, 3], View::Stepped, View::Offset),
    (
        &[2, 17, 33],
        &[2, 33, 9],
        View::Contiguous,
        View::Transposed,
    ),
    (&[2, 1, 4, 6], &[3, 6, 5], View::Offset, View::Contiguous),
    (&[4, 5, 6], &[6, 7], View::Transposed, View::Stepped),
    (&[3, 4, 6], &[3, 6, 2], View::Broadcast, View::Broadcast),
    (&[1, 9], &[9, 1], View::Contiguous, View::Contiguous),
];
const LARGE_MATMUL_CASES: &[(&[usize], &[usize], View, View)] = &[
    (&[64, 65], &[65, 66], View::Contiguous, View::Contiguous),
    (&[2, 48, 80], &[80, 40], View::Transposed, View::Transposed),
];

fn matmul(c: &mut Checker<'_>) -> Result<()> {
    let mut cases = MATMUL_CASES.to_vec();
    if !c.quick {
        cases.extend(LARGE_MATMUL_CASES);
    }
    let dist = Dist::Uniform(-1.0, 1.0);
    for dtype in FLOATS {
        for (ad, bd, va, vb) in &cases {
            let a = c.gen.view(dtype, ad, dist, *va)?;
            let b = c.gen.view(dtype, bd, dist, *vb)?;
            let name = format!("{} · {}", label(dtype, ad, *va), label(dtype, bd, *vb));
            c.case(&name, dtype, Class::Matmul, &[&a, &b], |ops| {
                Ok(vec![ops.matmul(&a, &b)?])
            });
        }
    }
    Ok(())
}
