//! The CPU backend's primitive kernels against hand-computed values and against the
//! reference backend, on contiguous, transposed, stepped, broadcast and empty inputs of
//! every dtype; in-place and same-arena aliasing; sizes that take the parallel paths; and
//! index errors.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{BinaryOp, CompareOp, RandomDist, ReduceOp, UnaryOp};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{DType, Error, Ops, Tensor};
use luoshu_tensor::rng;
use proptest::prelude::*;
use std::sync::Arc;

fn cpu() -> Ops<'static> {
    Ops::new(&CpuBackend)
}

fn reference() -> Ops<'static> {
    Ops::new(&ReferenceBackend)
}

fn tensor(values: &[f64], dtype: DType, dims: &[usize]) -> Tensor {
    Tensor::from_f64(values, dtype, dims).unwrap()
}

/// Deterministic test values suited to `dtype` (`seed` picks the sequence).
fn values(dtype: DType, n: usize, seed: u64) -> Vec<f64> {
    (0..n as u64)
        .map(|i| {
            let u = f64::from(rng::uniform(seed, 7, i));
            match dtype {
                DType::I64 | DType::I32 => (u * 200.0 - 100.0).round(),
                DType::U8 => (u * 255.0).round(),
                DType::Bool => (u < 0.5) as u8 as f64,
                _ => u * 6.0 - 3.0,
            }
        })
        .collect()
}

/// Relative tolerance between this backend and the f64 reference for `dtype`.
fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 2e-6,
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        _ => 0.0,
    }
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// The same logical `[.., dims]` tensor in several layouts: contiguous, transposed (all
/// dims reversed in memory), stepped (every other element of a wider last dim), broadcast
/// (a leading size-1 dim expanded) — all holding values drawn with `seed`.
fn layouts(dtype: DType, dims: &[usize], seed: u64) -> Vec<(&'static str, Tensor)> {
    let n: usize = dims.iter().product();
    let mut out = vec![("contiguous", tensor(&values(dtype, n, seed), dtype, dims))];
    let rank = dims.len();
    if rank >= 2 {
        let reversed: Vec<usize> = dims.iter().rev().copied().collect();
        let perm: Vec<usize> = (0..rank).rev().collect();
        let t = tensor(&values(dtype, n, seed), dtype, &reversed)
            .permute(&perm)
            .unwrap();
        out.push(("transposed", t));
    }
    if rank >= 1 {
        let mut wide = dims.to_vec();
        wide[rank - 1] *= 2;
        let m: usize = wide.iter().product();
        let t = tensor(&values(dtype, m, seed), dtype, &wide);
        out.push(("stepped", t.slice(rank - 1, 0, wide[rank - 1], 2).unwrap()));
        let mut one = dims.to_vec();
        one[0] = 1;
        let k: usize = one.iter().product();
        let t = tensor(&values(dtype, k, seed), dtype, &one);
        out.push(("broadcast", t.broadcast_to(dims.to_vec()).unwrap()));
    }
    out
}

const SHAPES: [&[usize]; 5] = [&[], &[7], &[3, 5], &[2, 3, 4], &[0, 3]];
const FLOATS: [DType; 4] = [DType::F64, DType::F32, DType::BF16, DType::F16];

// ----- against the reference -----

#[test]
fn unary_matches_reference_on_every_float_layout() {
    for dtype in FLOATS {
        for dims in SHAPES {
            for (layout, x) in layouts(dtype, dims, 1) {
                for op in UnaryOp::ALL {
                    let got = cpu().unary(op, &x).unwrap().to_f64_vec();
                    let want = reference().unary(op, &x).unwrap().to_f64_vec();
                    assert_close(
                        &got,
                        &want,
                        tol(dtype),
                        &format!("{op:?} {dtype} {dims:?} {layout}"),
                    );
                }
            }
        }
    }
}

