//! Memory planner and scheduler properties: no two buffers live at the same step share a
//! byte (brute force over all pairs), offsets are aligned, the arena is no larger than the
//! sum of intermediates, and in-place reuse / view aliasing happen where they should.

mod common;

use common::{build, d, instrs};
use luoshu_backend::ops::{ReduceOp, UnaryOp};
use luoshu_graph::memory::{plan_memory, Home, MemoryPlan, StepKind, ALIGN};
use luoshu_graph::passes::live_nodes;
use luoshu_graph::schedule::schedule;
use luoshu_graph::{Bindings, Dim, Error, Graph, NodeId};
use luoshu_tensor::DType;
use proptest::prelude::*;

fn check_plan(plan: &MemoryPlan) {
    let b = &plan.buffers;
    for (i, x) in b.iter().enumerate() {
        assert_eq!(x.offset % ALIGN, 0, "buffer {i} offset");
        assert!(
            x.offset + x.bytes <= plan.report.arena_bytes,
            "buffer {i} outside the arena"
        );
        for (j, y) in b.iter().enumerate().skip(i + 1) {
            let bytes_overlap = x.offset < y.offset + y.bytes && y.offset < x.offset + x.bytes;
            let both_live = x.first <= y.last && y.first <= x.last;
            assert!(
                !(bytes_overlap && both_live && x.bytes > 0 && y.bytes > 0),
                "buffers {i} {x:?} and {j} {y:?} overlap while both live"
            );
        }
    }
    // Every arena value stays inside its own buffer.
    for (v, p) in &plan.placements {
        if let Home::Arena(i) = p.home {
            let size = p.dtype.size_in_bytes();
            let (start, span) = (p.layout.offset() * size, p.layout.storage_span() * size);
            if p.layout.numel() > 0 {
                assert!(
                    start >= b[i].offset && span <= b[i].offset + b[i].bytes,
                    "value {v} leaves buffer {i}"
                );
            }
        }
    }
    assert!(plan.report.arena_bytes <= plan.report.intermediate_bytes);
}

fn insertion_order(g: &Graph) -> Vec<NodeId> {
    let live = live_nodes(g);
    g.ids().filter(|id| live[id.index()]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn planned_buffers_never_overlap_while_live(prog in instrs(32)) {
        let g = build(&prog);
        let order = schedule(&g, &Bindings::new()).unwrap();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(sorted, insertion_order(&g), "the schedule runs each live node once");
        check_plan(&plan_memory(&g, &order, &Bindings::new()).unwrap());
        check_plan(&plan_memory(&g, &insertion_order(&g), &Bindings::new()).unwrap());
    }
}

#[test]
fn elementwise_chain_runs_in_place_in_one_buffer() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[64, 64]), DType::F32).unwrap();
    let mut y = g.unary(UnaryOp::Neg, x).unwrap();
    for op in [UnaryOp::Relu, UnaryOp::Exp, UnaryOp::Tanh] {
        y = g.unary(op, y).unwrap();
    }
    g.set_outputs(vec![y]).unwrap();
    let plan = plan_memory(
        &g,
        &schedule(&g, &Bindings::new()).unwrap(),
        &Bindings::new(),
    )
    .unwrap();
    check_plan(&plan);
    assert_eq!(plan.report.in_place, 3);
    assert_eq!(plan.buffers.len(), 1);
    assert_eq!(plan.report.arena_bytes, 64 * 64 * 4);
    assert_eq!(plan.report.intermediate_bytes, 4 * 64 * 64 * 4);
}

