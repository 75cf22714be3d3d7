//! Compiler passes: each pass keeps the values of random graphs (evaluated on the CPU
//! backend before and after), each fires on a hand-built graph, and the fused elementwise
//! kernel agrees with its decomposition on random programs.

mod common;
mod primitives;

use common::{assert_all_close as assert_close, d, dims_of, feeds, LEAVES};
use luoshu_backend::composite;
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{BinaryOp, CompareOp, ElementwiseProgram, FusedInstr, ReduceOp, UnaryOp};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{Backend, Ops};
use luoshu_graph::passes::{
    dce, fold, fuse_elementwise, fuse_patterns, optimize, optimize_forward, recompute, simplify,
    PassFn, RecomputePolicy,
};
use luoshu_graph::{evaluate, grad, Bindings, Graph, NodeId, Op, Value};
use luoshu_tensor::{DType, Tensor};
use proptest::prelude::*;
use std::collections::HashMap;

type Step = (u8, usize, usize, u8);

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..14, 0usize..64, 0usize..64, any::<u8>()), 1..max)
}

/// A random graph over [`LEAVES`] mixing elementwise trees with broadcasts and scalars,
/// the identities and view chains `simplify` removes, constant subgraphs, matmuls,
/// reductions, and composites written from primitives. Steps that do not fit are skipped.
fn random_graph(steps: &[Step]) -> Graph {
    let mut g = Graph::new();
    let mut pool: Vec<Value> = LEAVES
        .iter()
        .map(|(name, dims)| g.input(name, &d(dims), DType::F32).unwrap())
        .collect();
    for &(kind, a, b, p) in steps {
        let x = pool[a % pool.len()];
        let y = pool[b % pool.len()];
        let xd = dims_of(&g, x);
        let rank = xd.len();
        let n: usize = xd.iter().product();
        let r = match kind {
            0 => {
                let ops = [
                    UnaryOp::Neg,
                    UnaryOp::Tanh,
                    UnaryOp::Sigmoid,
                    UnaryOp::Relu,
                    UnaryOp::Abs,
                    UnaryOp::Silu,
                ];
                g.unary(ops[p as usize % ops.len()], x)
            }
            1 => {
                let ops = [
                    BinaryOp::Add,
                    BinaryOp::Mul,
                    BinaryOp::Sub,
                    BinaryOp::Maximum,
                    BinaryOp::Minimum,
                ];
                g.binary(ops[p as usize % ops.len()], x, y)
            }
            2 => match p % 4 {
                0 => g.mul_scalar(x, 1.0),
                1 => g.add_scalar(x, 0.0),
                2 => g.scalar(1.0, DType::F32).and_then(|one| g.div(x, one)),
                _ => g.mul_scalar(x, 0.5 + (p % 5) as f64),
            },
            3 => g.neg(x).and_then(|nx| g.neg(nx)),
            4 if rank >= 2 => {
                let rev: Vec<usize> = (0..rank).rev().collect();
                g.permute(x, &rev).and_then(|t| g.permute(t, &rev))
            }
            5 if n.is_multiple_of(2) => g
                .reshape(x, &d(&[n]))
                .and_then(|f| g.reshape(f, &d(&[2, n / 2]))),
            6 if rank <= 2 => {
                let mut to = vec![3];
                to.extend(&xd);
                g.broadcast_to(x, &d(&to))
                    .and_then(|bx| g.sum(bx, &[0], false))
            }
            7 => {
                let k = g.full(0.1 * (p % 7) as f64, &d(&xd), DType::F32).unwrap();
                let r = g
                    .arange(0.0, 0.5, xd.last().copied().unwrap_or(1).into(), DType::F32)
                    .unwrap();
                let kr = if rank == 0 { Ok(k) } else { g.plus(k, r) };
                kr.and_then(|kr| g.tanh(kr)).and_then(|t| g.mul(x, t))
            }
            8 => g
                .compare(CompareOp::Gt, x, y)
                .and_then(|c| g.select(c, x, y)),
            9 => g.matmul(x, y),
            10 if rank >= 1 => {
                let op = if p % 2 == 0 {
                    ReduceOp::Sum
                } else {
                    ReduceOp::Max
                };
                g.reduce(op, x, &[(p as usize / 2) % rank], p % 4 >= 2)
            }
            11 => g
                .cast(x, DType::F64)
                .and_then(|w| g.tanh(w))
                .and_then(|t| g.cast(t, DType::F32)),
            12 if rank >= 1 && p % 2 == 0 => primitives::softmax(&mut g, x),
            12 if rank >= 1 => primitives::log_softmax(&mut g, x),
            13 if rank >= 1 && xd[rank - 1] == 6 => {
                let s = pool[3];
                primitives::rms_norm(&mut g, x, s, 1e-5)
            }
            _ => continue,
        };
        if let Ok(v) = r {
            pool.push(v);
        }
    }
    let n = pool.len();
    let pick = steps.first().map_or(0, |s| s.1) % n;
    g.set_outputs(vec![pool[n - 1], pool[n.saturating_sub(2)], pool[pick]])
        .unwrap();
    g
}