#[test]
fn integer_unary_matches_reference() {
    for dtype in [DType::I64, DType::I32] {
        for (layout, x) in layouts(dtype, &[4, 5], 2) {
            for op in UnaryOp::ALL.into_iter().filter(|op| op.allows_integers()) {
                let got = cpu().unary(op, &x).unwrap().to_f64_vec();
                let want = reference().unary(op, &x).unwrap().to_f64_vec();
                assert_eq!(got, want, "{op:?} {dtype} {layout}");
            }
        }
    }
}

#[test]
fn binary_and_compare_match_reference_on_mixed_layouts() {
    let dtypes = [FLOATS.as_slice(), &[DType::I64, DType::I32, DType::U8]].concat();
    for dtype in dtypes {
        for dims in SHAPES {
            let lhs = layouts(dtype, dims, 3);
            let rhs = layouts(dtype, dims, 4);
            for ((la, a), (lb, b)) in lhs.iter().zip(rhs.iter().cycle().skip(1)) {
                let what = format!("{dtype} {dims:?} {la}/{lb}");
                for op in BinaryOp::ALL
                    .into_iter()
                    .filter(|op| dtype.is_float() || op.allows_integers())
                {
                    let got = cpu().binary(op, a, b).unwrap().to_f64_vec();
                    let want = reference().binary(op, a, b).unwrap().to_f64_vec();
                    assert_close(&got, &want, tol(dtype), &format!("{op:?} {what}"));
                }
                for op in CompareOp::ALL {
                    let got = cpu().compare(op, a, b).unwrap().to_f64_vec();
                    let want = reference().compare(op, a, b).unwrap().to_f64_vec();
                    assert_eq!(got, want, "{op:?} {what}");
                }
            }
        }
    }
}

#[test]
fn scalar_broadcast_binary_matches_reference() {
    for dtype in FLOATS {
        let a = tensor(&values(dtype, 12, 5), dtype, &[3, 4]);
        let s = tensor(&[1.5], dtype, &[]);
        let row = tensor(&values(dtype, 4, 6), dtype, &[4]);
        for (x, y) in [(&a, &s), (&s, &a), (&a, &row), (&row, &a)] {
            for op in BinaryOp::ALL {
                let got = cpu().binary(op, x, y).unwrap().to_f64_vec();
                let want = reference().binary(op, x, y).unwrap().to_f64_vec();
                assert_close(&got, &want, tol(dtype), &format!("{op:?} {dtype}"));
            }
        }
    }
}

#[test]
fn select_cast_copy_match_reference_for_every_dtype() {
    for dtype in DType::ALL {
        for dims in SHAPES {
            let cond = &layouts(DType::Bool, dims, 8)[0].1;
            for ((la, a), (_, b)) in layouts(dtype, dims, 9)
                .iter()
                .zip(layouts(dtype, dims, 10).iter().rev())
            {
                let what = format!("{dtype} {dims:?} {la}");
                let got = cpu().select(cond, a, b).unwrap().to_f64_vec();
                assert_eq!(
                    got,
                    reference().select(cond, a, b).unwrap().to_f64_vec(),
                    "where {what}"
                );
                assert_eq!(
                    cpu().contiguous(a).unwrap().to_f64_vec(),
                    a.to_f64_vec(),
                    "copy {what}"
                );
                for to in DType::ALL {
                    let got = cpu().cast(a, to).unwrap().to_f64_vec();
                    let want = reference().cast(a, to).unwrap().to_f64_vec();
                    assert_eq!(got, want, "cast to {to}: {what}");
                }
            }
        }
    }
}

#[test]
fn reductions_match_reference_over_every_axis_set() {
    let dims = [3usize, 4, 5];
    let axis_sets: [&[usize]; 7] = [&[0], &[1], &[2], &[0, 1], &[0, 2], &[1, 2], &[0, 1, 2]];
    for dtype in [FLOATS.as_slice(), &[DType::I64, DType::I32]].concat() {
        for (layout, x) in layouts(dtype, &dims, 11) {
            for axes in axis_sets {
                for op in ReduceOp::ALL {
                    if op == ReduceOp::Mean && !dtype.is_float() {
                        continue;
                    }
                    let got = cpu().reduce(op, &x, axes, true).unwrap().to_f64_vec();
                    let want = reference().reduce(op, &x, axes, true).unwrap().to_f64_vec();
                    assert_close(
                        &got,
                        &want,
                        tol(dtype),
                        &format!("{op:?} {dtype} {layout} {axes:?}"),
                    );
                }
            }
            for axis in 0..3 {
                let got = cpu().argmax(&x, axis, true).unwrap().to_f64_vec();
                let want = reference().argmax(&x, axis, true).unwrap().to_f64_vec();
                assert_eq!(got, want, "argmax {dtype} {layout} axis {axis}");
            }
        }
    }
}

