//! Dead-code elimination and the pass infrastructure: DCE keeps exactly what the outputs
//! need and computes the same values (differential test on random graphs), the pipeline
//! verifies and reports, and the rewriter's remap gets CSE from hash-consing.

mod common;

use common::{assert_all_close, build_with_dead_code, d, feeds, instrs};
use luoshu_backend::ops::UnaryOp;
use luoshu_backend::reference::ReferenceBackend;
use luoshu_graph::passes::{dce, live_nodes, pass_by_name, run_pipeline, Rewriter};
use luoshu_graph::{evaluate, Bindings, Graph};
use luoshu_tensor::DType;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dce_keeps_results_and_drops_dead_nodes(prog in instrs(24), seed in 0u32..100) {
        let g = build_with_dead_code(&prog);
        let (out, stats) = dce(&g).unwrap();
        out.verify().unwrap();
        let live = live_nodes(&g).iter().filter(|&&l| l).count();
        prop_assert_eq!(out.len(), live);
        prop_assert_eq!(stats.nodes_before - stats.nodes_after, stats.rewrites);
        prop_assert!(live_nodes(&out).iter().all(|&l| l), "no dead node survives");
        let f = feeds(seed);
        let before = evaluate(&g, &Bindings::new(), &f, &ReferenceBackend).unwrap();
        let after = evaluate(&out, &Bindings::new(), &f, &ReferenceBackend).unwrap();
        assert_all_close(&after, &before, 0.0);
        let (again, stats2) = dce(&out).unwrap();
        prop_assert_eq!(again.len(), out.len());
        prop_assert!(!stats2.changed(), "dce is idempotent");
    }
}

#[test]
fn dce_drops_unused_branches_and_leaves() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[4]), DType::F32).unwrap();
    let unused = g.input("unused", &d(&[4]), DType::F32).unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    let dead = g.unary(UnaryOp::Neg, y).unwrap();
    g.unary(UnaryOp::Abs, unused).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let (out, stats) = dce(&g).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(stats.rewrites, 3);
    assert!(out.leaf("unused").is_none() && out.leaf("x").is_some());
    assert!(dead.node.index() < g.len());
}

#[test]
fn pipeline_runs_registered_passes_and_reports() {
    let g = build_with_dead_code(&[(0, 0, 0, 1), (2, 0, 1, 0), (0, 4, 0, 2), (1, 5, 2, 0)]);
    let (out, stats) = run_pipeline(&g, &[pass_by_name("dce").unwrap()]).unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].pass, "dce");
    assert_eq!(stats[0].nodes_before, g.len());
    assert_eq!(stats[0].nodes_after, out.len());
}

#[test]
fn rewriting_through_a_remap_merges_equal_nodes() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[3]), DType::F32).unwrap();
    let a = g.unary(UnaryOp::Exp, x).unwrap();
    let b = g.unary(UnaryOp::Abs, x).unwrap();
    let b2 = g.unary(UnaryOp::Relu, b).unwrap(); // abs then relu is just abs
    let ea = g.unary(UnaryOp::Tanh, b).unwrap();
    let eb = g.unary(UnaryOp::Tanh, b2).unwrap();
    g.set_outputs(vec![a, ea, eb]).unwrap();
    let mut rw = Rewriter::new(&g);
    for id in g.ids() {
        if id == b2.node {
            let mapped = rw.map(b).unwrap();
            rw.replace(b2, mapped);
        } else {
            rw.copy_node(id).unwrap();
        }
    }
    let out = rw.finish().unwrap();
    out.verify().unwrap();
    assert_eq!(
        out.len(),
        4,
        "tanh(abs) and tanh(relu(abs)) became one node"
    );
    assert_eq!(out.outputs()[1], out.outputs()[2]);
}