fn run(g: &Graph, f: &HashMap<String, Tensor>) -> Vec<Tensor> {
    evaluate(g, &Bindings::new(), f, &CpuBackend::new()).unwrap()
}

fn check_pass(pass: PassFn, steps: &[Step], seed: u32) {
    let g = random_graph(steps);
    let (out, _) = pass(&g).unwrap();
    out.verify().unwrap();
    let f = feeds(seed);
    assert_close(&run(&out, &f), &run(&g, &f), 1e-4);
}

fn pipeline(g: &Graph) -> luoshu_graph::Result<(Graph, luoshu_graph::passes::PassStats)> {
    let (out, mut stats) = optimize(g)?;
    Ok((out, stats.pop().unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fold_keeps_values(s in steps(20), seed in 0u32..50) { check_pass(fold, &s, seed) }

    #[test]
    fn simplify_keeps_values(s in steps(20), seed in 0u32..50) { check_pass(simplify, &s, seed) }

    #[test]
    fn fuse_elementwise_keeps_values(s in steps(20), seed in 0u32..50) {
        check_pass(fuse_elementwise, &s, seed)
    }

    #[test]
    fn fuse_patterns_keeps_values(s in steps(20), seed in 0u32..50) {
        check_pass(fuse_patterns, &s, seed)
    }

    #[test]
    fn pipeline_keeps_values(s in steps(24), seed in 0u32..50) { check_pass(pipeline, &s, seed) }
}

fn input(g: &mut Graph, name: &str, dims: &[usize]) -> Value {
    g.input(name, &d(dims), DType::F32).unwrap()
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes().iter().filter(|n| pred(&n.op)).count()
}

#[test]
fn fold_evaluates_constant_subgraphs_but_not_random_or_inputs() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4]);
    let two = g.full(2.0, &d(&[4]), DType::F32).unwrap();
    let r = g.arange(0.0, 1.0, 4.into(), DType::F32).unwrap();
    let c = g.mul(two, r).unwrap();
    let c = g.exp(c).unwrap();
    let y = g.plus(x, c).unwrap();
    let big = g.full(1.0, &d(&[8192]), DType::F32).unwrap();
    let big = g.neg(big).unwrap();
    g.set_outputs(vec![y, big]).unwrap();
    let (out, stats) = fold(&g).unwrap();
    assert_eq!(stats.rewrites, 2, "{stats}");
    assert_eq!(count(&out, |o| matches!(o, Op::Constant(_))), 1);
    assert_eq!(
        count(&out, |o| *o == Op::Unary(UnaryOp::Neg)),
        1,
        "too large to fold"
    );
    let f = HashMap::from([(
        "x".to_string(),
        Tensor::from_slice(&[1f32, 2., 3., 4.], [4]).unwrap(),
    )]);
    assert_close(&run(&out, &f), &run(&g, &f), 1e-6);
}