#[test]
fn empty_reductions() {
    let x = tensor(&[], DType::F32, &[0, 3]);
    assert_eq!(cpu().sum(&x, &[0], true).unwrap().to_f64_vec(), [0.0; 3]);
    let mean = cpu()
        .reduce(ReduceOp::Mean, &x, &[0], false)
        .unwrap()
        .to_f64_vec();
    assert!(mean.iter().all(|v| v.is_nan()));
    assert_eq!(cpu().sum(&x, &[1], true).unwrap().dims(), [0, 1]);
}

#[test]
fn indexing_matches_reference() {
    for dtype in [DType::F32, DType::BF16, DType::I64, DType::U8, DType::Bool] {
        for (layout, x) in layouts(dtype, &[4, 3, 5], 12) {
            let what = format!("{dtype} {layout}");
            for idx_dtype in [DType::I64, DType::I32] {
                let idx = tensor(&[2.0, 0.0, 2.0, 1.0], idx_dtype, &[4]);
                for dim in 0..3 {
                    let got = cpu().index_select(&x, dim, &idx).unwrap().to_f64_vec();
                    let want = reference()
                        .index_select(&x, dim, &idx)
                        .unwrap()
                        .to_f64_vec();
                    assert_eq!(got, want, "index_select {what} dim {dim}");
                }
                let index = tensor(
                    &values(DType::U8, 24, 13)
                        .iter()
                        .map(|v| (v % 3.0).floor())
                        .collect::<Vec<_>>(),
                    idx_dtype,
                    &[4, 2, 3],
                );
                let got = cpu().gather(&x, 1, &index).unwrap().to_f64_vec();
                assert_eq!(
                    got,
                    reference().gather(&x, 1, &index).unwrap().to_f64_vec(),
                    "gather {what}"
                );
            }
            let parts = [x.narrow(1, 0, 1).unwrap(), x.narrow(1, 1, 2).unwrap()];
            for dim in 0..3 {
                let inputs = [&x, &parts[0], &x];
                let inputs: &[&Tensor] = if dim == 1 { &inputs } else { &inputs[..1] };
                let got = cpu().concat(inputs, dim).unwrap().to_f64_vec();
                assert_eq!(
                    got,
                    reference().concat(inputs, dim).unwrap().to_f64_vec(),
                    "concat {what} {dim}"
                );
            }
            let got = cpu().concat(&[&parts[0], &parts[1]], 1).unwrap();
            assert_eq!(
                got.to_f64_vec(),
                x.to_f64_vec(),
                "concat of the halves {what}"
            );
        }
    }
}

#[test]
fn accumulating_index_ops_match_reference() {
    for dtype in [DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64] {
        for (layout, src) in layouts(dtype, &[4, 3, 5], 14) {
            let what = format!("{dtype} {layout}");
            let idx = tensor(&[1.0, 0.0, 1.0, 1.0], DType::I64, &[4]);
            let run = |ops: Ops<'_>| {
                let dst = tensor(&values(dtype, 30, 15), dtype, &[2, 3, 5]);
                ops.index_add(&dst, 0, &idx, &src).unwrap();
                dst.to_f64_vec()
            };
            assert_close(
                &run(cpu()),
                &run(reference()),
                tol(dtype),
                &format!("index_add {what}"),
            );
            let index = tensor(
                &values(DType::U8, 60, 16)
                    .iter()
                    .map(|v| (v % 3.0).floor())
                    .collect::<Vec<_>>(),
                DType::I32,
                &[4, 3, 5],
            );
            let run = |ops: Ops<'_>| {
                let dst = tensor(&values(dtype, 60, 17), dtype, &[4, 3, 5]);
                ops.scatter_add(&dst, 1, &index, &src).unwrap();
                dst.to_f64_vec()
            };
            assert_close(
                &run(cpu()),
                &run(reference()),
                tol(dtype),
                &format!("scatter_add {what}"),
            );
        }
    }
}

