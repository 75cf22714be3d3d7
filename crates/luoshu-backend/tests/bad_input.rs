//! Every class of bad input through `Ops` is an `Err` whose message names the op and the
//! offending shapes, dtypes or indices — on every backend, never a panic.
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{
    AdamW, AttentionInputs, AttentionOpts, BinaryOp, CompareOp, RandomDist, ReduceOp, UnaryOp,
};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{Backend, DType, Ops, Result, Tensor};

fn backends() -> [&'static dyn Backend; 2] {
    [&CpuBackend, &ReferenceBackend]
}

fn f32s(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
    Tensor::from_slice(&values, dims).unwrap()
}

fn i64s(values: &[i64]) -> Tensor {
    Tensor::from_slice(values, [values.len()]).unwrap()
}

/// `result` is an error whose message contains every one of `needles`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(result: Result<T>, needles: &[&str]) {
    assert!(
        result.is_err(),
        "expected an error mentioning {needles:?}, got {result:?}"
    );
    let message = result.unwrap_err().to_string();
    for needle in needles {
        assert!(
            message.contains(needle),
            "`{message}` does not mention `{needle}`"
        );
    }
}

#[test]
fn mismatched_and_non_broadcastable_shapes() {
    for b in backends() {
        let ops = Ops::new(b);
        let (a, c) = (f32s(&[2, 3]), f32s(&[4, 3]));
        assert_err(ops.add(&a, &c), &["add", "[2, 3]", "[4, 3]"]);
        assert_err(
            ops.compare(CompareOp::Lt, &a, &c),
            &["lt", "[2, 3]", "[4, 3]"],
        );
        let cond = Tensor::from_bools(&[true, false], [2]).unwrap();
        assert_err(ops.select(&cond, &a, &a), &["where", "[2]", "[2, 3]"]);
        let out = f32s(&[3, 2]);
        assert_err(
            ops.unary_into(UnaryOp::Exp, &a, &out),
            &["exp", "[2, 3]", "[3, 2]"],
        );
        assert_err(
            ops.binary_into(BinaryOp::Mul, &a, &a, &f32s(&[2, 1])),
            &["mul", "[2, 3]", "[2, 1]"],
        );
        assert_err(
            ops.concat(&[&a, &f32s(&[2, 4])], 0),
            &["concat", "[2, 3]", "[2, 4]"],
        );
        assert_err(ops.concat(&[], 0), &["concat", "no inputs"]);
        assert_err(ops.swiglu(&a, &c), &["swiglu", "[2, 3]", "[4, 3]"]);
        assert_err(
            ops.rms_norm(&a, &f32s(&[4]), 1e-5),
            &["rms_norm", "[3]", "[4]"],
        );
    }
}

#[test]
fn wrong_dtypes() {
    for b in backends() {
        let ops = Ops::new(b);
        let a = f32s(&[2, 3]);
        let ints = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6], [2, 3]).unwrap();
        assert_err(ops.add(&a, &ints), &["add", "f32", "i64"]);
        assert_err(ops.unary(UnaryOp::Exp, &ints), &["exp", "i64"]);
        assert_err(ops.binary(BinaryOp::Pow, &ints, &ints), &["pow", "i64"]);
        assert_err(ops.matmul(&ints, &ints), &["matmul", "i64"]);
        assert_err(
            ops.reduce(ReduceOp::Mean, &ints, &[0], true),
            &["mean", "i64"],
        );
        assert_err(ops.softmax(&ints), &["softmax", "i64"]);
        let idx = Tensor::from_slice(&[0.0f32, 1.0], [2]).unwrap();
        assert_err(ops.index_select(&a, 0, &idx), &["index_select", "f32"]);
        let targets = Tensor::from_slice(&[0i32, 1], [2]).unwrap();
        assert_err(
            ops.cross_entropy(&a, &targets, -100),
            &["cross_entropy", "i32"],
        );
        assert_err(
            ops.random(
                RandomDist::Normal {
                    mean: 0.0,
                    std: 1.0,
                },
                0,
                0,
                DType::I32,
                &[3],
            ),
            &["random", "i32"],
        );
        assert_err(
            ops.cast_into(&a, &f32s(&[3, 2])),
            &["cast", "[2, 3]", "[3, 2]"],
        );
    }
}