#[test]
fn no_in_place_over_a_value_still_needed() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[8]), DType::F32).unwrap();
    let y = g.unary(UnaryOp::Neg, x).unwrap();
    let z = g.unary(UnaryOp::Exp, y).unwrap();
    let w = g.unary(UnaryOp::Abs, z).unwrap();
    let r = g.reshape(w, &d(&[2, 4])).unwrap();
    let v = g.unary(UnaryOp::Relu, w).unwrap();
    let s = g.sum(r, &[1], false).unwrap();
    // y is an output; w is still read through the view r after v.
    g.set_outputs(vec![y, v, s]).unwrap();
    let order = insertion_order(&g);
    let plan = plan_memory(&g, &order, &Bindings::new()).unwrap();
    check_plan(&plan);
    let home = |v| plan.placements[&v].home;
    assert_ne!(home(y), home(z), "an output is never overwritten");
    assert_eq!(home(z), home(w), "z dies at w");
    assert_eq!(home(r), home(w), "a contiguous reshape aliases");
    assert_ne!(home(v), home(w), "w is still read through the view r");
}

#[test]
fn non_contiguous_reshape_becomes_a_copy() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[4, 6]), DType::F32).unwrap();
    let e = g.unary(UnaryOp::Exp, x).unwrap();
    let t = g.permute(e, &[1, 0]).unwrap();
    let flat = g.reshape(t, &d(&[24])).unwrap();
    let back = g.reshape(e, &d(&[24])).unwrap();
    let already = g.contiguous(back).unwrap();
    let copied = g.contiguous(t).unwrap();
    g.set_outputs(vec![flat, already, copied]).unwrap();
    let plan = plan_memory(&g, &insertion_order(&g), &Bindings::new()).unwrap();
    check_plan(&plan);
    assert_eq!(plan.report.aliased_views, 3);
    assert_eq!(plan.report.view_copies, 1);
    assert_eq!(plan.placements[&already].home, plan.placements[&e].home);
    assert_ne!(plan.placements[&copied].home, plan.placements[&e].home);
    let kind = |v: luoshu_graph::Value| {
        plan.kinds[plan.schedule.iter().position(|&n| n == v.node).unwrap()]
    };
    assert_eq!(kind(flat), StepKind::Compute);
    assert_eq!(kind(back), StepKind::Alias);
    assert_eq!(plan.placements[&back].home, plan.placements[&e].home);
}

/// Two independent branches built interleaved: the insertion order keeps both big values
/// alive together; the schedule finishes one branch first.
#[test]
fn schedule_lowers_peak_of_interleaved_branches() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[256, 256]), DType::F32).unwrap();
    let bigs: Vec<_> = [UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Sin, UnaryOp::Cos]
        .iter()
        .map(|&op| g.unary(op, x).unwrap())
        .collect();
    let smalls: Vec<_> = bigs
        .iter()
        .map(|&b| g.reduce(ReduceOp::Sum, b, &[0, 1], false).unwrap())
        .collect();
    g.set_outputs(smalls).unwrap();
    let b = Bindings::new();
    let naive = plan_memory(&g, &insertion_order(&g), &b).unwrap();
    let planned = plan_memory(&g, &schedule(&g, &b).unwrap(), &b).unwrap();
    check_plan(&naive);
    check_plan(&planned);
    let big = 256 * 256 * 4;
    assert!(naive.report.arena_bytes >= 4 * big);
    assert!(planned.report.arena_bytes < 2 * big, "{}", planned.report);
}

#[test]
fn symbolic_dims_need_bindings() {
    let mut g = Graph::new();
    let x = g
        .input("x", &[Dim::sym("batch"), Dim::fixed(3)], DType::F32)
        .unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let err = schedule(&g, &Bindings::new()).unwrap_err();
    assert_eq!(
        err,
        Error::UnboundDim {
            name: "batch".into()
        }
    );
    let b = Bindings::from([("batch".to_string(), 5)]);
    let plan = plan_memory(&g, &schedule(&g, &b).unwrap(), &b).unwrap();
    assert_eq!(plan.report.intermediate_bytes, 64);
    assert_eq!(plan.placements[&y].layout.dims(), &[5, 3]);
}

#[test]
fn a_schedule_out_of_order_is_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", &d(&[3]), DType::F32).unwrap();
    let y = g.unary(UnaryOp::Exp, x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let err = plan_memory(&g, &[y.node, x.node], &Bindings::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("before its input"), "{err}");
}