#[test]
fn random_and_arange_are_bit_identical_to_reference() {
    let dists = [
        RandomDist::Uniform {
            low: -2.0,
            high: 3.0,
        },
        RandomDist::Normal {
            mean: 1.0,
            std: 0.5,
        },
        RandomDist::Bernoulli { p: 0.3 },
    ];
    for dtype in FLOATS {
        for dist in dists {
            let got = cpu()
                .random(dist, 42, 3, dtype, &[70_001])
                .unwrap()
                .to_f64_vec();
            let want = reference()
                .random(dist, 42, 3, dtype, &[70_001])
                .unwrap()
                .to_f64_vec();
            assert!(got == want, "{dist:?} {dtype}");
        }
    }
    let mask = cpu()
        .random(RandomDist::Bernoulli { p: 0.5 }, 1, 2, DType::Bool, &[3, 9])
        .unwrap();
    let want = reference()
        .random(RandomDist::Bernoulli { p: 0.5 }, 1, 2, DType::Bool, &[3, 9])
        .unwrap();
    assert_eq!(mask.to_f64_vec(), want.to_f64_vec());
    for dtype in [DType::F32, DType::BF16, DType::I64, DType::I32, DType::U8] {
        let got = cpu().arange(-3.0, 0.75, 11, dtype).unwrap().to_f64_vec();
        assert_eq!(
            got,
            reference()
                .arange(-3.0, 0.75, 11, dtype)
                .unwrap()
                .to_f64_vec(),
            "{dtype}"
        );
    }
}

// ----- hand-computed values -----

#[test]
fn hand_computed_elementwise() {
    let x = tensor(&[-1.0, 0.0, 2.0, f64::NAN], DType::F32, &[4]);
    let relu = cpu().unary(UnaryOp::Relu, &x).unwrap().to_f64_vec();
    assert_eq!(&relu[..3], [0.0, 0.0, 2.0]);
    assert!(relu[3].is_nan());
    let gelu = cpu().unary(UnaryOp::Gelu, &x).unwrap().to_f64_vec();
    assert_close(
        &gelu[..3],
        &[-0.15865525393145707, 0.0, 1.9544997361036416],
        1e-6,
        "gelu",
    );
    let y = tensor(&[3.0, -1.0, f64::NAN, 1.0], DType::F32, &[4]);
    let max = cpu()
        .binary(BinaryOp::Maximum, &x, &y)
        .unwrap()
        .to_f64_vec();
    assert_eq!(&max[..2], [3.0, 0.0]);
    assert!(max[2].is_nan() && max[3].is_nan());
    let lt = cpu().compare(CompareOp::Lt, &x, &y).unwrap().to_f64_vec();
    assert_eq!(lt, [1.0, 0.0, 0.0, 0.0]);
    let a = Tensor::from_slice(&[i32::MAX, 5], [2]).unwrap();
    let b = Tensor::from_slice(&[1i32, 7], [2]).unwrap();
    assert_eq!(
        cpu().add(&a, &b).unwrap().to_vec::<i32>().unwrap(),
        [i32::MIN, 12]
    );
    let u = Tensor::from_slice(&[250u8, 3], [2]).unwrap();
    let v = Tensor::from_slice(&[10u8, 4], [2]).unwrap();
    assert_eq!(
        cpu().mul(&u, &v).unwrap().to_vec::<u8>().unwrap(),
        [196, 12]
    );
}

