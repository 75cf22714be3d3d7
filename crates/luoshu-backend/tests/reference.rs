//! The reference backend against hand-computed values, on contiguous and strided inputs,
//! several dtypes, empty tensors, in-place aliasing and index errors.

use luoshu_backend::ops::{BinaryOp, CompareOp, RandomDist, ReduceOp, UnaryOp};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{DType, Error, Ops, Tensor};
use luoshu_tensor::{bf16, rng};

fn ops() -> Ops<'static> {
    Ops::new(&ReferenceBackend)
}

fn tensor(values: &[f64], dtype: DType, dims: &[usize]) -> Tensor {
    Tensor::from_f64(values, dtype, dims).unwrap()
}

fn f32s(values: &[f64], dims: &[usize]) -> Tensor {
    tensor(values, DType::F32, dims)
}

fn i64s(values: &[i64], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

/// `[[0, 1, 2], [3, 4, 5]]` transposed: a non-contiguous `[3, 2]` view
/// `[[0, 3], [1, 4], [2, 5]]`.
fn transposed(dtype: DType) -> Tensor {
    let t = tensor(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], dtype, &[2, 3])
        .transpose(0, 1)
        .unwrap();
    assert!(!t.is_contiguous());
    t
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

fn index_error(op: &'static str, index: i64, dim: usize, size: usize) -> Error {
    luoshu_tensor::Error::IndexOutOfRange {
        op,
        index,
        dim,
        size,
    }
    .into()
}

// ----- memory -----

#[test]
fn copy_makes_views_contiguous() {
    let ops = ops();
    let t = ops.contiguous(&transposed(DType::F32)).unwrap();
    assert!(t.is_contiguous());
    assert_eq!(t.to_f64_vec(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);

    // Every other column of a [2, 5] matrix.
    let x = f32s(&(0..10).map(f64::from).collect::<Vec<_>>(), &[2, 5]);
    let stepped = x.slice(1, 0, 5, 2).unwrap();
    let out = ops.alloc(DType::F32, &[2, 3]).unwrap();
    ops.copy_into(&stepped, &out).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), [0.0, 2.0, 4.0, 5.0, 7.0, 9.0]);

    // A zero-stride broadcast of a row.
    let row = f32s(&[1.0, 2.0], &[2]).broadcast_to([3, 2]).unwrap();
    let out = ops.contiguous(&row).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
}

#[test]
fn copy_keeps_large_integers_exact() {
    let big = [(1i64 << 62) + 1, i64::MIN, -3];
    let x = i64s(&big, &[3]).slice(0, 0, 3, 1).unwrap();
    let out = ops().alloc(DType::I64, &[3]).unwrap();
    ops().copy_into(&x, &out).unwrap();
    assert_eq!(out.to_vec::<i64>().unwrap(), big);
}

#[test]
fn fill_converts_like_a_cast_and_stays_in_its_region() {
    let ops = ops();
    let base = ops.alloc(DType::I32, &[5]).unwrap();
    // A contiguous view with a non-zero offset: only elements 1..4 change.
    let middle = base.narrow(0, 1, 3).unwrap();
    ops.fill_into(-2.7, &middle).unwrap();
    assert_eq!(base.to_vec::<i32>().unwrap(), [0, -2, -2, -2, 0]);

    let u8s = ops.full(300.0, DType::U8, &[2]).unwrap();
    assert_eq!(u8s.to_vec::<u8>().unwrap(), [255, 255]);
    let bools = ops.full(0.5, DType::Bool, &[2]).unwrap();
    assert_eq!(bools.to_f64_vec(), [1.0, 1.0]);
    let halves = ops.full(1.0 + 1.0 / 256.0, DType::BF16, &[1]).unwrap();
    assert_eq!(halves.to_vec::<bf16>().unwrap(), [bf16::ONE]);
}

