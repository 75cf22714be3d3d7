//! The graph builder (`sum_to`, no-op view elision, composite outputs) and the text /
//! Graphviz dumps.

use luoshu_backend::reference::ReferenceBackend;
use luoshu_graph::dump::{dump_if_enabled, dump_to, DUMP_ENV};
use luoshu_graph::infer::InferError;
use luoshu_graph::{evaluate, fixed_shape, Bindings, Dim, Error, Graph, NodeId, Op, Value};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;

fn dims(d: &[usize]) -> Vec<Dim> {
    fixed_shape(d)
}

#[test]
fn sum_to_reduces_leading_and_stretched_dims() {
    let mut g = Graph::new();
    let x = g.input("x", &dims(&[2, 3, 4]), DType::F64).unwrap();
    let y = g.sum_to(x, &dims(&[3, 1])).unwrap();
    assert_eq!(g.shape_of(y), dims(&[3, 1]));
    let z = g.sum_to(x, &dims(&[4])).unwrap();
    assert_eq!(g.shape_of(z), dims(&[4]));
    assert_eq!(g.sum_to(x, &dims(&[2, 3, 4])).unwrap(), x);
    g.set_outputs(vec![y, z]).unwrap();
    g.verify().unwrap();

    let values: Vec<f64> = (0..24).map(|i| i as f64).collect();
    let feeds = HashMap::from([(
        "x".to_string(),
        Tensor::from_f64(&values, DType::F64, [2, 3, 4]).unwrap(),
    )]);
    let out = evaluate(&g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap();
    // y[j] = Σ_{i,k} x[i, j, k]; z[k] = Σ_{i,j} x[i, j, k].
    let want_y: Vec<f64> = (0..3)
        .map(|j| {
            (0..2)
                .flat_map(|i| (0..4).map(move |k| (i * 12 + j * 4 + k) as f64))
                .sum()
        })
        .collect();
    let want_z: Vec<f64> = (0..4)
        .map(|k| {
            (0..2)
                .flat_map(|i| (0..3).map(move |j| (i * 12 + j * 4 + k) as f64))
                .sum()
        })
        .collect();
    assert_eq!(out[0].to_f64_vec(), want_y);
    assert_eq!(out[1].to_f64_vec(), want_z);
}

#[test]
fn sum_to_rejects_shapes_that_do_not_broadcast() {
    let mut g = Graph::new();
    let x = g.input("x", &dims(&[2, 3]), DType::F32).unwrap();
    for bad in [dims(&[2]), dims(&[1, 2, 3]), dims(&[4, 3])] {
        let err = g.sum_to(x, &bad).unwrap_err().to_string();
        assert!(err.contains("cannot sum"), "{err}");
    }
}

#[test]
fn no_op_views_are_elided_and_equal_nodes_are_shared() {
    let mut g = Graph::new();
    let x = g
        .input("x", &[Dim::sym("batch"), Dim::fixed(4)], DType::F32)
        .unwrap();
    let shape = g.shape_of(x);
    assert_eq!(g.reshape(x, &shape).unwrap(), x);
    assert_eq!(g.broadcast_to(x, &shape).unwrap(), x);
    assert_eq!(g.permute(x, &[0, 1]).unwrap(), x);
    assert_eq!(g.cast(x, DType::F32).unwrap(), x);
    let before = g.len();
    let a = g.exp(x).unwrap();
    let b = g.exp(x).unwrap();
    assert_eq!(a, b);
    assert_eq!(g.len(), before + 1);
    let t = g.transpose(x, 0, 1).unwrap();
    assert_eq!(g.node(t.node).op, Op::Permute { perm: vec![1, 0] });
    assert!(g.transpose(x, 0, 2).is_err());
    let v = g.input("v", &dims(&[3]), DType::F32).unwrap();
    assert!(g.transpose_last(v).is_err());
}

#[test]
fn composite_builders_return_every_output() {
    let mut g = Graph::new();
    let x = g.input("x", &dims(&[5, 8]), DType::F32).unwrap();
    let w = g.param("w", &dims(&[8]), DType::F32).unwrap();
    let (out, rstd) = g.rms_norm(x, w, 1e-5).unwrap();
    assert_eq!((out.node, out.output, rstd.output), (rstd.node, 0, 1));
    assert_eq!(g.shape_of(rstd), dims(&[5]));
    let targets = g.input("t", &dims(&[5]), DType::I64).unwrap();
    let (losses, lse) = g.cross_entropy(out, targets, -100).unwrap();
    assert_eq!(
        (g.shape_of(losses), g.dtype_of(lse)),
        (dims(&[5]), DType::F32)
    );
    let q = g.input("q", &dims(&[1, 2, 3, 4]), DType::F32).unwrap();
    let (o, l) = g.attention(q, q, q, 0.5, true).unwrap();
    assert_eq!(
        (g.shape_of(o), g.shape_of(l)),
        (dims(&[1, 2, 3, 4]), dims(&[1, 2, 3]))
    );
    let ids = g.input("ids", &dims(&[1, 3]), DType::I64).unwrap();
    let (o, _) = g.segmented_attention((q, q, q), ids, 0.5, true).unwrap();
    assert_eq!(g.shape_of(o), dims(&[1, 2, 3, 4]));
    for (bad, why) in [(&[1, 4][..], DType::I64), (&[1, 3], DType::F32)] {
        let wrong = g.input(&format!("{bad:?} {why}"), &dims(bad), why).unwrap();
        let err = g
            .segmented_attention((q, q, q), wrong, 0.5, true)
            .unwrap_err();
        assert!(err.to_string().contains("segment ids"), "{err}");
    }
    g.verify().unwrap();
}

#[test]
fn text_dump_lists_nodes_with_types() {
    let mut g = Graph::new();
    let bs = Dim::sym("batch").mul(&Dim::sym("seq"));
    let x = g
        .input("x", &[bs.clone(), Dim::fixed(64)], DType::F32)
        .unwrap();
    let w = g.param("w", &dims(&[64, 256]), DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let q = g.input("q", &dims(&[1, 2, 3, 4]), DType::F32).unwrap();
    let (_, lse) = g.attention(q, q, q, 0.5, false).unwrap();
    g.set_outputs(vec![y, lse]).unwrap();
    let text = g.to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "%0 = input:x : f32[batch·seq, 64]");
    assert_eq!(lines[2], "%2 = matmul(%0, %1) : f32[batch·seq, 256]");
    assert_eq!(
        lines[4],
        "%4 = attention(%3, %3, %3) : (f32[1, 2, 3, 4], f32[1, 2, 3])"
    );
    assert_eq!(lines[5], "outputs: %2, %4.1");
    assert_eq!(lines.len(), 6);
}

#[test]
fn dot_dump_has_a_box_per_node_and_an_edge_per_input() {
    let mut g = Graph::new();
    let x = g.input("x\"quoted\"", &dims(&[2, 3]), DType::F32).unwrap();
    let w = g.param("w", &dims(&[3]), DType::F32).unwrap();
    let (out, rstd) = g.rms_norm(x, w, 1e-5).unwrap();
    let y = g.mul(out, x).unwrap();
    let r = g.exp(rstd).unwrap();
    g.set_outputs(vec![y, r]).unwrap();
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph luoshu {"));
    assert!(dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches(" [label=\"%").count(), g.len());
    assert_eq!(dot.matches(" -> ").count(), 5);
    assert!(dot.contains("n2 -> n4 [label=\"1\"];"), "{dot}");
    assert!(dot.contains("input:x\\\"quoted\\\""), "{dot}");
    assert_eq!(dot.matches("peripheries=2").count(), 2);
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("luoshu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn dumps_are_numbered_files_written_to_the_env_directory() {
    let mut g = Graph::new();
    let x = g.input("x", &dims(&[2]), DType::F32).unwrap();
    let y = g.exp(x).unwrap();
    g.set_outputs(vec![y]).unwrap();

    let dir = scratch_dir("dump");
    let [first_txt, first_dot] = dump_to(&dir.join("nested"), &g, "before").unwrap();
    assert_eq!(std::fs::read_to_string(&first_txt).unwrap(), g.to_text());
    assert_eq!(std::fs::read_to_string(&first_dot).unwrap(), g.to_dot());
    assert!(first_txt
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-before.txt"));

    // Only this test touches the variable.
    std::env::set_var(DUMP_ENV, &dir);
    let [txt, dot] = dump_if_enabled(&g, "after").unwrap().unwrap();
    std::env::remove_var(DUMP_ENV);
    assert!(txt.starts_with(&dir) && dot.exists());
    assert!(
        txt.file_name() > first_txt.file_name(),
        "later stages sort later"
    );
    assert_eq!(dump_if_enabled(&g, "unset").unwrap(), None);

    // A directory that cannot be created is an error, not a panic.
    let blocker = dir.join("file");
    std::fs::write(&blocker, "x").unwrap();
    let err = dump_to(&blocker.join("sub"), &g, "bad").unwrap_err();
    assert!(err.to_string().contains("cannot write graph dump"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_leaf_of_a_name_and_values_the_graph_lacks_are_typed_errors() {
    let mut g = Graph::new();
    let x = g.input("x", &dims(&[2]), DType::F32).unwrap();
    let again = g.param("x", &dims(&[3]), DType::F32).unwrap_err();
    assert!(
        matches!(&again, Error::DuplicateLeaf { existing, name, .. }
            if Value::from(*existing) == x && name == "x"),
        "{again:?}"
    );
    assert!(again
        .to_string()
        .contains("a different leaf named `x` already exists"));

    let ghost = Value::new(NodeId(99), 0);
    let err = g.add(Op::Contiguous, &[ghost]).unwrap_err();
    assert!(
        matches!(err, Error::UnknownValue { value } if value == ghost),
        "{err:?}"
    );
    let second_output = Value::new(x.node, 1);
    let err = g.add(Op::Contiguous, &[second_output]).unwrap_err();
    assert!(
        matches!(err, Error::NoSuchOutput { node, outputs: 1, output: 1, .. } if node == x.node),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("has 1 outputs, output 1 was used"),
        "{err}"
    );
}

#[test]
fn inference_errors_name_their_kind_and_keep_their_message() {
    let mut g = Graph::new();
    let a = g.input("a", &dims(&[2, 3]), DType::F32).unwrap();
    let b = g.input("b", &dims(&[3, 4]), DType::BF16).unwrap();
    let v = g.input("v", &dims(&[3]), DType::F32).unwrap();
    let err = g.add(Op::MatMul, &[a, b]).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Infer {
                reason: InferError::DtypeMismatch {
                    left: DType::F32,
                    right: DType::BF16
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("dtype mismatch: f32 vs bf16 (inputs: "),
        "{err}"
    );
    let err = g.add(Op::MatMul, &[a, v]).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Infer {
                reason: InferError::Shape(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("operands need rank >= 2"), "{err}");
    let err = g.add(Op::MatMul, &[a]).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Infer {
                reason: InferError::Arity {
                    expected: 2,
                    got: 1
                },
                ..
            }
        ),
        "{err:?}"
    );
}