#[test]
fn hand_computed_casts() {
    let x = tensor(&[-2.7, 1e10, f64::NAN, 0.0, 1.00390625], DType::F32, &[5]);
    assert_eq!(
        cpu().cast(&x, DType::I32).unwrap().to_vec::<i32>().unwrap(),
        [-2, i32::MAX, 0, 0, 1]
    );
    assert_eq!(
        cpu().cast(&x, DType::Bool).unwrap().to_f64_vec(),
        [1.0, 1.0, 1.0, 0.0, 1.0]
    );
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one, 1.0.
    assert_eq!(cpu().cast(&x, DType::BF16).unwrap().to_f64_vec()[4], 1.0);
    let big = Tensor::from_slice(&[300i64, -1], [2]).unwrap();
    assert_eq!(
        cpu().cast(&big, DType::U8).unwrap().to_vec::<u8>().unwrap(),
        [44, 255]
    );
    let out = cpu().alloc(DType::I32, &[2, 2]).unwrap();
    cpu().fill_into(-3.9, &out).unwrap();
    assert_eq!(out.to_vec::<i32>().unwrap(), [-3; 4]);
}

#[test]
fn hand_computed_reductions_and_argmax() {
    let x = tensor(&[1.0, 5.0, 5.0, -2.0, f64::NAN, 0.0], DType::F32, &[2, 3]);
    assert_eq!(
        cpu().argmax(&x, 1, false).unwrap().to_vec::<i64>().unwrap(),
        [1, 1]
    );
    assert_eq!(
        cpu().argmax(&x, 0, false).unwrap().to_vec::<i64>().unwrap(),
        [0, 1, 0]
    );
    let max = cpu()
        .reduce(ReduceOp::Max, &x, &[1], false)
        .unwrap()
        .to_f64_vec();
    assert_eq!(max[0], 5.0);
    assert!(max[1].is_nan());
    let y = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], DType::BF16, &[2, 3]);
    assert_eq!(
        cpu().sum(&y, &[0], false).unwrap().to_f64_vec(),
        [5.0, 7.0, 9.0]
    );
    assert_eq!(
        cpu()
            .reduce(ReduceOp::Mean, &y, &[1], false)
            .unwrap()
            .to_f64_vec(),
        [2.0, 5.0]
    );
    let i = Tensor::from_slice(&[i32::MAX, 1, -4, 9], [2, 2]).unwrap();
    assert_eq!(
        cpu()
            .sum(&i, &[0, 1], false)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [i32::MIN + 5]
    );
    assert_eq!(
        cpu()
            .reduce(ReduceOp::Min, &i, &[0], false)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [-4, 1]
    );
}

