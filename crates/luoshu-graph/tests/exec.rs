//! The interpreter (`evaluate`) against hand-computed values for every op family, the
//! planned executor (`compile` + `run`) against the interpreter on random graphs, and the
//! errors users see.

mod common;

use common::{assert_all_close, build, d, feeds, instrs};
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{BinaryOp, CompareOp, UnaryOp};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::Backend;
use luoshu_graph::{
    compile, evaluate, Bindings, CompileOptions, ConstData, Dim, Distribution, Error, Float, Graph,
    Op, Value,
};
use luoshu_tensor::{DType, Tensor};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

fn f32s(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

fn i64s(values: &[i64], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

/// Evaluate with the reference backend, no symbolic dims.
fn eval(g: &Graph, feeds: &[(&str, Tensor)]) -> Vec<Tensor> {
    let feeds: HashMap<String, Tensor> = feeds
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    evaluate(g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap()
}

fn assert_close(t: &Tensor, dims: &[usize], expected: &[f64]) {
    assert_eq!(t.dims(), dims);
    let got = t.to_f64_vec();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
            "element {i}: got {g}, expected {e} (all: {got:?})"
        );
    }
}

#[test]
fn elementwise_broadcast_compare_select_cast() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[2, 2]), DType::F32).unwrap();
    let y = g.input("y", &d(&[2]), DType::F32).unwrap();
    let sum = g.binary(BinaryOp::Add, x, y).unwrap();
    let neg = g.unary(UnaryOp::Neg, x).unwrap();
    let relu = g.unary(UnaryOp::Relu, neg).unwrap();
    let lt = g.compare(CompareOp::Lt, x, y).unwrap();
    let sel = g.select(lt, x, y).unwrap();
    let cast = g.cast(x, DType::I64).unwrap();
    g.set_outputs(vec![sum, relu, lt, sel, cast]).unwrap();
    let out = eval(
        &g,
        &[
            ("x", f32s(&[1., 25., 3., 4.], &[2, 2])),
            ("y", f32s(&[10., 20.], &[2])),
        ],
    );
    assert_close(&out[0], &[2, 2], &[11., 45., 13., 24.]);
    assert_close(&out[1], &[2, 2], &[0., 0., 0., 0.]);
    assert_close(&out[2], &[2, 2], &[1., 0., 1., 1.]);
    assert_eq!(out[2].dtype(), DType::Bool);
    assert_close(&out[3], &[2, 2], &[1., 20., 3., 4.]);
    assert_eq!(out[4].to_vec::<i64>().unwrap(), vec![1, 25, 3, 4]);
}

#[test]
fn reductions_with_and_without_keepdim() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[2, 3]), DType::F32).unwrap();
    let s = g.sum(x, &[1], false).unwrap();
    let m = g.max(x, &[0], true).unwrap();
    let mean = g.mean(x, &[0, 1], false).unwrap();
    let am = g.argmax(x, 1, false).unwrap();
    g.set_outputs(vec![s, m, mean, am]).unwrap();
    let out = eval(&g, &[("x", f32s(&[1., 7., 3., 4., 5., 6.], &[2, 3]))]);
    assert_close(&out[0], &[2], &[11., 15.]);
    assert_close(&out[1], &[1, 3], &[4., 7., 6.]);
    assert_close(&out[2], &[], &[26. / 6.]);
    assert_eq!(out[3].to_vec::<i64>().unwrap(), vec![1, 2]);
}

#[test]
fn matmul_plain_and_with_a_transposed_operand() {
    let mut g = Graph::new();
    let a = g.input("a", &d(&[2, 2]), DType::F32).unwrap();
    let b = g.input("b", &d(&[2, 2]), DType::F32).unwrap();
    let ab = g.matmul(a, b).unwrap();
    let bt = g.permute(b, &[1, 0]).unwrap();
    let abt = g.matmul(a, bt).unwrap();
    g.set_outputs(vec![ab, abt]).unwrap();
    let out = eval(
        &g,
        &[
            ("a", f32s(&[1., 2., 3., 4.], &[2, 2])),
            ("b", f32s(&[5., 6., 7., 8.], &[2, 2])),
        ],
    );
    assert_close(&out[0], &[2, 2], &[19., 22., 43., 50.]);
    assert_close(&out[1], &[2, 2], &[17., 23., 39., 53.]);
}