#[test]
fn simplify_removes_identities_and_view_chains() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2, 3, 4]);
    let a = g.mul_scalar(x, 1.0).unwrap();
    let a = g.add_scalar(a, 0.0).unwrap();
    let a = g.neg(a).unwrap();
    let a = g.neg(a).unwrap();
    let p = g.permute(a, &[2, 0, 1]).unwrap();
    let p = g.permute(p, &[1, 2, 0]).unwrap(); // back to [2, 3, 4]
    let r = g.reshape(p, &d(&[6, 4])).unwrap();
    let r = g.reshape(r, &d(&[24])).unwrap();
    let v = input(&mut g, "v", &[1, 4]);
    let bv = g.broadcast_to(v, &d(&[5, 4])).unwrap();
    let s = g.sum(bv, &[0], true).unwrap();
    g.set_outputs(vec![r, s]).unwrap();
    let (out, stats) = simplify(&g).unwrap();
    let (out, _) = dce(&out).unwrap();
    assert!(stats.rewrites >= 6, "{stats}");
    // x -> reshape[24]; v * 5.
    assert_eq!(
        count(&out, |o| matches!(o, Op::Permute { .. } | Op::Unary(_))),
        0
    );
    assert_eq!(count(&out, |o| matches!(o, Op::Reshape { .. })), 1);
    assert_eq!(
        count(&out, |o| matches!(
            o,
            Op::Reduce { .. } | Op::Broadcast { .. }
        )),
        0
    );
    let f = HashMap::from([
        (
            "x".to_string(),
            Tensor::from_slice(&(0..24).map(|i| i as f32).collect::<Vec<_>>(), [2, 3, 4]).unwrap(),
        ),
        (
            "v".to_string(),
            Tensor::from_slice(&[1f32, -2., 3., 0.5], [1, 4]).unwrap(),
        ),
    ]);
    assert_close(&run(&out, &f), &run(&g, &f), 0.0);
}

#[test]
fn fuse_elementwise_makes_one_node_of_a_tree_with_broadcasts() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4, 6]);
    let b = input(&mut g, "b", &[6]);
    let bb = g.broadcast_to(b, &d(&[4, 6])).unwrap();
    let t = g.plus(x, bb).unwrap();
    let t = g.tanh(t).unwrap();
    let t = g.mul_scalar(t, 3.0).unwrap();
    let c = g.compare(CompareOp::Gt, t, x).unwrap();
    let y = g.select(c, t, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let (out, stats) = fuse_elementwise(&g).unwrap();
    let (out, _) = dce(&out).unwrap();
    assert_eq!(stats.rewrites, 1);
    assert_eq!(count(&out, |o| matches!(o, Op::Fused(_))), 1);
    assert_eq!(
        count(&out, |o| o.is_elementwise() || o.is_view()),
        0,
        "{out:?}"
    );
    let f = HashMap::from([
        (
            "x".to_string(),
            Tensor::from_slice(
                &(0..24).map(|i| (i as f32 * 0.3).sin()).collect::<Vec<_>>(),
                [4, 6],
            )
            .unwrap(),
        ),
        (
            "b".to_string(),
            Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.4, -0.5, 0.6], [6]).unwrap(),
        ),
    ]);
    assert_close(&run(&out, &f), &run(&g, &f), 1e-6);
}

#[test]
fn shared_intermediates_end_a_fusion_tree() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[8]);
    let a = g.exp(x).unwrap(); // read twice below: materialized
    let b = g.neg(a).unwrap();
    let b = g.tanh(b).unwrap();
    let c = g.sigmoid(a).unwrap();
    let c = g.abs(c).unwrap();
    g.set_outputs(vec![b, c]).unwrap();
    let (out, stats) = fuse_elementwise(&g).unwrap();
    assert_eq!(stats.rewrites, 2);
    assert_eq!(count(&out, |o| *o == Op::Unary(UnaryOp::Exp)), 1);
}

fn pattern_feeds(shapes: &[(&str, &[usize])]) -> HashMap<String, Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, (name, dims))| {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7 + k * 3) as f32 * 0.13).sin())
                .collect();
            (name.to_string(), Tensor::from_slice(&v, *dims).unwrap())
        })
        .collect()
}