#[test]
fn hand_computed_indexing() {
    let table = tensor(&[0.0, 1.0, 10.0, 11.0, 20.0, 21.0], DType::F32, &[3, 2]);
    let idx = Tensor::from_slice(&[2i64, 0, 2], [3]).unwrap();
    let rows = cpu().index_select(&table, 0, &idx).unwrap();
    assert_eq!(rows.to_f64_vec(), [20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
    let grad = cpu().alloc(DType::F32, &[3, 2]).unwrap();
    cpu().index_add(&grad, 0, &idx, &rows).unwrap();
    assert_eq!(grad.to_f64_vec(), [0.0, 1.0, 0.0, 0.0, 40.0, 42.0]);
    let pick = Tensor::from_slice(&[1i32, 0, 1], [3, 1]).unwrap();
    assert_eq!(
        cpu().gather(&table, 1, &pick).unwrap().to_f64_vec(),
        [1.0, 10.0, 21.0]
    );
    let dst = cpu().alloc(DType::F32, &[3, 2]).unwrap();
    let ones = tensor(&[1.0, 1.0, 1.0], DType::F32, &[3, 1]);
    cpu().scatter_add(&dst, 1, &pick, &ones).unwrap();
    assert_eq!(dst.to_f64_vec(), [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        cpu()
            .arange(5.0, -2.0, 4, DType::I64)
            .unwrap()
            .to_vec::<i64>()
            .unwrap(),
        [5, 3, 1, -1]
    );
}

// ----- aliasing -----

#[test]
fn elementwise_runs_in_place() {
    let a = tensor(&[1.0, -2.0, 3.0, -4.0], DType::F32, &[2, 2]);
    let b = tensor(&[10.0, 20.0, 30.0, 40.0], DType::F32, &[2, 2]);
    cpu().unary_into(UnaryOp::Neg, &a, &a).unwrap();
    assert_eq!(a.to_f64_vec(), [-1.0, 2.0, -3.0, 4.0]);
    cpu().binary_into(BinaryOp::Sub, &a, &b, &a).unwrap();
    assert_eq!(a.to_f64_vec(), [-11.0, -18.0, -33.0, -36.0]);
    cpu().binary_into(BinaryOp::Sub, &a, &b, &b).unwrap();
    assert_eq!(b.to_f64_vec(), [-21.0, -38.0, -63.0, -76.0]);
    cpu().binary_into(BinaryOp::Add, &b, &b, &b).unwrap();
    assert_eq!(b.to_f64_vec(), [-42.0, -76.0, -126.0, -152.0]);
    let row = tensor(&[1.0, 2.0], DType::F32, &[2]);
    cpu().binary_into(BinaryOp::Mul, &b, &row, &b).unwrap();
    assert_eq!(b.to_f64_vec(), [-42.0, -152.0, -126.0, -304.0]);
}

#[test]
fn inputs_and_output_in_one_arena() {
    // One storage holding an input `[2, 3]` (transposed view read), a gap and the output.
    let arena = Arc::new(luoshu_tensor::Storage::from_slice(&[
        1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ]));
    let view = |offset, dims: &[usize]| {
        let layout = luoshu_tensor::Layout::contiguous_at(dims.to_vec(), offset).unwrap();
        Tensor::from_storage(arena.clone(), layout, DType::F32).unwrap()
    };
    let x = view(0, &[2, 3]).transpose(0, 1).unwrap();
    let out = view(7, &[3, 2]);
    cpu().unary_into(UnaryOp::Neg, &x, &out).unwrap();
    assert_eq!(out.to_f64_vec(), [-1.0, -4.0, -2.0, -5.0, -3.0, -6.0]);
    let sum = view(6, &[1, 1]);
    cpu()
        .reduce_into(ReduceOp::Sum, &view(0, &[2, 3]), &[0, 1], &sum)
        .unwrap();
    assert_eq!(sum.to_f64_vec(), [21.0]);
    // Reading from after the output works too.
    let front = view(0, &[3]);
    cpu()
        .binary_into(BinaryOp::Add, &view(7, &[3]), &view(10, &[3]), &front)
        .unwrap();
    assert_eq!(front.to_f64_vec(), [-1.0 - 5.0, -4.0 - 3.0, -2.0 - 6.0]);
}

// ----- errors -----

fn index_error(op: &'static str, index: i64, dim: usize, size: usize) -> Error {
    luoshu_tensor::Error::IndexOutOfRange {
        op,
        index,
        dim,
        size,
    }
    .into()
}

#[test]
fn bad_indices_fail_before_writing() {
    let x = tensor(&[1.0, 2.0, 3.0, 4.0], DType::F32, &[2, 2]);
    let out = cpu().full(7.0, DType::F32, &[3, 2]).unwrap();
    let idx = Tensor::from_slice(&[0i64, 2, -1], [3]).unwrap();
    assert_eq!(
        cpu().index_select_into(&x, 0, &idx, &out).unwrap_err(),
        index_error("index_select", 2, 0, 2)
    );
    assert_eq!(out.to_f64_vec(), [7.0; 6]);
    let dst = cpu().full(7.0, DType::F32, &[2, 2]).unwrap();
    let neg = Tensor::from_slice(&[1i32, -1, 0], [3]).unwrap();
    let src = tensor(&[1.0; 6], DType::F32, &[3, 2]);
    assert_eq!(
        cpu().index_add(&dst, 0, &neg, &src).unwrap_err(),
        index_error("index_add", -1, 0, 2)
    );
    assert_eq!(dst.to_f64_vec(), [7.0; 4]);
    let index = Tensor::from_slice(&[0i64, 1, 5, 0], [2, 2]).unwrap();
    assert_eq!(
        cpu().gather(&x, 1, &index).unwrap_err(),
        index_error("gather", 5, 1, 2)
    );
    let ones = tensor(&[1.0; 4], DType::F32, &[2, 2]);
    assert_eq!(
        cpu().scatter_add(&dst, 1, &index, &ones).unwrap_err(),
        index_error("scatter_add", 5, 1, 2)
    );
    assert_eq!(dst.to_f64_vec(), [7.0; 4]);
}

// ----- parallel paths -----

#[test]
fn large_elementwise_takes_the_parallel_path() {
    let n = 300_001;
    let a = tensor(&values(DType::F32, n, 20), DType::F32, &[n]);
    let b = tensor(&values(DType::F32, n, 21), DType::F32, &[n]);
    let got = cpu().binary(BinaryOp::Mul, &a, &b).unwrap().to_f64_vec();
    let want: Vec<f64> = a
        .to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x * y) as f32 as f64)
        .collect();
    assert_eq!(got, want);
    let wide = tensor(
        &values(DType::BF16, 600_002, 22),
        DType::BF16,
        &[300_001, 2],
    );
    let t = wide.transpose(0, 1).unwrap();
    let got = cpu().unary(UnaryOp::Exp, &t).unwrap().to_f64_vec();
    assert_close(
        &got,
        &reference().unary(UnaryOp::Exp, &t).unwrap().to_f64_vec(),
        tol(DType::BF16),
        "exp",
    );
    let col = tensor(&[2.0, 3.0], DType::BF16, &[2, 1]);
    let got = cpu().binary(BinaryOp::Add, &t, &col).unwrap().to_f64_vec();
    assert_close(
        &got,
        &reference()
            .binary(BinaryOp::Add, &t, &col)
            .unwrap()
            .to_f64_vec(),
        tol(DType::BF16),
        "add",
    );
    let got = cpu().cast(&t, DType::F32).unwrap().to_f64_vec();
    assert_eq!(got, t.to_f64_vec());
}

#[test]
fn long_sums_are_accurate_in_every_direction() {
    let n = 100_000;
    let v: Vec<f64> = values(DType::F32, n, 23).iter().map(|x| x + 3.5).collect();
    let x = tensor(&v, DType::F32, &[n]);
    let exact: f64 = x.to_f64_vec().iter().sum();
    let got = cpu().sum(&x, &[0], false).unwrap().to_f64_vec()[0];
    assert!(
        (got - exact).abs() <= 1e-6 * exact,
        "full sum {got} vs {exact}"
    );
    // Rows ([R, C] -> [R, 1]) and columns ([R, C] -> [1, C]) of a larger matrix.
    let (r, c) = (600, 500);
    let m = tensor(&values(DType::F32, r * c, 24), DType::F32, &[r, c]);
    for axis in [0, 1] {
        for input in [m.clone(), m.transpose(0, 1).unwrap()] {
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean] {
                let got = cpu()
                    .reduce(op, &input, &[axis], true)
                    .unwrap()
                    .to_f64_vec();
                let want = reference()
                    .reduce(op, &input, &[axis], true)
                    .unwrap()
                    .to_f64_vec();
                assert_close(&got, &want, 1e-5, &format!("{op:?} axis {axis}"));
            }
            let got = cpu().argmax(&input, axis, true).unwrap().to_f64_vec();
            assert_eq!(
                got,
                reference().argmax(&input, axis, true).unwrap().to_f64_vec()
            );
        }
    }
    let got = cpu()
        .reduce(ReduceOp::Mean, &m, &[0, 1], false)
        .unwrap()
        .to_f64_vec();
    assert_close(
        &got,
        &reference()
            .reduce(ReduceOp::Mean, &m, &[0, 1], false)
            .unwrap()
            .to_f64_vec(),
        1e-5,
        "mean all",
    );
}