#[test]
fn cast_truncates_saturates_and_rounds() {
    let ops = ops();
    let x = f32s(&[-2.7, 2.7, 1e10, -1e10, f64::NAN, 0.0], &[6]);
    let to_i32 = ops.cast(&x, DType::I32).unwrap();
    assert_eq!(
        to_i32.to_vec::<i32>().unwrap(),
        [-2, 2, i32::MAX, i32::MIN, 0, 0]
    );
    let to_u8 = ops.cast(&x, DType::U8).unwrap();
    assert_eq!(to_u8.to_vec::<u8>().unwrap(), [0, 2, 255, 0, 0, 0]);
    let to_bool = ops.cast(&x, DType::Bool).unwrap();
    assert_eq!(to_bool.to_f64_vec(), [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);

    // bf16 keeps 8 significant bits: 1 + 2^-8 and 1 + 3·2^-8 are ties, rounded to even.
    let ties = f32s(&[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0], &[2]);
    let to_bf16 = ops.cast(&ties, DType::BF16).unwrap();
    assert_eq!(to_bf16.to_f64_vec(), [1.0, 1.0 + 4.0 / 256.0]);

    let bools = Tensor::from_bools(&[true, false, true], [3]).unwrap();
    assert_eq!(
        ops.cast(&bools, DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [1.0, 0.0, 1.0]
    );
    // Integer narrowing wraps; integer to bool is `!= 0`.
    let ints = i64s(&[300, -1, 0, 1 << 40], &[4]);
    assert_eq!(
        ops.cast(&ints, DType::U8).unwrap().to_vec::<u8>().unwrap(),
        [44, 255, 0, 0]
    );
    assert_eq!(
        ops.cast(&ints, DType::Bool).unwrap().to_f64_vec(),
        [1.0, 1.0, 0.0, 1.0]
    );
    // A strided source casts in logical order.
    let from_view = ops.cast(&transposed(DType::I32), DType::F64).unwrap();
    assert_eq!(
        from_view.to_vec::<f64>().unwrap(),
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
}

// ----- elementwise -----

#[test]
fn unary_float_ops_match_hand_values() {
    let cases: [(UnaryOp, f64, f64); 14] = [
        (UnaryOp::Neg, 1.5, -1.5),
        (UnaryOp::Abs, -1.5, 1.5),
        (UnaryOp::Exp, 1.0, std::f64::consts::E),
        (UnaryOp::Log, 2.0, std::f64::consts::LN_2),
        (UnaryOp::Sqrt, 2.25, 1.5),
        (UnaryOp::Rsqrt, 4.0, 0.5),
        (UnaryOp::Recip, 4.0, 0.25),
        (UnaryOp::Sin, 1.0, 0.8414709848078965),
        (UnaryOp::Cos, 1.0, 0.5403023058681398),
        (UnaryOp::Tanh, 1.0, 0.7615941559557649),
        (UnaryOp::Sigmoid, 1.0, 0.7310585786300049),
        (UnaryOp::Relu, -1.0, 0.0),
        (UnaryOp::Silu, -1.0, -0.2689414213699951),
        (UnaryOp::Gelu, 1.0, 0.8413447460685429),
    ];
    for (op, x, want) in cases {
        for (dtype, tol) in [(DType::F64, 1e-15), (DType::F32, 1e-6), (DType::F16, 1e-3)] {
            let got = ops().unary(op, &tensor(&[x], dtype, &[1])).unwrap();
            assert_close(&got.to_f64_vec(), &[want], tol);
        }
    }
    let g = ops()
        .unary(UnaryOp::Gelu, &tensor(&[-1.0, 0.0], DType::F64, &[2]))
        .unwrap();
    assert_close(&g.to_f64_vec(), &[-0.15865525393145707, 0.0], 1e-15);
}

#[test]
fn unary_special_values() {
    let x = f32s(&[f64::NAN, -0.0, 3.0, -3.0], &[4]);
    let relu = ops().unary(UnaryOp::Relu, &x).unwrap().to_f64_vec();
    assert!(relu[0].is_nan());
    assert_eq!(&relu[1..], [0.0, 3.0, 0.0]);
    let log = ops()
        .unary(UnaryOp::Log, &f32s(&[0.0, -1.0], &[2]))
        .unwrap()
        .to_f64_vec();
    assert_eq!(log[0], f64::NEG_INFINITY);
    assert!(log[1].is_nan());
}

#[test]
fn unary_on_strided_input_and_in_place() {
    let ops = ops();
    let out = ops.unary(UnaryOp::Neg, &transposed(DType::F32)).unwrap();
    assert_eq!(out.to_f64_vec(), [-0.0, -3.0, -1.0, -4.0, -2.0, -5.0]);

    let x = f32s(&[1.0, 4.0, 9.0], &[3]);
    ops.unary_into(UnaryOp::Sqrt, &x, &x).unwrap();
    assert_eq!(x.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);

    let empty = f32s(&[], &[0, 3]);
    assert_eq!(ops.unary(UnaryOp::Exp, &empty).unwrap().dims(), [0, 3]);
}

#[test]
fn unary_integer_ops_wrap() {
    let x = i64s(&[i64::MIN, -5, 7], &[3]);
    let neg = ops().unary(UnaryOp::Neg, &x).unwrap();
    assert_eq!(neg.to_vec::<i64>().unwrap(), [i64::MIN, 5, -7]);
    let abs = ops().unary(UnaryOp::Abs, &x).unwrap();
    assert_eq!(abs.to_vec::<i64>().unwrap(), [i64::MIN, 5, 7]);
    let relu = ops().unary(UnaryOp::Relu, &x).unwrap();
    assert_eq!(relu.to_vec::<i64>().unwrap(), [0, 0, 7]);
    let x32 = Tensor::from_slice(&[i32::MIN, -2], [2]).unwrap();
    let abs32 = ops().unary(UnaryOp::Abs, &x32).unwrap();
    assert_eq!(abs32.to_vec::<i32>().unwrap(), [i32::MIN, 2]);
}

#[test]
fn binary_broadcasts_column_against_row() {
    let col = f32s(&[1.0, 2.0], &[2, 1]);
    let row = f32s(&[10.0, 20.0, 30.0], &[3]);
    let cases = [
        (BinaryOp::Add, [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]),
        (BinaryOp::Sub, [-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]),
        (BinaryOp::Mul, [10.0, 20.0, 30.0, 20.0, 40.0, 60.0]),
        (BinaryOp::Div, [0.1, 0.05, 1.0 / 30.0, 0.2, 0.1, 1.0 / 15.0]),
        (BinaryOp::Maximum, [10.0, 20.0, 30.0, 10.0, 20.0, 30.0]),
        (BinaryOp::Minimum, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]),
        (
            BinaryOp::Pow,
            [1.0, 1.0, 1.0, 1024.0, 1048576.0, 1073741824.0],
        ),
    ];
    for (op, want) in cases {
        let got = ops().binary(op, &col, &row).unwrap();
        assert_eq!(got.dims(), [2, 3]);
        assert_close(&got.to_f64_vec(), &want, 1e-7);
    }
}

#[test]
fn binary_on_strided_inputs_and_in_place() {
    let ops = ops();
    let a = transposed(DType::F64);
    let b = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], DType::F64, &[3, 2]);
    let out = ops.add(&a, &b).unwrap();
    assert_eq!(out.to_f64_vec(), [1.0, 5.0, 4.0, 8.0, 7.0, 11.0]);

    // out = a - out and out = out * out, each in place on a contiguous operand.
    let c = tensor(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], DType::F64, &[3, 2]);
    ops.binary_into(BinaryOp::Sub, &c, &out, &out).unwrap();
    assert_eq!(out.to_f64_vec(), [0.0, -4.0, -3.0, -7.0, -6.0, -10.0]);
    ops.binary_into(BinaryOp::Mul, &out, &out, &out).unwrap();
    assert_eq!(out.to_f64_vec(), [0.0, 16.0, 9.0, 49.0, 36.0, 100.0]);

    let empty = ops.add(&f32s(&[], &[0]), &f32s(&[1.0], &[1])).unwrap();
    assert_eq!(empty.dims(), [0]);
}