#[test]
fn fuse_patterns_finds_every_composite() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[6, 10]);
    let w = input(&mut g, "w", &[10]);
    let q = input(&mut g, "q", &[1, 2, 72, 8]);
    let k = input(&mut g, "k", &[1, 2, 72, 8]);
    let v = input(&mut g, "v", &[1, 2, 72, 8]);
    let t = g.input("t", &d(&[6]), DType::I64).unwrap();
    let sm = primitives::softmax(&mut g, x).unwrap();
    let rn = primitives::rms_norm(&mut g, x, w, 1e-5).unwrap();
    let ce = primitives::cross_entropy(&mut g, rn, t).unwrap();
    let att = primitives::attention(&mut g, q, k, v, true).unwrap();
    let plain = primitives::attention(&mut g, k, q, v, false).unwrap();
    g.set_outputs(vec![sm, ce, att, plain]).unwrap();
    let (out, stats) = fuse_patterns(&g).unwrap();
    assert_eq!(stats.rewrites, 5, "{stats}");
    for op in ["softmax", "rms_norm", "cross_entropy", "attention"] {
        assert!(
            out.nodes().iter().any(|n| n.op.name() == op),
            "{op} not fused"
        );
    }
    assert_eq!(
        count(&out, |o| *o
            == Op::Attention {
                scale: luoshu_graph::Float::new(1.0 / 8f64.sqrt()),
                causal: true,
                segmented: false
            }),
        1
    );
    assert_eq!(
        count(&out, |o| matches!(
            o,
            Op::Reduce { .. } | Op::Unary(_) | Op::MatMul
        )),
        0,
        "{out:?}"
    );
    let mut f = pattern_feeds(&[
        ("x", &[6, 10]),
        ("w", &[10]),
        ("q", &[1, 2, 72, 8]),
        ("k", &[1, 2, 72, 8]),
        ("v", &[1, 2, 72, 8]),
    ]);
    f.insert(
        "t".into(),
        Tensor::from_slice(&[0i64, 3, 9, 2, 2, 7], [6]).unwrap(),
    );
    assert_close(&run(&out, &f), &run(&g, &f), 1e-4);
    // The forward pipeline folds the mask's row index and still finds causal attention.
    let (opt, _) = optimize_forward(&g).unwrap();
    assert_eq!(
        count(&opt, |o| matches!(o, Op::Attention { causal: true, .. })),
        1
    );
    assert_close(&run(&opt, &f), &run(&g, &f), 1e-4);
}

/// Segmented attention and its gradient keep their values through the whole optimization
/// pipeline (the segment ids are an integer input no pass may fold, fuse or drop).
#[test]
fn optimized_segmented_attention_and_gradient_keep_their_values() {
    let mut g = Graph::new();
    let (q, k, v) = (
        input(&mut g, "q", &[2, 4, 9, 8]),
        input(&mut g, "k", &[2, 2, 9, 8]),
        input(&mut g, "v", &[2, 2, 9, 8]),
    );
    let segments = g.input("segments", &d(&[2, 9]), DType::I64).unwrap();
    let (out, _) = g
        .segmented_attention((q, k, v), segments, 0.4, true)
        .unwrap();
    let scaled = g.mul(out, out).unwrap();
    let loss = g.sum_all(scaled).unwrap();
    let (mut g, grads) = grad(&g, loss, &[q, k, v]).unwrap();
    g.set_outputs([&[loss][..], &grads].concat()).unwrap();
    let (opt, _) = pipeline(&g).unwrap();
    opt.verify().unwrap();
    assert_eq!(
        count(&opt, |o| matches!(
            o,
            Op::AttentionBackward {
                segmented: true,
                ..
            }
        )),
        1
    );
    let mut f = pattern_feeds(&[
        ("q", &[2, 4, 9, 8]),
        ("k", &[2, 2, 9, 8]),
        ("v", &[2, 2, 9, 8]),
    ]);
    let ids = [0i64, 0, 0, 1, 1, 2, 3, 3, 3, 5, 6, 6, 6, 6, 6, 6, 6, 7];
    f.insert("segments".into(), Tensor::from_slice(&ids, [2, 9]).unwrap());
    assert_close(&run(&opt, &f), &run(&g, &f), 1e-4);
}

