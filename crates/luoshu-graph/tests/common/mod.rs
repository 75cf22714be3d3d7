//! Random graphs for the executor, memory-planner and pass tests: a list of instructions
//! interpreted over a growing pool of values, so proptest can shrink failing graphs.
#![allow(dead_code)] // each test file uses a different part

use luoshu_backend::ops::{BinaryOp, ReduceOp, UnaryOp};
use luoshu_graph::{Dim, Graph, Value};
use luoshu_tensor::{DType, Tensor};
use proptest::prelude::*;
use std::collections::HashMap;

/// One random instruction: an op kind and operand/parameter choices.
pub type Instr = (u8, usize, usize, u8);

pub fn instrs(max: usize) -> impl Strategy<Value = Vec<Instr>> {
    prop::collection::vec((0u8..12, 0usize..64, 0usize..64, any::<u8>()), 1..max)
}

pub fn d(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&x| Dim::fixed(x)).collect()
}

pub fn dims_of(g: &Graph, v: Value) -> Vec<usize> {
    g.shape_of(v)
        .iter()
        .map(|x| x.as_fixed().unwrap())
        .collect()
}

/// The leaves every random graph starts from: `(name, dims)`.
pub const LEAVES: [(&str, &[usize]); 4] =
    [("a", &[4, 6]), ("b", &[6, 4]), ("c", &[4, 6]), ("s", &[6])];

/// Build a graph from `instrs`; instructions whose shapes do not fit are skipped. Every
/// value nothing else reads is an output, so every node is live.
pub fn build(instrs: &[Instr]) -> Graph {
    let mut g = build_unfinished(instrs);
    let mut read = vec![false; g.len()];
    for node in g.nodes() {
        for v in &node.inputs {
            read[v.node.index()] = true;
        }
    }
    let sinks = g
        .ids()
        .filter(|id| !read[id.index()])
        .map(Value::from)
        .collect();
    g.set_outputs(sinks).unwrap();
    g
}

/// Like [`build`] but with only the last two values and one picked by the first
/// instruction as outputs, so the graph usually has dead nodes.
pub fn build_with_dead_code(instrs: &[Instr]) -> Graph {
    let mut g = build_unfinished(instrs);
    let n = g.len();
    let pick = instrs.first().map_or(0, |i| i.1) % n;
    let outputs = [n - 1, n - 2, pick].map(|i| Value::from(luoshu_graph::NodeId(i as u32)));
    g.set_outputs(outputs.to_vec()).unwrap();
    g
}

fn build_unfinished(instrs: &[Instr]) -> Graph {
    let mut g = Graph::new();
    let mut pool: Vec<Value> = LEAVES
        .iter()
        .map(|(name, dims)| g.input(name, &d(dims), DType::F32).unwrap())
        .collect();
    for &(kind, a, b, p) in instrs {
        let x = pool[a % pool.len()];
        let y = pool[b % pool.len()];
        let xd = dims_of(&g, x);
        let rank = xd.len();
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
                ];
                g.binary(ops[p as usize % ops.len()], x, y)
            }
            2 => g.matmul(x, y),
            3 if g.shape_of(y).len() >= 2 => g.transpose_last(y).and_then(|yt| g.matmul(x, yt)),
            4 if rank >= 1 => {
                let op = if p % 2 == 0 {
                    ReduceOp::Sum
                } else {
                    ReduceOp::Max
                };
                g.reduce(op, x, &[(p as usize / 2) % rank], p % 4 >= 2)
            }
            5 if rank >= 2 => {
                let perm: Vec<usize> = (0..rank).rev().collect();
                g.permute(x, &perm)
            }
            6 if rank >= 2 => g.reshape(x, &d(&[xd.iter().product()])),
            7 if rank >= 1 && xd.iter().product::<usize>() % 2 == 0 => {
                let n: usize = xd.iter().product();
                g.reshape(x, &d(&[2, n / 2]))
            }
            8 if rank >= 1 && xd[0] >= 2 => g.slice(x, 0, p as usize % 2, xd[0], 2),
            9 if rank >= 1 && xd[rank - 1] > 0 => g.softmax(x),
            10 if rank <= 2 => {
                let mut to = vec![3];
                to.extend(&xd);
                g.broadcast_to(x, &d(&to))
            }
            11 => g.contiguous(x),
            _ => continue,
        };
        if let Ok(v) = r {
            pool.push(v);
        }
    }
    g
}

/// Deterministic feeds for [`LEAVES`], varied by `seed`.
pub fn feeds(seed: u32) -> HashMap<String, Tensor> {
    LEAVES
        .iter()
        .enumerate()
        .map(|(k, (name, dims))| {
            let n: usize = dims.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|i| ((i as f32 + 1.0) * 0.37 + k as f32 * 1.3 + seed as f32 * 0.71).sin())
                .collect();
            (
                name.to_string(),
                Tensor::from_slice(&values, *dims).unwrap(),
            )
        })
        .collect()
}

/// Closeness within `tol` relative to `1 + |want|`; NaNs and infinities must agree.
pub fn assert_all_close(got: &[Tensor], want: &[Tensor], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.dims(), w.dims(), "output {k}");
        assert_eq!(g.dtype(), w.dtype(), "output {k}");
        for (i, (a, b)) in g.to_f64_vec().iter().zip(w.to_f64_vec()).enumerate() {
            let ok = if b.is_finite() {
                (a - b).abs() <= tol * (1.0 + b.abs())
            } else {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            };
            assert!(ok, "output {k} element {i}: {a} vs {b}");
        }
    }
}