#[test]
fn large_indexing_takes_the_parallel_path() {
    let (v, d, n) = (1000, 64, 2000);
    let table = tensor(&values(DType::F32, v * d, 25), DType::F32, &[v, d]);
    let idx: Vec<i64> = (0..n as u64)
        .map(|i| (rng::bits(3, 0, i) % v as u64) as i64)
        .collect();
    let idx = Tensor::from_slice(&idx, [n]).unwrap();
    let rows = cpu().index_select(&table, 0, &idx).unwrap();
    assert_eq!(
        rows.to_f64_vec(),
        reference()
            .index_select(&table, 0, &idx)
            .unwrap()
            .to_f64_vec()
    );
    let run = |ops: Ops<'_>| {
        let grad = ops.alloc(DType::F32, &[v, d]).unwrap();
        ops.index_add(&grad, 0, &idx, &rows).unwrap();
        grad.to_f64_vec()
    };
    assert_close(&run(cpu()), &run(reference()), 1e-6, "index_add");
    let parts = [&rows, &table];
    let got = cpu().concat(&parts, 0).unwrap().to_f64_vec();
    assert_eq!(got, reference().concat(&parts, 0).unwrap().to_f64_vec());
}

// ----- property tests -----

/// A random strided view: a permuted, stepped slice of a fresh tensor.
fn strided_case() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>, u64)> {
    (1usize..=4).prop_flat_map(|rank| {
        (
            proptest::collection::vec(0usize..=5, rank),
            proptest::collection::vec(1usize..=2, rank),
            Just((0..rank).collect::<Vec<_>>()).prop_shuffle(),
            any::<u64>(),
        )
    })
}