#[test]
fn patterns_read_from_outside_are_not_fused() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[3, 5]);
    let sm = primitives::softmax(&mut g, x).unwrap();
    let e = g.node(sm.node).inputs[0]; // exp(x - max), also an output
    g.set_outputs(vec![sm, e]).unwrap();
    let (out, stats) = fuse_patterns(&g).unwrap();
    assert_eq!(stats.rewrites, 0);
    assert_eq!(out.len(), g.len());
}

#[test]
fn recompute_copies_cheap_forward_values_for_the_backward() {
    let mut g = Graph::new();
    let x = input(&mut g, "a", &[4, 6]);
    let w = input(&mut g, "b", &[6, 4]);
    let h = g.matmul(x, w).unwrap();
    let s = g.sigmoid(h).unwrap();
    let y = g.mul(h, s).unwrap();
    let loss = g.sum_all(y).unwrap();
    g.set_outputs(vec![loss]).unwrap();
    let backward_from = NodeId(g.len() as u32);
    let (mut full, grads) = grad(&g, loss, &[x, w]).unwrap();
    full.set_outputs(vec![loss, grads[0], grads[1]]).unwrap();
    let (out, stats) = recompute(&full, RecomputePolicy { backward_from }).unwrap();
    out.verify().unwrap();
    assert!(stats.rewrites >= 1, "{stats}");
    assert!(count(&out, |o| matches!(o, Op::Fused(_))) >= 1);
    let f = feeds(3);
    assert_close(&run(&out, &f), &run(&full, &f), 1e-5);
}

#[test]
fn fused_nodes_have_no_gradient() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4]);
    let a = g.exp(x).unwrap();
    let b = g.tanh(a).unwrap();
    let l = g.sum_all(b).unwrap();
    g.set_outputs(vec![l]).unwrap();
    let (fused, _) = fuse_elementwise(&g).unwrap();
    let x2 = fused.leaf("x").unwrap().into();
    let l2 = fused.outputs()[0];
    let err = grad(&fused, l2, &[x2]).unwrap_err().to_string();
    assert!(err.contains("differentiate before fusing"), "{err}");
}

// ----- the fused elementwise kernel against its decomposition -----

/// Input shapes that broadcast to `[3, 4, 5]`.
const KERNEL_INPUTS: [&[usize]; 3] = [&[3, 4, 5], &[4, 1], &[5]];

/// A random valid program over f32 inputs: each step picks an op and operands among the
/// registers of a suitable dtype (f32 registers, bool registers from compares, and a
/// round trip through bf16/f64/i32).
fn random_program(steps: &[(u8, usize, usize, usize)]) -> ElementwiseProgram {
    let mut instrs: Vec<FusedInstr> = (0..KERNEL_INPUTS.len()).map(FusedInstr::Load).collect();
    let mut dtypes = vec![DType::F32; KERNEL_INPUTS.len()];
    let floats = |dtypes: &[DType]| -> Vec<usize> {
        (0..dtypes.len())
            .filter(|&i| dtypes[i] == DType::F32)
            .collect()
    };
    for &(kind, a, b, c) in steps {
        let f = floats(&dtypes);
        let (fa, fb) = (f[a % f.len()], f[b % f.len()]);
        let bools: Vec<usize> = (0..dtypes.len())
            .filter(|&i| dtypes[i] == DType::Bool)
            .collect();
        let (instr, dtype) = match kind {
            0 => {
                let ops = [
                    UnaryOp::Neg,
                    UnaryOp::Abs,
                    UnaryOp::Tanh,
                    UnaryOp::Sigmoid,
                    UnaryOp::Relu,
                    UnaryOp::Silu,
                    UnaryOp::Gelu,
                    UnaryOp::Sin,
                ];
                (FusedInstr::Unary(ops[c % ops.len()], fa), DType::F32)
            }
            1 => {
                let ops = [
                    BinaryOp::Add,
                    BinaryOp::Sub,
                    BinaryOp::Mul,
                    BinaryOp::Maximum,
                    BinaryOp::Minimum,
                ];
                (FusedInstr::Binary(ops[c % ops.len()], fa, fb), DType::F32)
            }
            2 => (
                FusedInstr::constant((c as f64 - 3.0) * 0.37, DType::F32),
                DType::F32,
            ),
            3 => (
                FusedInstr::Compare(CompareOp::ALL[c % 5], fa, fb),
                DType::Bool,
            ),
            4 if !bools.is_empty() => (
                FusedInstr::Select(bools[c % bools.len()], fa, fb),
                DType::F32,
            ),
            5 => {
                let mid = [DType::BF16, DType::F64, DType::I32][c % 3];
                instrs.push(FusedInstr::Cast(fa, mid));
                dtypes.push(mid);
                (FusedInstr::Cast(instrs.len() - 1, DType::F32), DType::F32)
            }
            _ => continue,
        };
        instrs.push(instr);
        dtypes.push(dtype);
    }
    let output = floats(&dtypes).last().copied().unwrap_or(0);
    ElementwiseProgram {
        inputs: vec![DType::F32; KERNEL_INPUTS.len()],
        instrs,
        output,
    }
}