#[test]
fn binary_rounds_once_into_bf16() {
    // 1 + 2^-8 is exact in f64 and a tie in bf16, which rounds to even (1.0).
    let a = tensor(&[1.0, 1.0], DType::BF16, &[2]);
    let b = tensor(&[1.0 / 256.0, 3.0 / 256.0], DType::BF16, &[2]);
    let sum = ops().add(&a, &b).unwrap();
    assert_eq!(sum.to_f64_vec(), [1.0, 1.0 + 4.0 / 256.0]);
}

#[test]
fn binary_maximum_minimum_propagate_nan() {
    let a = f32s(&[f64::NAN, 1.0, 2.0], &[3]);
    let b = f32s(&[0.0, f64::NAN, 1.0], &[3]);
    for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
        let got = ops().binary(op, &a, &b).unwrap().to_f64_vec();
        assert!(got[0].is_nan() && got[1].is_nan(), "{op:?}: {got:?}");
    }
    let max = ops()
        .binary(BinaryOp::Maximum, &a, &b)
        .unwrap()
        .to_f64_vec();
    assert_eq!(max[2], 2.0);
}

#[test]
fn binary_integers_wrap() {
    let a = i64s(&[i64::MAX, i64::MIN, 1 << 40], &[3]);
    let b = i64s(&[1, 1, 1 << 30], &[3]);
    let add = ops().add(&a, &b).unwrap().to_vec::<i64>().unwrap();
    assert_eq!(add, [i64::MIN, i64::MIN + 1, (1 << 40) + (1 << 30)]);
    let sub = ops().sub(&a, &b).unwrap().to_vec::<i64>().unwrap();
    assert_eq!(sub, [i64::MAX - 1, i64::MAX, (1 << 40) - (1 << 30)]);
    // 2^70 wraps to 0 in i64; exact large products survive (no trip through f64).
    let mul = ops().mul(&a, &b).unwrap().to_vec::<i64>().unwrap();
    assert_eq!(mul, [i64::MAX, i64::MIN, 0]);
    let odd = i64s(&[(1 << 53) + 1], &[1]);
    let three = i64s(&[3], &[1]);
    let prod = ops().mul(&odd, &three).unwrap().to_vec::<i64>().unwrap();
    assert_eq!(prod, [3 * (1 << 53) + 3]);

    let a32 = Tensor::from_slice(&[i32::MAX, 65536], [2]).unwrap();
    let b32 = Tensor::from_slice(&[1, 65536], [2]).unwrap();
    let add32 = ops().add(&a32, &b32).unwrap().to_vec::<i32>().unwrap();
    assert_eq!(add32, [i32::MIN, 131072]);
    let mul32 = ops().mul(&a32, &b32).unwrap().to_vec::<i32>().unwrap();
    assert_eq!(mul32, [i32::MAX, 0]);

    let a8 = Tensor::from_slice(&[200u8, 3, 250], [3]).unwrap();
    let b8 = Tensor::from_slice(&[100u8, 5, 7], [3]).unwrap();
    let add8 = ops().add(&a8, &b8).unwrap().to_vec::<u8>().unwrap();
    assert_eq!(add8, [44, 8, 1]);
    let sub8 = ops().sub(&b8, &a8).unwrap().to_vec::<u8>().unwrap();
    assert_eq!(sub8, [156, 2, 13]);
    let max8 = ops()
        .binary(BinaryOp::Maximum, &a8, &b8)
        .unwrap()
        .to_vec::<u8>()
        .unwrap();
    assert_eq!(max8, [200, 5, 250]);
}