#[test]
fn views_alias_and_non_contiguous_reshape_copies() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[2, 3]), DType::F32).unwrap();
    let t = g.permute(x, &[1, 0]).unwrap();
    let flat = g.reshape(t, &d(&[6])).unwrap();
    let sl = g.slice(x, 1, 0, 3, 2).unwrap();
    let row = g.slice(x, 0, 1, 2, 1).unwrap();
    let bc = g.broadcast_to(row, &d(&[3, 3])).unwrap();
    let c = g.contiguous(t).unwrap();
    g.set_outputs(vec![flat, sl, bc, c, t]).unwrap();
    let xt = f32s(&[0., 1., 2., 3., 4., 5.], &[2, 3]);
    let out = eval(&g, &[("x", xt.clone())]);
    assert_close(&out[0], &[6], &[0., 3., 1., 4., 2., 5.]);
    assert!(
        !out[0]
            .storage()
            .base_address()
            .eq(&xt.storage().base_address()),
        "the reshape of a transpose is a copy"
    );
    assert_close(&out[1], &[2, 2], &[0., 2., 3., 5.]);
    assert_close(&out[2], &[3, 3], &[3., 4., 5., 3., 4., 5., 3., 4., 5.]);
    assert_close(&out[3], &[3, 2], &[0., 3., 1., 4., 2., 5.]);
    assert!(out[3].is_contiguous());
    assert_eq!(
        out[4].storage().base_address(),
        xt.storage().base_address(),
        "a permute is a view"
    );
}

#[test]
fn indexing_ops() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[3, 2]), DType::F32).unwrap();
    let idx = g.input("idx", &d(&[2]), DType::I64).unwrap();
    let rows = g.index_select(x, 0, idx).unwrap();
    let added = g.index_add(x, 0, idx, rows).unwrap();
    let gidx = g.input("gidx", &d(&[3, 2]), DType::I64).unwrap();
    let gathered = g.gather(x, 1, gidx).unwrap();
    let scattered = g.scatter_add(x, 1, gidx, x).unwrap();
    let cat = g.concat(&[x, rows], 0).unwrap();
    g.set_outputs(vec![rows, added, gathered, scattered, cat])
        .unwrap();
    let out = eval(
        &g,
        &[
            ("x", f32s(&[0., 1., 2., 3., 4., 5.], &[3, 2])),
            ("idx", i64s(&[2, 2], &[2])),
            ("gidx", i64s(&[1, 0, 0, 0, 1, 1], &[3, 2])),
        ],
    );
    assert_close(&out[0], &[2, 2], &[4., 5., 4., 5.]);
    assert_close(&out[1], &[3, 2], &[0., 1., 2., 3., 12., 15.]);
    assert_close(&out[2], &[3, 2], &[1., 0., 2., 2., 5., 5.]);
    // row 0: dst[0][1] += 0, dst[0][0] += 1; row 1: dst[1][0] += 2 + 3; row 2: dst[2][1] += 4 + 5.
    assert_close(&out[3], &[3, 2], &[1., 1., 7., 3., 4., 14.]);
    assert_close(&out[4], &[5, 2], &[0., 1., 2., 3., 4., 5., 4., 5., 4., 5.]);
}

#[test]
fn computed_leaves() {
    let mut g = Graph::new();
    let full = g.full(2.5, &d(&[2]), DType::F32).unwrap();
    let constant = g
        .add1(
            Op::Constant(ConstData {
                dims: vec![3],
                dtype: DType::I32,
                values: [4., -1., 7.].map(Float::new).to_vec(),
            }),
            &[],
        )
        .unwrap();
    let ar = g.arange(1.0, 0.5, Dim::fixed(4), DType::F32).unwrap();
    let uniform = Op::Random {
        dist: Distribution::Uniform {
            low: Float::new(-1.0),
            high: Float::new(1.0),
        },
        seed: 7,
        stream: 3,
        shape: d(&[1000]),
        dtype: DType::F32,
    };
    let r = g.add1(uniform, &[]).unwrap();
    g.set_outputs(vec![full, constant, ar, r]).unwrap();
    let out = eval(&g, &[]);
    assert_close(&out[0], &[2], &[2.5, 2.5]);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![4, -1, 7]);
    assert_close(&out[2], &[4], &[1., 1.5, 2., 2.5]);
    let r1 = out[3].to_f64_vec();
    assert!(r1.iter().all(|v| (-1.0..1.0).contains(v)));
    let mean = r1.iter().sum::<f64>() / r1.len() as f64;
    assert!(mean.abs() < 0.1, "uniform(-1, 1) mean {mean}");
    assert_eq!(eval(&g, &[])[3].to_f64_vec(), r1, "random leaves are pure");
}