#[test]
fn out_of_range_and_negative_indices() {
    for b in backends() {
        let ops = Ops::new(b);
        let x = f32s(&[5, 3]);
        for bad in [5i64, -1] {
            let name = bad.to_string();
            let idx = i64s(&[0, bad, 1]);
            assert_err(ops.index_select(&x, 0, &idx), &["index_select", &name]);
            let dst = ops.alloc(DType::F32, &[5, 3]).unwrap();
            assert_err(
                ops.index_add(&dst, 0, &idx, &f32s(&[3, 3])),
                &["index_add", &name],
            );
            let index = Tensor::from_slice(&[0i64, 1, 2, bad, 0, 0], [2, 3]).unwrap();
            assert_err(ops.gather(&x, 1, &index), &["gather", &name]);
            let dst = ops.alloc(DType::F32, &[5, 3]).unwrap();
            assert_err(
                ops.scatter_add(&dst, 1, &index, &f32s(&[2, 3])),
                &["scatter_add", &name],
            );
        }
        let logits = f32s(&[2, 4]);
        assert_err(
            ops.cross_entropy(&logits, &i64s(&[1, 4]), -100),
            &["cross_entropy", "4"],
        );
        assert_err(
            ops.cross_entropy(&logits, &i64s(&[-2, 0]), -100),
            &["cross_entropy", "-2"],
        );
    }
}

#[test]
fn overflowing_sizes() {
    for b in backends() {
        let ops = Ops::new(b);
        let max = usize::MAX.to_string();
        assert_err(
            ops.alloc(DType::F32, &[usize::MAX, 2]),
            &["overflows", &max],
        );
        // The element count fits but the byte count does not.
        assert_err(
            ops.alloc(DType::F32, &[usize::MAX / 2]),
            &["alloc", "overflows"],
        );
        assert_err(
            ops.full(1.0, DType::F64, &[usize::MAX / 4, 3]),
            &["overflows"],
        );
        assert_err(ops.arange(0.0, 1.0, usize::MAX, DType::I64), &["overflows"]);
    }
}

#[test]
fn bad_views_and_axes() {
    for b in backends() {
        let ops = Ops::new(b);
        let x = f32s(&[2, 3]);
        assert_err(ops.reshape(&x, &[4, 2]), &["reshape", "[2, 3]", "[4, 2]"]);
        assert_err(
            x.permute(&[0, 0]).map_err(Into::into),
            &["permute", "[0, 0]"],
        );
        assert_err(
            x.permute(&[0]).map_err(Into::into),
            &["permute", "[0]", "rank 2"],
        );
        assert_err(ops.sum(&x, &[2], true), &["sum", "2", "rank 2"]);
        assert_err(ops.sum(&x, &[1, 1], true), &["sum", "[1, 1]"]);
        assert_err(ops.sum(&x, &[], true), &["sum", "no axes"]);
        assert_err(
            ops.reduce(ReduceOp::Max, &f32s(&[2, 0]), &[1], true),
            &["max", "[2, 0]"],
        );
        assert_err(ops.argmax(&f32s(&[0, 3]), 0, true), &["argmax", "[0, 3]"]);
        assert_err(ops.argmax(&x, 5, true), &["argmax", "5"]);
        assert_err(ops.index_select(&x, 2, &i64s(&[0])), &["index_select", "2"]);
        let transposed_out = f32s(&[3, 2]).transpose(0, 1).unwrap();
        assert_err(
            ops.unary_into(UnaryOp::Neg, &x, &transposed_out),
            &["neg", "contiguous", "[2, 3]"],
        );
        let rank2 = ops.alloc(DType::F32, &[2, 2]).unwrap();
        assert_err(ops.arange_into(0.0, 1.0, &rank2), &["arange", "[2, 2]"]);
        assert_err(
            ops.random(RandomDist::Bernoulli { p: 1.5 }, 0, 0, DType::F32, &[3]),
            &["random", "1.5"],
        );
    }
}