fn make_view(dims: &[usize], steps: &[usize], perm: &[usize], seed: u64, dtype: DType) -> Tensor {
    let base: Vec<usize> = dims.iter().zip(steps).map(|(d, s)| d * s).collect();
    let n: usize = base.iter().product();
    let mut t = tensor(&values(dtype, n, seed), dtype, &base);
    for (axis, &s) in steps.iter().enumerate() {
        t = t.slice(axis, 0, base[axis], s).unwrap();
    }
    t.permute(perm).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn binary_and_reduce_agree_with_reference_on_random_strides(
        (dims, steps, perm, seed) in strided_case(),
        bcast in any::<prop::sample::Index>(),
        axis_mask in 1u32..16,
        dtype in prop::sample::select(vec![DType::F32, DType::BF16, DType::I32]),
    ) {
        let a = make_view(&dims, &steps, &perm, seed, dtype);
        let b = make_view(&dims, &steps, &perm, seed ^ 1, dtype);
        // Broadcast one dimension of `b` from size 1.
        let d = bcast.index(a.rank());
        let b = b.narrow(d, 0, a.dims()[d].min(1)).unwrap();
        let b = if a.dims()[d] > 0 { b.broadcast_to(a.dims().to_vec()).unwrap() } else { b };
        for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Maximum] {
            let got = cpu().binary(op, &a, &b).unwrap().to_f64_vec();
            let want = reference().binary(op, &a, &b).unwrap().to_f64_vec();
            assert_close(&got, &want, tol(dtype), &format!("{op:?}"));
        }
        let axes: Vec<usize> = (0..a.rank()).filter(|i| axis_mask & (1 << i) != 0).collect();
        // Skipped when the keepdim output is empty: `Ops` rejects the [.., 0, .., 1] output
        // it allocates itself (see the report on `Layout::is_contiguous`).
        let out_empty = (0..a.rank()).any(|i| !axes.contains(&i) && a.dims()[i] == 0);
        if !axes.is_empty() && !out_empty {
            let got = cpu().sum(&a, &axes, true).unwrap().to_f64_vec();
            let want = reference().sum(&a, &axes, true).unwrap().to_f64_vec();
            assert_close(&got, &want, tol(dtype).max(1e-6), "sum");
            if axes.iter().all(|&x| a.dims()[x] > 0) {
                let got = cpu().reduce(ReduceOp::Max, &a, &axes, true).unwrap().to_f64_vec();
                let want = reference().reduce(ReduceOp::Max, &a, &axes, true).unwrap().to_f64_vec();
                assert_close(&got, &want, 0.0, "max");
            }
        }
    }
}