#[test]
fn nn_composites() {
    let ln2 = 2f64.ln();
    let ln3 = 3f64.ln();
    let mut g = Graph::new();
    let x = g.input("x", &d(&[1, 2]), DType::F32).unwrap();
    let sm = g.softmax(x).unwrap();
    let lsm = g.log_softmax(x).unwrap();
    let logits = g.input("logits", &d(&[1, 2]), DType::F32).unwrap();
    let targets = g.input("targets", &d(&[1]), DType::I64).unwrap();
    let (loss, lse) = g.cross_entropy(logits, targets, -100).unwrap();
    let w = g.input("w", &d(&[2]), DType::F32).unwrap();
    let (rms, rstd) = g.rms_norm(x, w, 0.0).unwrap();
    let b = g.input("b", &d(&[2]), DType::F32).unwrap();
    let (ln, mean, _) = g.layer_norm(x, w, b, 0.0).unwrap();
    let sw = g.swiglu(x, x).unwrap();
    g.set_outputs(vec![sm, lsm, loss, lse, rms, rstd, ln, mean, sw])
        .unwrap();
    let xv = [0.0, ln2 as f32];
    let out = eval(
        &g,
        &[
            ("x", f32s(&xv, &[1, 2])),
            ("logits", f32s(&[0.0, ln3 as f32], &[1, 2])),
            ("targets", i64s(&[1], &[1])),
            ("w", f32s(&[1.0, 2.0], &[2])),
            ("b", f32s(&[0.5, 0.5], &[2])),
        ],
    );
    assert_close(&out[0], &[1, 2], &[1. / 3., 2. / 3.]);
    assert_close(&out[1], &[1, 2], &[-(3f64.ln()), ln2 - 3f64.ln()]);
    assert_close(&out[2], &[1], &[4f64.ln() - ln3]);
    assert_close(&out[3], &[1], &[4f64.ln()]);
    let r = 1.0 / (ln2 * ln2 / 2.0).sqrt();
    assert_close(&out[4], &[1, 2], &[0.0, ln2 * r * 2.0]);
    assert_close(&out[5], &[1], &[r]);
    assert_close(&out[6], &[1, 2], &[-1.0 + 0.5, 1.0 * 2.0 + 0.5]);
    assert_close(&out[7], &[1], &[ln2 / 2.0]);
    let silu = |v: f64| v / (1.0 + (-v).exp());
    assert_close(&out[8], &[1, 2], &[0.0, silu(ln2) * ln2]);
}

#[test]
fn attention_with_one_key_returns_its_value() {
    let mut g = Graph::new();
    let q = g.input("q", &d(&[1, 2, 3, 4]), DType::F32).unwrap();
    let k = g.input("k", &d(&[1, 1, 1, 4]), DType::F32).unwrap();
    let v = g.input("v", &d(&[1, 1, 1, 2]), DType::F32).unwrap();
    let (out, _) = g.attention(q, k, v, 0.5, false).unwrap();
    g.set_outputs(vec![out]).unwrap();
    let qv: Vec<f32> = (0..24).map(|i| i as f32 * 0.1).collect();
    let out = eval(
        &g,
        &[
            ("q", f32s(&qv, &[1, 2, 3, 4])),
            ("k", f32s(&[1., -1., 2., 0.], &[1, 1, 1, 4])),
            ("v", f32s(&[3., -2.], &[1, 1, 1, 2])),
        ],
    );
    assert_close(
        &out[0],
        &[1, 2, 3, 2],
        &[3., -2., 3., -2., 3., -2., 3., -2., 3., -2., 3., -2.],
    );
}