#[test]
fn aliasing_outputs() {
    for b in backends() {
        let ops = Ops::new(b);
        let buffer = f32s(&[8]);
        let (x, out) = (
            buffer.narrow(0, 0, 6).unwrap(),
            buffer.narrow(0, 2, 6).unwrap(),
        );
        assert_err(ops.unary_into(UnaryOp::Exp, &x, &out), &["exp", "overlaps"]);
        let m = f32s(&[3, 3]);
        assert_err(ops.matmul_into(&m, &m, &m), &["matmul", "overlaps"]);
        assert_err(ops.softmax_into(&m, &m), &["softmax", "overlaps"]);
        assert_err(ops.copy_into(&x, &out), &["copy", "overlaps"]);
        let p = f32s(&[4]);
        let v = ops.alloc(DType::F32, &[4]).unwrap();
        let hp = AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        };
        assert_err(
            ops.adamw(&p, &f32s(&[4]), &p, &v, hp),
            &["adamw", "overlaps"],
        );
        let m2 = ops.alloc(DType::F32, &[4]).unwrap();
        assert_err(
            ops.adamw(&p, &f32s(&[4]), &m2, &v, AdamW { step: 0, ..hp }),
            &["adamw", "step"],
        );
    }
}

#[test]
fn rank_errors_for_matmul_attention_and_friends() {
    for b in backends() {
        let ops = Ops::new(b);
        assert_err(
            ops.matmul(&f32s(&[3]), &f32s(&[3, 4])),
            &["matmul", "[3]", "[3, 4]"],
        );
        assert_err(
            ops.matmul(&f32s(&[2, 3]), &f32s(&[4, 5])),
            &["matmul", "[2, 3]", "[4, 5]"],
        );
        assert_err(
            ops.matmul(&f32s(&[2, 2, 3]), &f32s(&[3, 3, 4])),
            &["matmul", "[2]", "[3]"],
        );
        let opts = AttentionOpts {
            scale: 0.5,
            causal: true,
        };
        let q = f32s(&[1, 2, 4]);
        let kv = f32s(&[1, 2, 4, 4]);
        assert_err(
            ops.attention(AttentionInputs::new(&q, &kv, &kv), opts),
            &["attention", "[1, 2, 4]"],
        );
        let q = f32s(&[1, 3, 4, 4]);
        assert_err(
            ops.attention(AttentionInputs::new(&q, &kv, &kv), opts),
            &["attention", "[1, 3, 4, 4]", "hq % hkv"],
        );
        let flat_ids = i64s(&[0, 0, 1, 1]);
        let kv_inputs = AttentionInputs::new(&kv, &kv, &kv);
        assert_err(
            ops.attention(kv_inputs.with_segments(Some(&flat_ids)), opts),
            &["attention", "segments", "[4]"],
        );
        // Segment ids are one per key (queries end-aligned), so ids as long as a short
        // query are refused, and so is a query longer than the keys.
        let short_q = f32s(&[1, 2, 3, 4]);
        assert_err(
            ops.attention(
                AttentionInputs::new(&short_q, &kv, &kv)
                    .with_segments(Some(&Tensor::from_slice(&[0i64, 0, 1], [1, 3]).unwrap())),
                opts,
            ),
            &["attention", "sq <= sk", "[b, sk]"],
        );
        let long_q = f32s(&[1, 2, 5, 4]);
        assert_err(
            ops.attention(
                AttentionInputs::new(&long_q, &kv, &kv)
                    .with_segments(Some(&flat_ids.reshape([1, 4]).unwrap())),
                opts,
            ),
            &["attention", "sq <= sk"],
        );
        assert_err(
            ops.attention(kv_inputs.with_segments(Some(&f32s(&[1, 4]))), opts),
            &["attention", "i64"],
        );
        assert_err(
            ops.rope(&f32s(&[1, 2, 1, 3]), &f32s(&[2, 1]), &f32s(&[2, 1]), false),
            &["rope", "[1, 2, 1, 3]"],
        );
        assert_err(ops.softmax(&Tensor::scalar(1.0f32)), &["softmax", "scalar"]);
        assert_err(
            ops.cross_entropy(&f32s(&[4]), &i64s(&[0]), -100),
            &["cross_entropy", "[4]"],
        );
    }
}

/// Packed rows need document ids that never decrease; the fused kernel says where one does.
#[test]
fn decreasing_segment_ids_are_an_error() {
    let cpu = CpuBackend::new();
    let ops = Ops::new(&cpu);
    let kv = f32s(&[1, 2, 4, 4]);
    let ids = i64s(&[0, 1, 1, 0]).reshape([1, 4]).unwrap();
    let opts = AttentionOpts {
        scale: 0.5,
        causal: true,
    };
    assert_err(
        ops.attention(
            AttentionInputs::new(&kv, &kv, &kv).with_segments(Some(&ids)),
            opts,
        ),
        &["attention", "must not decrease", "position 3"],
    );
}