#[test]
fn compare_is_false_with_nan() {
    let a = f32s(&[1.0, 2.0, 3.0, f64::NAN], &[4]);
    let b = f32s(&[2.0, 2.0, 2.0, f64::NAN], &[4]);
    let cases = [
        (CompareOp::Eq, [0.0, 1.0, 0.0, 0.0]),
        (CompareOp::Lt, [1.0, 0.0, 0.0, 0.0]),
        (CompareOp::Le, [1.0, 1.0, 0.0, 0.0]),
        (CompareOp::Gt, [0.0, 0.0, 1.0, 0.0]),
        (CompareOp::Ge, [0.0, 1.0, 1.0, 0.0]),
    ];
    for (op, want) in cases {
        let got = ops().compare(op, &a, &b).unwrap();
        assert_eq!(got.dtype(), DType::Bool);
        assert_eq!(got.to_f64_vec(), want, "{op:?}");
    }
}

#[test]
fn compare_integers_exactly_and_broadcast() {
    // 2^53 and 2^53 + 1 are equal as f64 but not as i64.
    let a = i64s(&[1 << 53, (1 << 53) + 1], &[2, 1]);
    let b = i64s(&[(1 << 53) + 1], &[1]);
    let eq = ops().compare(CompareOp::Eq, &a, &b).unwrap();
    assert_eq!(eq.dims(), [2, 1]);
    assert_eq!(eq.to_f64_vec(), [0.0, 1.0]);
    let lt = ops()
        .compare(
            CompareOp::Lt,
            &transposed(DType::I32),
            &tensor(&[2.0], DType::I32, &[1]),
        )
        .unwrap();
    assert_eq!(lt.to_f64_vec(), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn select_picks_per_element_with_broadcast() {
    let cond = Tensor::from_bools(&[true, false], [2, 1]).unwrap();
    let a = transposed(DType::F32).narrow(0, 0, 2).unwrap(); // [[0, 3], [1, 4]]
    let b = f32s(&[-1.0], &[1]);
    let out = ops().select(&cond, &a, &b).unwrap();
    assert_eq!(out.to_f64_vec(), [0.0, 3.0, -1.0, -1.0]);

    let ints = ops()
        .select(
            &Tensor::from_bools(&[false, true], [2]).unwrap(),
            &i64s(&[i64::MAX, i64::MAX], &[2]),
            &i64s(&[i64::MIN + 1, 0], &[2]),
        )
        .unwrap();
    assert_eq!(ints.to_vec::<i64>().unwrap(), [i64::MIN + 1, i64::MAX]);
}

// ----- reductions -----

#[test]
fn reduce_over_each_set_of_axes() {
    // [[1, 2, 3], [4, 5, 6]]
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    // (op, axes, output dims, expected values)
    type Case = (ReduceOp, &'static [usize], &'static [usize], &'static [f64]);
    let cases: [Case; 8] = [
        (ReduceOp::Sum, &[0], &[1, 3], &[5.0, 7.0, 9.0]),
        (ReduceOp::Sum, &[1], &[2, 1], &[6.0, 15.0]),
        (ReduceOp::Sum, &[0, 1], &[1, 1], &[21.0]),
        (ReduceOp::Mean, &[1], &[2, 1], &[2.0, 5.0]),
        (ReduceOp::Mean, &[0, 1], &[1, 1], &[3.5]),
        (ReduceOp::Max, &[0], &[1, 3], &[4.0, 5.0, 6.0]),
        (ReduceOp::Min, &[1], &[2, 1], &[1.0, 4.0]),
        (ReduceOp::Max, &[0, 1], &[1, 1], &[6.0]),
    ];
    for (op, axes, dims, want) in cases {
        let got = ops().reduce(op, &x, axes, true).unwrap();
        assert_eq!(got.dims(), dims, "{op:?} {axes:?}");
        assert_eq!(got.to_f64_vec(), want, "{op:?} {axes:?}");
    }
}

#[test]
fn reduce_strided_and_broadcast_inputs() {
    // [[0, 3], [1, 4], [2, 5]]
    let sum = ops().sum(&transposed(DType::F64), &[0], false).unwrap();
    assert_eq!(sum.to_f64_vec(), [3.0, 12.0]);
    let rows = ops().sum(&transposed(DType::F64), &[1], false).unwrap();
    assert_eq!(rows.to_f64_vec(), [3.0, 5.0, 7.0]);
    // A zero-stride broadcast counts each element once per copy.
    let b = f32s(&[1.0, 2.0], &[2]).broadcast_to([4, 2]).unwrap();
    let cols = ops().sum(&b, &[0], false).unwrap();
    assert_eq!(cols.to_f64_vec(), [4.0, 8.0]);
    // Reducing the middle axis of a rank-3 tensor.
    let x = f32s(&(0..12).map(f64::from).collect::<Vec<_>>(), &[2, 3, 2]);
    let mid = ops().reduce(ReduceOp::Max, &x, &[1], true).unwrap();
    assert_eq!(mid.dims(), [2, 1, 2]);
    assert_eq!(mid.to_f64_vec(), [4.0, 5.0, 10.0, 11.0]);
    let outer = ops().sum(&x, &[0, 2], false).unwrap();
    assert_eq!(outer.to_f64_vec(), [14.0, 22.0, 30.0]);
}

#[test]
fn reduce_empty_nan_integer_and_bf16() {
    let empty = f32s(&[], &[2, 0]);
    let sum = ops().sum(&empty, &[1], false).unwrap();
    assert_eq!(sum.to_f64_vec(), [0.0, 0.0]);
    assert!(sum.to_f64_vec()[0].is_sign_positive());
    let mean = ops()
        .reduce(ReduceOp::Mean, &empty, &[1], false)
        .unwrap()
        .to_f64_vec();
    assert!(mean.iter().all(|m| m.is_nan()), "{mean:?}");
    let nothing = ops().sum(&empty, &[0], false).unwrap();
    assert_eq!(nothing.dims(), [0]);

    let with_nan = f32s(&[1.0, f64::NAN, 3.0], &[3]);
    for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum] {
        let got = ops().reduce(op, &with_nan, &[0], false).unwrap();
        assert!(got.to_f64_vec()[0].is_nan(), "{op:?}");
    }

    let ints = i64s(&[i64::MAX, 1, 5], &[3]);
    let wrapped = ops().sum(&ints, &[0], false).unwrap();
    assert_eq!(wrapped.to_vec::<i64>().unwrap(), [i64::MIN + 5]);
    let min = ops().reduce(ReduceOp::Min, &ints, &[0], false).unwrap();
    assert_eq!(min.to_vec::<i64>().unwrap(), [1]);

    // Summed in f64 then rounded once: 256 + 1 + 1 = 258 (exact in bf16). Accumulating in
    // bf16 would round 257 to 256 twice and give 256.
    let b = tensor(&[256.0, 1.0, 1.0], DType::BF16, &[3]);
    let s = ops().sum(&b, &[0], false).unwrap();
    assert_eq!(s.to_f64_vec(), [258.0]);
}

#[test]
fn argmax_takes_the_first_maximum_and_the_first_nan() {
    let x = f32s(&[1.0, 3.0, 3.0, 2.0, 5.0, f64::NAN, 0.0, f64::NAN], &[2, 4]);
    let rows = ops().argmax(&x, 1, false).unwrap();
    assert_eq!(rows.to_vec::<i64>().unwrap(), [1, 1]);
    let first_nan = f32s(&[f64::NAN, 9.0], &[2]);
    let got = ops().argmax(&first_nan, 0, true).unwrap();
    assert_eq!(got.dims(), [1]);
    assert_eq!(got.to_vec::<i64>().unwrap(), [0]);

    // [[0, 3], [1, 4], [2, 5]] down the columns, and integers.
    let cols = ops().argmax(&transposed(DType::F32), 0, true).unwrap();
    assert_eq!(cols.dims(), [1, 2]);
    assert_eq!(cols.to_vec::<i64>().unwrap(), [2, 2]);
    let ints = i64s(&[-5, 7, 7, i64::MIN], &[4]);
    let i = ops().argmax(&ints, 0, false).unwrap();
    assert_eq!(i.to_vec::<i64>().unwrap(), [1]);
}

// ----- matmul -----

#[test]
fn matmul_matches_hand_products() {
    // [[1, 2, 3], [4, 5, 6]] · [[7, 8], [9, 10], [11, 12]]
    let a = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = f32s(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let out = ops().matmul(&a, &b).unwrap();
    assert_eq!(out.dims(), [2, 2]);
    assert_eq!(out.to_f64_vec(), [58.0, 64.0, 139.0, 154.0]);

    // aᵀ as a strided view: [[0, 3], [1, 4], [2, 5]] · [[1, 0], [0, 1]]
    let eye = f32s(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let t = ops().matmul(&transposed(DType::F32), &eye).unwrap();
    assert_eq!(t.to_f64_vec(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    // b·bᵀ with bᵀ a strided view.
    let bbt = ops().matmul(&b, &b.transpose(0, 1).unwrap()).unwrap();
    assert_eq!(
        bbt.to_f64_vec(),
        [113.0, 143.0, 173.0, 143.0, 181.0, 219.0, 173.0, 219.0, 265.0]
    );
}

#[test]
fn matmul_batches_broadcasts_and_empty() {
    // Two batches of [1, 2] · one shared [2, 1].
    let a = tensor(&[1.0, 2.0, 3.0, 4.0], DType::F64, &[2, 1, 2]);
    let b = tensor(&[10.0, 100.0], DType::F64, &[2, 1]);
    let out = ops().matmul(&a, &b).unwrap();
    assert_eq!(out.dims(), [2, 1, 1]);
    assert_eq!(out.to_f64_vec(), [210.0, 430.0]);

    // k = 0 gives zeros; m = 0 gives nothing.
    let zeros = ops()
        .matmul(&f32s(&[], &[2, 0]), &f32s(&[], &[0, 3]))
        .unwrap();
    assert_eq!(zeros.to_f64_vec(), [0.0; 6]);
    let none = ops()
        .matmul(&f32s(&[], &[0, 2]), &f32s(&[1.0, 2.0], &[2, 1]))
        .unwrap();
    assert_eq!(none.dims(), [0, 1]);
}

#[test]
fn matmul_accumulates_wide_for_half_precision() {
    // 256 + 1 + 1 = 258: exact in bf16 once, but 256 if each partial sum were rounded.
    let a = tensor(&[256.0, 1.0, 1.0], DType::BF16, &[1, 3]);
    let b = tensor(&[1.0, 1.0, 1.0], DType::BF16, &[3, 1]);
    let out = ops().matmul(&a, &b).unwrap();
    assert_eq!(out.to_f64_vec(), [258.0]);
    let h = tensor(&[0.5, 0.25], DType::F16, &[1, 2]);
    let hw = tensor(&[2.0, 4.0], DType::F16, &[2, 1]);
    assert_eq!(ops().matmul(&h, &hw).unwrap().to_f64_vec(), [2.0]);
}

// ----- indexing -----

#[test]
fn index_select_rows_and_columns() {
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let rows = ops().index_select(&x, 0, &i64s(&[2, 0, 2], &[3])).unwrap();
    assert_eq!(rows.to_f64_vec(), [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
    let idx32 = Tensor::from_slice(&[1i32], [1]).unwrap();
    let col = ops().index_select(&x, 1, &idx32).unwrap();
    assert_eq!(col.dims(), [3, 1]);
    assert_eq!(col.to_f64_vec(), [2.0, 4.0, 6.0]);
    // Strided source: rows of [[0, 3], [1, 4], [2, 5]].
    let picked = ops()
        .index_select(&transposed(DType::I64), 0, &i64s(&[1], &[1]))
        .unwrap();
    assert_eq!(picked.to_vec::<i64>().unwrap(), [1, 4]);
    let none = ops().index_select(&x, 0, &i64s(&[], &[0])).unwrap();
    assert_eq!(none.dims(), [0, 2]);
}

#[test]
fn index_select_rejects_bad_indices_before_writing() {
    let x = f32s(&[1.0, 2.0, 3.0], &[3]);
    let out = f32s(&[-7.0, -7.0], &[2]);
    let err = ops()
        .index_select_into(&x, 0, &i64s(&[0, 3], &[2]), &out)
        .unwrap_err();
    assert_eq!(err, index_error("index_select", 3, 0, 3));
    assert!(err.to_string().contains("index_select") && err.to_string().contains('3'));
    assert_eq!(out.to_f64_vec(), [-7.0, -7.0]);
    let err = ops()
        .index_select(&x, 0, &Tensor::from_slice(&[-1i32], [1]).unwrap())
        .unwrap_err();
    assert_eq!(err, index_error("index_select", -1, 0, 3));
}

#[test]
fn index_add_accumulates_repeated_indices() {
    let dst = f32s(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], &[3, 2]);
    let src = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    ops()
        .index_add(&dst, 0, &i64s(&[2, 0, 2], &[3]), &src)
        .unwrap();
    assert_eq!(dst.to_f64_vec(), [4.0, 5.0, 1.0, 1.0, 7.0, 9.0]);

    // Along dim 1 with a strided source [[0, 3], [1, 4], [2, 5]] and i32 indices.
    let dst = tensor(&[0.0; 6], DType::I64, &[3, 2]);
    let idx = Tensor::from_slice(&[1i32, 1], [2]).unwrap();
    ops()
        .index_add(&dst, 1, &idx, &transposed(DType::I64))
        .unwrap();
    assert_eq!(dst.to_vec::<i64>().unwrap(), [0, 3, 0, 5, 0, 7]);
}

#[test]
fn index_add_rejects_bad_indices_and_leaves_dst() {
    let dst = f32s(&[1.0, 1.0], &[2]);
    let src = f32s(&[5.0, 5.0], &[2]);
    for (bad, index) in [(i64s(&[0, 2], &[2]), 2), (i64s(&[-3, 0], &[2]), -3)] {
        let err = ops().index_add(&dst, 0, &bad, &src).unwrap_err();
        assert_eq!(err, index_error("index_add", index, 0, 2));
        assert_eq!(dst.to_f64_vec(), [1.0, 1.0]);
    }
}

#[test]
fn gather_along_each_dim() {
    // x = [[1, 2, 3], [4, 5, 6]]
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let by_row = ops().gather(&x, 1, &i64s(&[2, 0, 1, 1], &[2, 2])).unwrap();
    assert_eq!(by_row.to_f64_vec(), [3.0, 1.0, 5.0, 5.0]);
    let by_col = ops().gather(&x, 0, &i64s(&[1, 0, 1], &[1, 3])).unwrap();
    assert_eq!(by_col.to_f64_vec(), [4.0, 2.0, 6.0]);
    // A strided source and a strided index: xᵀ = [[1, 4], [2, 5], [3, 6]], index [[1], [0], [1]].
    let xt = x.transpose(0, 1).unwrap();
    let idx = i64s(&[1, 0, 1], &[1, 3]).transpose(0, 1).unwrap();
    let got = ops().gather(&xt, 1, &idx).unwrap();
    assert_eq!(got.to_f64_vec(), [4.0, 2.0, 6.0]);
    let none = ops().gather(&x, 1, &i64s(&[], &[2, 0])).unwrap();
    assert_eq!(none.dims(), [2, 0]);
}

#[test]
fn gather_rejects_bad_indices() {
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let err = ops().gather(&x, 1, &i64s(&[0, 3], &[1, 2])).unwrap_err();
    assert_eq!(err, index_error("gather", 3, 1, 3));
    let err = ops().gather(&x, 0, &i64s(&[-1], &[1, 1])).unwrap_err();
    assert_eq!(err, index_error("gather", -1, 0, 2));
}

#[test]
fn scatter_add_accumulates_and_rejects_bad_indices() {
    let dst = f32s(&[0.0; 6], &[2, 3]);
    let src = f32s(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    ops()
        .scatter_add(&dst, 1, &i64s(&[2, 2, 0, 1], &[2, 2]), &src)
        .unwrap();
    assert_eq!(dst.to_f64_vec(), [0.0, 0.0, 3.0, 3.0, 4.0, 0.0]);

    let dst = i64s(&[i64::MAX, 0, 0], &[1, 3]);
    let src = i64s(&[1, 1, 1], &[3, 1]).transpose(0, 1).unwrap();
    ops()
        .scatter_add(&dst, 0, &i64s(&[0, 0, 0], &[1, 3]), &src)
        .unwrap();
    assert_eq!(dst.to_vec::<i64>().unwrap(), [i64::MIN, 1, 1]);

    let before = dst.to_vec::<i64>().unwrap();
    let bad = i64s(&[0, 1, 0], &[1, 3]);
    let err = ops().scatter_add(&dst, 0, &bad, &src).unwrap_err();
    assert_eq!(err, index_error("scatter_add", 1, 0, 1));
    let negative = i64s(&[0, 0, -2], &[1, 3]);
    let err = ops().scatter_add(&dst, 0, &negative, &src).unwrap_err();
    assert_eq!(err, index_error("scatter_add", -2, 0, 1));
    assert_eq!(dst.to_vec::<i64>().unwrap(), before);
}

#[test]
fn concat_along_each_dim() {
    let a = f32s(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = f32s(&[5.0, 6.0], &[1, 2]);
    let rows = ops().concat(&[&a, &b], 0).unwrap();
    assert_eq!(rows.to_f64_vec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let bt = b.transpose(0, 1).unwrap(); // [[5], [6]]
    let cols = ops().concat(&[&a, &bt, &a], 1).unwrap();
    assert_eq!(cols.dims(), [2, 5]);
    assert_eq!(
        cols.to_f64_vec(),
        [1.0, 2.0, 5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 3.0, 4.0]
    );
    let empty = f32s(&[], &[2, 0]);
    let same = ops().concat(&[&empty, &a, &empty], 1).unwrap();
    assert_eq!(same.to_f64_vec(), a.to_f64_vec());
    let ints = ops()
        .concat(&[&i64s(&[i64::MAX], &[1]), &i64s(&[i64::MIN], &[1])], 0)
        .unwrap();
    assert_eq!(ints.to_vec::<i64>().unwrap(), [i64::MAX, i64::MIN]);
}

#[test]
fn arange_in_several_dtypes() {
    let f = ops().arange(1.0, 0.5, 4, DType::F32).unwrap();
    assert_eq!(f.to_vec::<f32>().unwrap(), [1.0, 1.5, 2.0, 2.5]);
    let i = ops().arange(10.0, -3.0, 4, DType::I64).unwrap();
    assert_eq!(i.to_vec::<i64>().unwrap(), [10, 7, 4, 1]);
    // -1.5, -0.5, 0.5 truncate toward zero in an integer dtype.
    let t = ops().arange(-1.5, 1.0, 3, DType::I32).unwrap();
    assert_eq!(t.to_vec::<i32>().unwrap(), [-1, 0, 0]);
    assert_eq!(ops().arange(0.0, 1.0, 0, DType::F32).unwrap().numel(), 0);
}

// ----- random -----

#[test]
fn random_follows_the_counter_based_generator() {
    let (seed, stream) = (42, 7);
    let uniform = ops()
        .random(
            RandomDist::Uniform {
                low: -1.0,
                high: 3.0,
            },
            seed,
            stream,
            DType::F64,
            &[2, 3],
        )
        .unwrap()
        .to_f64_vec();
    for (i, &u) in uniform.iter().enumerate() {
        let want = -1.0 + 4.0 * f64::from(rng::uniform(seed, stream, i as u64));
        assert_eq!(u, want);
        assert!((-1.0..3.0).contains(&u));
    }
    let normal = ops()
        .random(
            RandomDist::Normal {
                mean: 2.0,
                std: 0.5,
            },
            seed,
            stream,
            DType::F32,
            &[5],
        )
        .unwrap()
        .to_f64_vec();
    for (i, &n) in normal.iter().enumerate() {
        let want = 2.0 + 0.5 * f64::from(rng::normal(seed, stream, i as u64));
        assert_eq!(n, f64::from(want as f32));
    }
    let p = 0.3;
    for dtype in [DType::Bool, DType::BF16] {
        let mask = ops()
            .random(RandomDist::Bernoulli { p }, seed, stream, dtype, &[64])
            .unwrap()
            .to_f64_vec();
        let want: Vec<f64> = (0..64)
            .map(|i| f64::from(u8::from(rng::uniform(seed, stream, i) < p)))
            .collect();
        assert_eq!(mask, want);
        assert!(mask.contains(&0.0) && mask.contains(&1.0));
    }
}

#[test]
fn random_is_deterministic_and_seed_dependent() {
    let draw = |seed| {
        ops()
            .random(
                RandomDist::Normal {
                    mean: 0.0,
                    std: 1.0,
                },
                seed,
                0,
                DType::F32,
                &[16],
            )
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}