#[test]
fn symbolic_dims_bind_per_call() {
    let mut g = Graph::new();
    let x = g
        .input("x", &[Dim::sym("batch"), Dim::fixed(2)], DType::F32)
        .unwrap();
    let s = g.sum(x, &[0], false).unwrap();
    g.set_outputs(vec![s]).unwrap();
    let feeds = HashMap::from([("x".to_string(), f32s(&[1., 2., 3., 4., 5., 6.], &[3, 2]))]);
    let bindings = Bindings::from([("batch".to_string(), 3)]);
    let out = evaluate(&g, &bindings, &feeds, &ReferenceBackend).unwrap();
    assert_close(&out[0], &[2], &[9., 12.]);
    let err = evaluate(&g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap_err();
    assert_eq!(
        err,
        Error::UnboundDim {
            name: "batch".into()
        }
    );
}

#[test]
fn missing_and_mismatched_feeds_are_named() {
    let mut g = Graph::new();
    let x = g.input("tokens", &d(&[2, 3]), DType::F32).unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let err = evaluate(&g, &Bindings::new(), &HashMap::new(), &ReferenceBackend).unwrap_err();
    assert!(
        matches!(&err, Error::MissingFeed { kind: "input", name, dims, .. }
            if name == "tokens" && dims == &[2, 3]),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("missing feed") && err.contains("`tokens`"),
        "{err}"
    );
    let feeds = HashMap::from([("tokens".to_string(), f32s(&[1., 2.], &[2]))]);
    let err = evaluate(&g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap_err();
    assert!(
        matches!(&err, Error::FeedMismatch { fed_dims, dims, .. }
            if fed_dims == &[2] && dims == &[2, 3]),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("`tokens`") && err.contains("[2]") && err.contains("[2, 3]"),
        "{err}"
    );
}

#[test]
fn shape_errors_at_build_name_the_op_and_inputs() {
    let mut g = Graph::new();
    let a = g.input("a", &d(&[2, 3]), DType::F32).unwrap();
    let b = g.input("b", &d(&[4, 5]), DType::F32).unwrap();
    let err = g.matmul(a, b).unwrap_err().to_string();
    assert!(
        err.contains("matmul") && err.contains("%0") && err.contains("%1"),
        "{err}"
    );
}

#[test]
fn runtime_errors_name_the_node() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[3, 2]), DType::F32).unwrap();
    let idx = g.input("idx", &d(&[1]), DType::I64).unwrap();
    let rows = g.index_select(x, 0, idx).unwrap();
    g.set_outputs(vec![rows]).unwrap();
    let feeds = HashMap::from([
        ("x".to_string(), f32s(&[0.; 6], &[3, 2])),
        ("idx".to_string(), i64s(&[9], &[1])),
    ]);
    let err = evaluate(&g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap_err();
    assert!(
        matches!(&err, Error::Node { node, .. } if Value::from(*node) == rows),
        "{err}"
    );
}

// ----- the planned executor -----

fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Compiled plans (schedule, shared arena, in-place reuse, aliased views) compute what
    /// the interpreter computes, on the same backend.
    #[test]
    fn plan_matches_evaluate_on_random_graphs(prog in instrs(24), seed in 0u32..1000) {
        let g = build(&prog);
        let f = feeds(seed);
        let want = evaluate(&g, &Bindings::new(), &f, &CpuBackend::new()).unwrap();
        let mut plan = compile(&g, &Bindings::new(), cpu(), CompileOptions { profile: false, collectives: None }).unwrap();
        let got = plan.run(&f).unwrap();
        assert_all_close(&got, &want, 1e-6);
    }
}

#[test]
fn a_plan_runs_again_with_new_feeds_in_the_same_arena() {
    let prog: Vec<common::Instr> = (0..40)
        .map(|i| ((i * 7 % 11) as u8, i * 5, i * 3 + 1, (i * 13) as u8))
        .collect();
    let g = build(&prog);
    let mut plan = compile(
        &g,
        &Bindings::new(),
        cpu(),
        CompileOptions {
            profile: false,
            collectives: None,
        },
    )
    .unwrap();
    let arena_before = plan.memory_report().arena_bytes;
    let first = plan.run(&feeds(1)).unwrap();
    let second = plan.run(&feeds(2)).unwrap();
    let again = plan.run(&feeds(1)).unwrap();
    assert_eq!(plan.memory_report().arena_bytes, arena_before);
    assert_all_close(&again, &first, 0.0);
    let want = evaluate(&g, &Bindings::new(), &feeds(2), &CpuBackend::new()).unwrap();
    assert_all_close(&second, &want, 1e-6);
    // Returned outputs are copies: the next run does not change them.
    let before: Vec<Vec<f64>> = first.iter().map(|t| t.to_f64_vec()).collect();
    plan.run(&feeds(3)).unwrap();
    let after: Vec<Vec<f64>> = first.iter().map(|t| t.to_f64_vec()).collect();
    assert_eq!(before, after);
}