fn kernel_inputs(seed: u32, transposed: bool) -> Vec<Tensor> {
    KERNEL_INPUTS
        .iter()
        .enumerate()
        .map(|(k, dims)| {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i as f32 + 1.3 * k as f32) * 0.71 + seed as f32).sin() * 2.0)
                .collect();
            let t = Tensor::from_slice(&v, *dims).unwrap();
            if transposed && k == 0 {
                // The same logical values seen through a non-contiguous layout.
                let ops = Ops::new(&ReferenceBackend);
                let flipped = ops.contiguous(&t.permute(&[2, 1, 0]).unwrap()).unwrap();
                flipped.permute(&[2, 1, 0]).unwrap()
            } else {
                t
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn fused_kernel_matches_decomposition(
        s in prop::collection::vec((0u8..6, 0usize..16, 0usize..16, 0usize..16), 1..16),
        seed in 0u32..20,
        transposed in any::<bool>(),
    ) {
        let program = random_program(&s);
        let inputs = kernel_inputs(seed, transposed);
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let cpu = CpuBackend::new();
        let got = Ops::new(&cpu).fused_elementwise(&program, &refs).unwrap();
        let want = Tensor::zeros(DType::F32, [3, 4, 5]).unwrap();
        let views: Vec<Tensor> = inputs.iter().map(|t| t.broadcast_to([3, 4, 5]).unwrap()).collect();
        let view_refs: Vec<&Tensor> = views.iter().collect();
        composite::fused_elementwise(&ReferenceBackend, &program, &view_refs, &want).unwrap();
        // bf16 round trips may round differently by one ulp of bf16 (f32 vs f64 compute).
        assert_close(&[got], &[want], 1e-2);
    }
}

#[test]
fn fused_kernel_runs_large_outputs_in_parallel_blocks_and_in_place() {
    let cpu = CpuBackend::new();
    let ops = Ops::new(&cpu);
    let n = 100_003;
    let x = Tensor::from_slice(
        &(0..n).map(|i| (i as f32 * 1e-3).cos()).collect::<Vec<_>>(),
        [n],
    )
    .unwrap();
    let program = ElementwiseProgram {
        inputs: vec![DType::F32],
        instrs: vec![
            FusedInstr::Load(0),
            FusedInstr::constant(2.0, DType::F32),
            FusedInstr::Binary(BinaryOp::Mul, 0, 1),
            FusedInstr::Unary(UnaryOp::Tanh, 2),
        ],
        output: 3,
    };
    let want = ops.fused_elementwise(&program, &[&x]).unwrap();
    let expect: Vec<f32> = x
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| (v * 2.0).tanh())
        .collect();
    assert_close(
        std::slice::from_ref(&want),
        &[Tensor::from_slice(&expect, [n]).unwrap()],
        1e-6,
    );
    ops.fused_elementwise_into(&program, &[&x], &x).unwrap();
    assert_close(&[x], &[want], 0.0);
    let bad = ElementwiseProgram {
        output: 7,
        ..program
    };
    assert!(cpu
        .fused_elementwise(&bad, &[], &Tensor::zeros(DType::F32, [1]).unwrap())
        .is_err());
}