#[test]
fn plan_with_every_op_family_matches_evaluate() {
    let mut g = Graph::new();
    let x = g
        .input("x", &[Dim::sym("n"), Dim::fixed(4)], DType::F32)
        .unwrap();
    let w = g.param("w", &d(&[4]), DType::F32).unwrap();
    let idx = g.input("idx", &d(&[3]), DType::I64).unwrap();
    let table = g
        .add1(
            Op::Constant(ConstData {
                dims: vec![2, 4],
                dtype: DType::F32,
                values: (0..8).map(|i| Float::new(i as f64)).collect(),
            }),
            &[],
        )
        .unwrap();
    let (normed, _) = g.rms_norm(x, w, 1e-5).unwrap();
    let picked = g.index_select(normed, 0, idx).unwrap();
    let cat = g.concat(&[picked, table], 0).unwrap();
    let sm = g.softmax(cat).unwrap();
    let t = g.transpose_last(sm).unwrap();
    let prod = g.matmul(sm, t).unwrap();
    let e = g.unary(UnaryOp::Exp, prod).unwrap();
    let total = g.sum(e, &[0, 1], false).unwrap();
    let ar = g.arange(0.0, 1.0, Dim::fixed(5), DType::F32).unwrap();
    let scaled = g.binary(BinaryOp::Mul, ar, total).unwrap();
    g.set_outputs(vec![scaled, e, w]).unwrap();
    let bindings = Bindings::from([("n".to_string(), 5)]);
    let xs: Vec<f32> = (0..20).map(|i| (i as f32 * 0.3).cos()).collect();
    let f = HashMap::from([
        ("x".to_string(), f32s(&xs, &[5, 4])),
        ("w".to_string(), f32s(&[1.0, 0.5, -1.0, 2.0], &[4])),
        ("idx".to_string(), i64s(&[4, 0, 2], &[3])),
    ]);
    let want = evaluate(&g, &bindings, &f, &CpuBackend::new()).unwrap();
    let mut plan = compile(
        &g,
        &bindings,
        cpu(),
        CompileOptions {
            profile: true,
            collectives: None,
        },
    )
    .unwrap();
    assert_all_close(&plan.run(&f).unwrap(), &want, 1e-6);
    let timings = plan.timings().unwrap();
    assert_eq!(timings.len(), plan.kernel_count());
    assert!(timings.iter().any(|(_, name, _)| name == "matmul"));
}

#[test]
fn compile_names_an_unbound_symbol() {
    let mut g = Graph::new();
    let x = g
        .input("x", &[Dim::sym("seq"), Dim::fixed(2)], DType::F32)
        .unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let err = compile(&g, &Bindings::new(), cpu(), CompileOptions::default())
        .err()
        .unwrap();
    assert_eq!(err, Error::UnboundDim { name: "seq".into() });
}

#[test]
fn plan_run_checks_feeds() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[2, 3]), DType::F32).unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let mut plan = compile(&g, &Bindings::new(), cpu(), CompileOptions::default()).unwrap();
    let err = plan.run(&HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingFeed { name, .. } if name == "x"),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("missing feed") && err.contains("`x`"), "{err}");
    let wrong = HashMap::from([("x".to_string(), f32s(&[0.0; 6], &[3, 2]))]);
    let err = plan.run(&wrong).unwrap_err();
    assert!(
        matches!(&err, Error::FeedMismatch { name, fed_dims, .. } if name == "x" && fed_dims == &[3, 2]),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("[3, 2]") && err.contains("[2, 3]"), "{err}");
    // A non-contiguous feed of the right shape is accepted.
    let xt = f32s(&[0., 1., 2., 3., 4., 5.], &[3, 2])
        .permute(&[1, 0])
        .unwrap();
    let got = plan
        .run(&HashMap::from([("x".to_string(), xt.clone())]))
        .unwrap();
    let want = evaluate(
        &g,
        &Bindings::new(),
        &HashMap::from([("x".to_string(), xt)]),
        &CpuBackend::new(),
    )
    .unwrap();
    assert_all_close(&got, &want, 1e-6);
}
