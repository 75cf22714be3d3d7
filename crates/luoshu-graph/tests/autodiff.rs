//! Autodiff: every gradient rule against central finite differences in f64 on the reference
//! backend (scalar loss = Σ output · random projection, so every output element matters),
//! composite subgraphs (attention block, SwiGLU MLP, cross-entropy over a vocabulary),
//! symbolic dims, and the structural guarantees and errors of `grad`.

use luoshu_backend::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_graph::{
    eval_shape, evaluate, fixed_shape, grad, Bindings, Dim, Error, Float, Graph, Op, Value,
};
use luoshu_tensor::{rng, DType, Tensor};
use std::collections::HashMap;

/// Central-difference step and the allowed error `abs + rel · max(|fd|, |analytic|)`.
#[derive(Clone, Copy)]
struct Tol {
    eps: f64,
    rel: f64,
    abs: f64,
}

const F64: Tol = Tol {
    eps: 1e-6,
    rel: 1e-6,
    abs: 1e-8,
};

/// For ops that save f32 statistics (rstd, mean, lse) for their backward whatever the input
/// dtype: the analytic gradient carries their rounding, amplified by cancellation.
const F64_STATS: Tol = Tol {
    eps: 1e-6,
    rel: 1e-5,
    abs: 1e-6,
};

/// For graphs whose loss passes through f32 values (cross-entropy losses are f32 by
/// contract): rounding to f32 limits what a difference quotient can resolve.
const THROUGH_F32: Tol = Tol {
    eps: 1e-2,
    rel: 1e-3,
    abs: 1e-4,
};

/// A graph under construction with random feeds for its differentiated leaves.
struct Check {
    g: Graph,
    feeds: HashMap<String, Tensor>,
    wrt: Vec<(String, Value)>,
    bindings: Bindings,
    stream: u64,
    /// Elements probed per differentiated tensor (evenly spread), to bound test time.
    max_probes: usize,
}

impl Check {
    fn new() -> Self {
        Check {
            g: Graph::new(),
            feeds: HashMap::new(),
            wrt: Vec::new(),
            bindings: Bindings::new(),
            stream: 0,
            max_probes: usize::MAX,
        }
    }

    fn normals(&mut self, n: usize) -> Vec<f64> {
        self.stream += 1;
        (0..n as u64)
            .map(|i| rng::normal(2026, self.stream, i) as f64)
            .collect()
    }

    fn feed(&mut self, name: &str, shape: &[Dim], dtype: DType, values: &[f64]) {
        let dims = eval_shape(shape, &self.bindings).unwrap();
        let tensor = Tensor::from_f64(values, dtype, dims).unwrap();
        self.feeds.insert(name.to_string(), tensor);
    }

    /// A differentiated f64 parameter whose values are `f(standard normal)`.
    fn var_with(&mut self, name: &str, shape: &[Dim], f: impl Fn(f64) -> f64) -> Value {
        let n = eval_shape(shape, &self.bindings).unwrap().iter().product();
        let values: Vec<f64> = self.normals(n).into_iter().map(f).collect();
        let v = self.g.param(name, shape, DType::F64).unwrap();
        self.feed(name, shape, DType::F64, &values);
        self.wrt.push((name.to_string(), v));
        v
    }

    fn var(&mut self, name: &str, dims: &[usize]) -> Value {
        self.var_with(name, &fixed_shape(dims), |x| x)
    }

    /// A fed input that is not differentiated.
    fn data(&mut self, name: &str, dims: &[usize], dtype: DType, values: &[f64]) -> Value {
        let shape = fixed_shape(dims);
        let v = self.g.input(name, &shape, dtype).unwrap();
        self.feed(name, &shape, dtype, values);
        v
    }

    fn indices(&mut self, name: &str, values: &[i64]) -> Value {
        let values: Vec<f64> = values.iter().map(|&i| i as f64).collect();
        self.data(name, &[values.len()], DType::I64, &values)
    }

    /// Compare the gradient of `Σ output · projection` with central differences for every
    /// differentiated leaf; returns the largest error relative to what was allowed.
    fn check(mut self, output: Value, tol: Tol) -> f64 {
        let t = self.g.value_type(output).clone();
        let n = eval_shape(&t.shape, &self.bindings)
            .unwrap()
            .iter()
            .product();
        let projection = self.normals(n);
        let proj = self.g.input("projection", &t.shape, t.dtype).unwrap();
        self.feed("projection", &t.shape, t.dtype, &projection);
        let weighted = self.g.mul(output, proj).unwrap();
        let loss = self.g.sum_all(weighted).unwrap();

        let wrt: Vec<Value> = self.wrt.iter().map(|(_, v)| *v).collect();
        let (mut backward, grads) = grad(&self.g, loss, &wrt).unwrap();
        backward.verify().unwrap();
        for (w, d) in wrt.iter().zip(&grads) {
            assert_eq!(backward.value_type(*d), self.g.value_type(*w));
        }
        backward.set_outputs(grads).unwrap();
        let analytic = evaluate(&backward, &self.bindings, &self.feeds, &ReferenceBackend).unwrap();

        self.g.set_outputs(vec![loss]).unwrap();
        let mut worst: f64 = 0.0;
        for ((name, _), analytic) in self.wrt.iter().zip(analytic) {
            let base = self.feeds[name].clone();
            let (values, analytic) = (base.to_f64_vec(), analytic.to_f64_vec());
            let stride = values.len().div_ceil(self.max_probes).max(1);
            for j in (0..values.len()).step_by(stride) {
                let mut feeds = self.feeds.clone();
                let mut loss_at = |delta: f64| {
                    let mut v = values.clone();
                    v[j] += delta;
                    let t = Tensor::from_f64(&v, DType::F64, base.dims()).unwrap();
                    feeds.insert(name.clone(), t);
                    evaluate(&self.g, &self.bindings, &feeds, &ReferenceBackend).unwrap()[0]
                        .to_f64_vec()[0]
                };
                let fd = (loss_at(tol.eps) - loss_at(-tol.eps)) / (2.0 * tol.eps);
                let allowed = tol.abs + tol.rel * fd.abs().max(analytic[j].abs());
                let err = (fd - analytic[j]).abs();
                assert!(
                    err <= allowed,
                    "d loss / d {name}[{j}]: autodiff {} vs finite difference {fd}",
                    analytic[j]
                );
                worst = worst.max(err / allowed);
            }
        }
        worst
    }
}

fn away_from_zero(x: f64) -> f64 {
    x.signum() * (x.abs() + 0.3)
}

fn positive(x: f64) -> f64 {
    x.abs() + 0.5
}

// ----- elementwise -----

#[test]
fn unary_ops() {
    for op in UnaryOp::ALL {
        let mut c = Check::new();
        let domain = match op {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => positive,
            _ => away_from_zero,
        };
        let x = c.var_with("x", &fixed_shape(&[2, 3]), domain);
        let y = c.g.unary(op, x).unwrap();
        c.check(y, F64);
    }
}

#[test]
fn gelu_near_zero_and_in_the_tails() {
    let mut c = Check::new();
    let values = [0.0, 1e-5, -3e-5, 2e-4, -1e-3, 0.7, -2.0, 3.5, -6.0];
    let x = c.g.param("x", &fixed_shape(&[9]), DType::F64).unwrap();
    c.feed("x", &fixed_shape(&[9]), DType::F64, &values);
    c.wrt.push(("x".into(), x));
    let y = c.g.gelu(x).unwrap();
    c.check(y, F64);
}

#[test]
fn binary_ops_with_broadcasting() {
    for op in BinaryOp::ALL {
        for b_dims in [[3].as_slice(), &[2, 1], &[2, 3]] {
            let mut c = Check::new();
            let a = match op {
                BinaryOp::Pow => c.var_with("a", &fixed_shape(&[2, 3]), positive),
                _ => c.var("a", &[2, 3]),
            };
            let b = match op {
                BinaryOp::Div => c.var_with("b", &fixed_shape(b_dims), away_from_zero),
                _ => c.var("b", b_dims),
            };
            let y = c.g.binary(op, a, b).unwrap();
            c.check(y, F64);
        }
    }
}

#[test]
fn a_value_used_twice_accumulates_both_gradients() {
    let mut c = Check::new();
    let x = c.var("x", &[4]);
    let square = c.g.mul(x, x).unwrap();
    let e = c.g.exp(x).unwrap();
    let y = c.g.div(square, e).unwrap();
    c.check(y, F64);
}

#[test]
fn select_routes_gradients_by_condition() {
    let mut c = Check::new();
    let cond = c.data(
        "cond",
        &[2, 3],
        DType::Bool,
        &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
    );
    let a = c.var("a", &[2, 3]);
    let b = c.var("b", &[3]);
    let y = c.g.select(cond, a, b).unwrap();
    c.check(y, F64);
}

#[test]
fn cast_between_floats_passes_the_gradient_through() {
    let mut c = Check::new();
    let x = c.var("x", &[5]);
    let narrow = c.g.cast(x, DType::F32).unwrap();
    let y = c.g.cast(narrow, DType::F64).unwrap();
    c.check(y, THROUGH_F32);
}

// ----- reductions -----

#[test]
fn reductions() {
    let cases: [(&[usize], bool); 3] = [(&[1], false), (&[0, 2], true), (&[0, 1, 2], false)];
    for op in ReduceOp::ALL {
        for (axes, keepdim) in cases {
            let mut c = Check::new();
            let x = c.var("x", &[2, 3, 4]);
            let y = c.g.reduce(op, x, axes, keepdim).unwrap();
            c.check(y, F64);
        }
    }
}

#[test]
fn max_shares_the_gradient_between_ties() {
    let mut g = Graph::new();
    let x = g.param("x", &fixed_shape(&[2, 3]), DType::F64).unwrap();
    let m = g.max(x, &[1], false).unwrap();
    let loss = g.sum_all(m).unwrap();
    let (mut g, grads) = grad(&g, loss, &[x]).unwrap();
    g.set_outputs(grads).unwrap();
    let x = Tensor::from_f64(&[1.0, 3.0, 3.0, 5.0, 2.0, 5.0], DType::F64, [2, 3]).unwrap();
    let feeds = HashMap::from([("x".to_string(), x)]);
    let out = evaluate(&g, &Bindings::new(), &feeds, &ReferenceBackend).unwrap();
    assert_eq!(out[0].to_f64_vec(), [0.0, 0.5, 0.5, 0.5, 0.0, 0.5]);
}

// ----- matmul -----

#[test]
fn matmul_plain_batched_and_broadcast() {
    let cases: [(&[usize], &[usize]); 3] = [
        (&[3, 4], &[4, 2]),
        (&[2, 3, 4], &[4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 2]),
    ];
    for (a_dims, b_dims) in cases {
        let mut c = Check::new();
        let a = c.var("a", a_dims);
        let b = c.var("b", b_dims);
        let y = c.g.matmul(a, b).unwrap();
        c.check(y, F64);
    }
}

// ----- views -----

#[test]
fn views() {
    type Build = fn(&mut Graph, Value) -> Value;
    let cases: [(&[usize], Build); 6] = [
        (&[2, 6], |g, x| g.reshape(x, &fixed_shape(&[3, 4])).unwrap()),
        (&[2, 3, 4], |g, x| g.permute(x, &[2, 0, 1]).unwrap()),
        (&[3, 6], |g, x| g.slice(x, 1, 1, 6, 2).unwrap()),
        (&[3, 1], |g, x| {
            g.broadcast_to(x, &fixed_shape(&[2, 3, 4])).unwrap()
        }),
        (&[2, 3], |g, x| {
            let t = g.transpose(x, 0, 1).unwrap();
            g.contiguous(t).unwrap()
        }),
        (&[4, 5], |g, x| {
            let rows = g.slice(x, 0, 0, 4, 3).unwrap();
            g.slice(rows, 1, 2, 5, 1).unwrap()
        }),
    ];
    for (dims, build) in cases {
        let mut c = Check::new();
        let x = c.var("x", dims);
        let y = build(&mut c.g, x);
        c.check(y, F64);
    }
}

// ----- indexing -----

#[test]
fn index_select_and_index_add() {
    let mut c = Check::new();
    let x = c.var("x", &[5, 3]);
    let idx = c.indices("idx", &[4, 0, 4, 2]);
    let picked = c.g.index_select(x, 0, idx).unwrap();
    let src = c.var("src", &[4, 3]);
    let y = c.g.index_add(x, 0, idx, src).unwrap();
    let y = c.g.concat(&[picked, y], 0).unwrap();
    c.check(y, F64);
}

#[test]
fn gather_and_scatter_add() {
    let mut c = Check::new();
    let x = c.var("x", &[3, 4]);
    let index = [3.0, 0.0, 1.0, 1.0, 2.0, 3.0];
    let index = c.data("index", &[3, 2], DType::I64, &index);
    let picked = c.g.gather(x, 1, index).unwrap();
    let src = c.var("src", &[3, 2]);
    let scattered = c.g.scatter_add(x, 1, index, src).unwrap();
    let flat_picked = c.g.reshape(picked, &fixed_shape(&[6])).unwrap();
    let flat_scattered = c.g.reshape(scattered, &fixed_shape(&[12])).unwrap();
    let y = c.g.concat(&[flat_picked, flat_scattered], 0).unwrap();
    c.check(y, F64);
}

#[test]
fn concat_splits_the_gradient() {
    let mut c = Check::new();
    let a = c.var("a", &[2, 3]);
    let b = c.var("b", &[2, 1]);
    let y = c.g.concat(&[a, b, a], 1).unwrap();
    c.check(y, F64);
}

// ----- nn ops -----

#[test]
fn softmax_and_log_softmax() {
    for log in [false, true] {
        let mut c = Check::new();
        let x = c.var("x", &[3, 5]);
        let y = match log {
            true => c.g.log_softmax(x).unwrap(),
            false => c.g.softmax(x).unwrap(),
        };
        c.check(y, F64);
    }
}

#[test]
fn cross_entropy_with_ignored_rows() {
    let mut c = Check::new();
    let logits = c.var("logits", &[4, 5]);
    let targets = c.indices("targets", &[3, -100, 0, 4]);
    let (losses, _) = c.g.cross_entropy(logits, targets, -100).unwrap();
    c.check(losses, THROUGH_F32);
}

/// Cross-entropy's backward op agrees tightly with the gradient of its definition in
/// primitives (`-log_softmax` at the target), whose rules are checked in f64 above.
#[test]
fn cross_entropy_matches_its_definition() {
    let mut c = Check::new();
    let logits = c.var("logits", &[4, 5]);
    let targets = c.data("targets", &[4, 1], DType::I64, &[3.0, 1.0, 0.0, 4.0]);
    let flat_targets = c.g.reshape(targets, &fixed_shape(&[4])).unwrap();
    let weights = c.data("weights", &[4], DType::F32, &[0.5, -1.0, 2.0, 0.25]);
    let (losses, _) = c.g.cross_entropy(logits, flat_targets, -100).unwrap();
    let weighted = c.g.mul(losses, weights).unwrap();
    let fused = c.g.sum_all(weighted).unwrap();
    let log_probs = c.g.log_softmax(logits).unwrap();
    let picked = c.g.gather(log_probs, 1, targets).unwrap();
    let picked = c.g.reshape(picked, &fixed_shape(&[4])).unwrap();
    let weights64 = c.g.cast(weights, DType::F64).unwrap();
    let weighted = c.g.mul(picked, weights64).unwrap();
    let total = c.g.sum_all(weighted).unwrap();
    let defined = c.g.neg(total).unwrap();
    let (mut g, fused_grad) = grad(&c.g, fused, &[logits]).unwrap();
    let (g2, defined_grad) = grad(&g, defined, &[logits]).unwrap();
    g = g2;
    g.set_outputs(vec![fused_grad[0], defined_grad[0]]).unwrap();
    let out = evaluate(&g, &c.bindings, &c.feeds, &ReferenceBackend).unwrap();
    let (fused, defined) = (out[0].to_f64_vec(), out[1].to_f64_vec());
    for (f, d) in fused.iter().zip(&defined) {
        assert!((f - d).abs() <= 1e-6 * d.abs().max(1e-2), "{f} vs {d}");
    }
}

#[test]
fn rms_norm_and_layer_norm() {
    let mut c = Check::new();
    let x = c.var("x", &[3, 4]);
    let w = c.var("w", &[4]);
    let (y, _) = c.g.rms_norm(x, w, 1e-5).unwrap();
    c.check(y, F64_STATS);

    let mut c = Check::new();
    let x = c.var("x", &[3, 4]);
    let w = c.var("w", &[4]);
    let b = c.var("b", &[4]);
    let (y, _, _) = c.g.layer_norm(x, w, b, 1e-5).unwrap();
    c.check(y, F64_STATS);
}

/// `cos`/`sin` tables `[seq, half]` for positions `0..seq`.
fn rope_tables(c: &mut Check, seq: usize, half: usize) -> (Value, Value) {
    let angles: Vec<f64> = (0..seq)
        .flat_map(|p| (0..half).map(move |i| p as f64 / 10f64.powf(i as f64 / half as f64)))
        .collect();
    let cos: Vec<f64> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f64> = angles.iter().map(|a| a.sin()).collect();
    let cos = c.data("cos", &[seq, half], DType::F32, &cos);
    let sin = c.data("sin", &[seq, half], DType::F32, &sin);
    (cos, sin)
}

#[test]
fn rope_both_directions() {
    for inverse in [false, true] {
        let mut c = Check::new();
        let x = c.var("x", &[2, 3, 2, 4]);
        let (cos, sin) = rope_tables(&mut c, 3, 2);
        let y = c.g.rope(x, cos, sin, inverse).unwrap();
        c.check(y, F64);
    }
}

#[test]
fn swiglu() {
    let mut c = Check::new();
    let gate = c.var("gate", &[3, 4]);
    let up = c.var("up", &[3, 4]);
    let y = c.g.swiglu(gate, up).unwrap();
    c.check(y, F64);
}

#[test]
fn attention_causal_grouped_and_unaligned() {
    type Dims = &'static [usize];
    let cases: [(Dims, Dims, Dims, bool); 3] = [
        (&[1, 2, 3, 4], &[1, 2, 3, 4], &[1, 2, 3, 4], false),
        (&[2, 4, 3, 2], &[2, 2, 3, 2], &[2, 2, 3, 3], true),
        (&[1, 2, 2, 4], &[1, 1, 4, 4], &[1, 1, 4, 2], true),
    ];
    for (q, k, v, causal) in cases {
        let mut c = Check::new();
        let (q, k, v) = (c.var("q", q), c.var("k", k), c.var("v", v));
        let (out, _) = c.g.attention(q, k, v, 0.6, causal).unwrap();
        c.check(out, F64_STATS);
    }
}

/// Packed rows of one, two and many documents (length-1 ones included), causal and not;
/// the segment ids get no gradient and the attention's gradient passes through to q, k, v.
#[test]
fn segmented_attention_over_packed_rows() {
    let rows: [(&[i64], bool); 4] = [
        (&[0, 0, 0, 0, 0, 3, 3, 3, 3, 3], true),
        (&[0, 0, 1, 1, 1, 5, 5, 5, 5, 6], true),
        (&[0, 1, 1, 2, 3, 0, 0, 0, 1, 2], true),
        (&[0, 0, 0, 1, 1, 2, 3, 3, 3, 3], false),
    ];
    for (ids, causal) in rows {
        let mut c = Check::new();
        let (q, k, v) = (
            c.var("q", &[2, 4, 5, 3]),
            c.var("k", &[2, 2, 5, 3]),
            c.var("v", &[2, 2, 5, 2]),
        );
        let ids: Vec<f64> = ids.iter().map(|&i| i as f64).collect();
        let segments = c.data("segments", &[2, 5], DType::I64, &ids);
        let (out, _) =
            c.g.segmented_attention((q, k, v), segments, 0.6, causal)
                .unwrap();
        c.check(out, F64_STATS);
    }
}

/// A context-parallel chunk: fewer queries than keys, the ids one per key and the queries at
/// the last key positions (a document crosses the chunk's start, another starts inside it).
#[test]
fn segmented_attention_of_an_end_aligned_query_chunk() {
    let mut c = Check::new();
    let (q, k, v) = (
        c.var("q", &[2, 4, 3, 3]),
        c.var("k", &[2, 2, 5, 3]),
        c.var("v", &[2, 2, 5, 2]),
    );
    let ids = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
    let segments = c.data("segments", &[2, 5], DType::I64, &ids);
    let (out, _) =
        c.g.segmented_attention((q, k, v), segments, 0.6, true)
            .unwrap();
    c.check(out, F64_STATS);
}

/// The log-sum-exp output is differentiable (a ring's merge of partial attentions depends
/// on it; lse is f32 by contract, hence the f32 tolerance): alone (the output's gradient is zero) and together with the output, causal and
/// not, grouped-query and packed.
#[test]
fn attention_log_sum_exp_carries_a_gradient() {
    for causal in [false, true] {
        for lse_only in [true, false] {
            let mut c = Check::new();
            let (q, k, v) = (
                c.var("q", &[2, 4, 3, 2]),
                c.var("k", &[2, 2, 3, 2]),
                c.var("v", &[2, 2, 3, 3]),
            );
            let (out, lse) = c.g.attention(q, k, v, 0.6, causal).unwrap();
            let lse = c.g.cast(lse, DType::F64).unwrap();
            let column = c.g.reshape(lse, &fixed_shape(&[2, 4, 3, 1])).unwrap();
            let y = match lse_only {
                true => column,
                false => c.g.mul(out, column).unwrap(),
            };
            c.check(y, THROUGH_F32);
        }
    }
    let mut c = Check::new();
    let (q, k, v) = (
        c.var("q", &[2, 4, 5, 3]),
        c.var("k", &[2, 2, 5, 3]),
        c.var("v", &[2, 2, 5, 2]),
    );
    let ids = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
    let segments = c.data("segments", &[2, 5], DType::I64, &ids);
    let (out, lse) =
        c.g.segmented_attention((q, k, v), segments, 0.6, true)
            .unwrap();
    let lse = c.g.cast(lse, DType::F64).unwrap();
    let column = c.g.reshape(lse, &fixed_shape(&[2, 4, 5, 1])).unwrap();
    let y = c.g.plus(out, column).unwrap();
    c.check(y, THROUGH_F32);
}

/// A chunk of queries against an earlier, non-adjacent chunk of keys: the keys' ids then
/// the queries' own (`[b, sk + sq]`), every query seeing at least one key, out and lse.
#[test]
fn segmented_attention_with_the_queries_own_ids() {
    let mut c = Check::new();
    let (q, k, v) = (
        c.var("q", &[2, 4, 3, 3]),
        c.var("k", &[2, 2, 4, 3]),
        c.var("v", &[2, 2, 4, 2]),
    );
    let ids = [
        0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, //
        0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0,
    ];
    let segments = c.data("segments", &[2, 7], DType::I64, &ids);
    let (out, lse) =
        c.g.segmented_attention((q, k, v), segments, 0.6, false)
            .unwrap();
    let lse = c.g.cast(lse, DType::F64).unwrap();
    let column = c.g.reshape(lse, &fixed_shape(&[2, 4, 3, 1])).unwrap();
    let y = c.g.mul(out, column).unwrap();
    c.check(y, THROUGH_F32);
}

// ----- composite subgraphs -----

#[test]
fn attention_block() {
    let (batch, seq, heads, kv_heads, head_dim) = (2, 4, 2, 1, 4);
    let model = heads * head_dim;
    let mut c = Check::new();
    c.max_probes = 12;
    let x = c.var("x", &[batch, seq, model]);
    let wq = c.var("wq", &[model, heads * head_dim]);
    let wk = c.var("wk", &[model, kv_heads * head_dim]);
    let wv = c.var("wv", &[model, kv_heads * head_dim]);
    let wo = c.var("wo", &[heads * head_dim, model]);
    let (cos, sin) = rope_tables(&mut c, seq, head_dim / 2);
    let mut project = |w: Value, h: usize, rotate: bool| {
        let p = c.g.matmul(x, w).unwrap();
        let p =
            c.g.reshape(p, &fixed_shape(&[batch, seq, h, head_dim]))
                .unwrap();
        let p = match rotate {
            true => c.g.rope(p, cos, sin, false).unwrap(),
            false => p,
        };
        c.g.permute(p, &[0, 2, 1, 3]).unwrap()
    };
    let (q, k, v) = (
        project(wq, heads, true),
        project(wk, kv_heads, true),
        project(wv, kv_heads, false),
    );
    let scale = 1.0 / (head_dim as f64).sqrt();
    let (out, _) = c.g.attention(q, k, v, scale, true).unwrap();
    let out = c.g.permute(out, &[0, 2, 1, 3]).unwrap();
    let out =
        c.g.reshape(out, &fixed_shape(&[batch, seq, model]))
            .unwrap();
    let y = c.g.matmul(out, wo).unwrap();
    let y = c.g.plus(y, x).unwrap();
    c.check(y, F64_STATS);
}

#[test]
fn swiglu_mlp_with_rms_norm() {
    let (rows, model, hidden) = (3, 6, 8);
    let mut c = Check::new();
    c.max_probes = 16;
    let x = c.var("x", &[rows, model]);
    let norm = c.var_with("norm", &fixed_shape(&[model]), |v| 1.0 + 0.1 * v);
    let w1 = c.var("w1", &[model, hidden]);
    let w3 = c.var("w3", &[model, hidden]);
    let w2 = c.var("w2", &[hidden, model]);
    let (h, _) = c.g.rms_norm(x, norm, 1e-6).unwrap();
    let gate = c.g.matmul(h, w1).unwrap();
    let up = c.g.matmul(h, w3).unwrap();
    let act = c.g.swiglu(gate, up).unwrap();
    let down = c.g.matmul(act, w2).unwrap();
    let y = c.g.plus(down, x).unwrap();
    c.check(y, F64_STATS);
}

#[test]
fn embedding_to_cross_entropy_over_a_vocabulary() {
    let (vocab, model) = (7, 4);
    let mut c = Check::new();
    c.max_probes = 16;
    let embedding = c.var("embedding", &[vocab, model]);
    let head = c.var("head", &[model, vocab]);
    let ids = c.indices("ids", &[1, 6, 1, 0, 3]);
    let targets = c.indices("targets", &[6, 1, -100, 3, 5]);
    let h = c.g.index_select(embedding, 0, ids).unwrap();
    let logits = c.g.matmul(h, head).unwrap();
    let (losses, _) = c.g.cross_entropy(logits, targets, -100).unwrap();
    let mean = c.g.mean(losses, &[0], false).unwrap();
    c.check(mean, THROUGH_F32);
}

#[test]
fn symbolic_batch_dims_evaluate_under_bindings() {
    let mut c = Check::new();
    c.bindings.insert("batch".into(), 3);
    let batch = Dim::sym("batch");
    let x = c.var_with("x", &[batch.clone(), Dim::fixed(4)], |v| v);
    let w = c.var("w", &[4, 2]);
    let y = c.g.matmul(x, w).unwrap();
    let y = c.g.tanh(y).unwrap();
    // Mean over the symbolic dim needs the element count as a graph value.
    let m = c.g.mean(y, &[0], true).unwrap();
    let centred = c.g.sub(y, m).unwrap();
    let flat = c.g.reshape(centred, &[batch.mul(&Dim::fixed(2))]).unwrap();
    c.check(flat, F64);
}

// ----- structure and errors -----

#[test]
fn unreachable_and_non_differentiable_paths_give_zeros() {
    let mut g = Graph::new();
    let x = g.param("x", &fixed_shape(&[2, 3]), DType::F64).unwrap();
    let unused = g.param("unused", &fixed_shape(&[4]), DType::F32).unwrap();
    let top = g.argmax(x, 1, false).unwrap();
    let top = g.cast(top, DType::F64).unwrap();
    let zero = g.scalar(0.0, DType::F64).unwrap();
    let positive = g.compare(CompareOp::Gt, x, zero).unwrap();
    let positive = g.cast(positive, DType::F64).unwrap();
    let a = g.sum_all(top).unwrap();
    let b = g.sum_all(positive).unwrap();
    let loss = g.plus(a, b).unwrap();
    let (g, grads) = grad(&g, loss, &[x, unused]).unwrap();
    g.verify().unwrap();
    for (d, shape, dtype) in [
        (grads[0], [2, 3].as_slice(), DType::F64),
        (grads[1], &[4], DType::F32),
    ] {
        let expected = Op::Full {
            value: Float::new(0.0),
            shape: fixed_shape(shape),
            dtype,
        };
        assert_eq!(g.node(d.node).op, expected);
    }
}

#[test]
fn backward_nodes_are_appended_and_the_original_is_untouched() {
    let mut g = Graph::new();
    let x = g.param("x", &fixed_shape(&[3, 4]), DType::F32).unwrap();
    let w = g.param("w", &fixed_shape(&[4, 2]), DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let loss = g.sum_all(y).unwrap();
    let before = g.to_text();
    let (backward, grads) = grad(&g, loss, &[w]).unwrap();
    assert_eq!(g.to_text(), before);
    assert!(backward.len() > g.len());
    for id in backward.ids().take(g.len()) {
        assert_eq!(backward.node(id), g.node(id));
    }
    assert_eq!(backward.value_type(grads[0]), g.value_type(w));
    // Only the gradient that was asked for is built: no matmul for dx.
    let matmuls = backward
        .nodes()
        .iter()
        .filter(|n| n.op == Op::MatMul)
        .count();
    assert_eq!(matmuls, 2);
}

#[test]
fn invalid_requests_are_errors() {
    let mut g = Graph::new();
    let x = g.param("x", &fixed_shape(&[3]), DType::F32).unwrap();
    let idx = g.input("idx", &fixed_shape(&[3]), DType::I64).unwrap();
    let loss = g.sum_all(x).unwrap();
    let ghost = Value::new(luoshu_graph::NodeId(99), 0);
    let bad_output = Value::new(loss.node, 1);
    let int_loss = g.sum_all(idx).unwrap();
    let unknown = |r: luoshu_graph::Result<(Graph, Vec<Value>)>| match r {
        Err(err @ Error::GradOfUnknownValue { role, value }) => {
            assert!(
                err.to_string().contains("not a value of this graph"),
                "{err}"
            );
            (role, value)
        }
        other => panic!("expected GradOfUnknownValue, got {other:?}"),
    };
    assert_eq!(unknown(grad(&g, ghost, &[x])), ("loss", ghost));
    assert_eq!(unknown(grad(&g, bad_output, &[x])), ("loss", bad_output));
    assert_eq!(unknown(grad(&g, loss, &[ghost])), ("wrt", ghost));
    let not_float = |r: luoshu_graph::Result<(Graph, Vec<Value>)>| match r {
        Err(err @ Error::NotDifferentiable { role, value, .. }) => {
            assert!(err.to_string().contains("only float values"), "{err}");
            (role, value)
        }
        other => panic!("expected NotDifferentiable, got {other:?}"),
    };
    assert_eq!(not_float(grad(&g, int_loss, &[x])), ("loss", int_loss));
    assert_eq!(not_float(grad(&g, loss, &[idx])), ("wrt", idx));
}

#[test]
fn second_order_and_statistic_outputs_are_refused() {
    let mut g = Graph::new();
    let x = g.param("x", &fixed_shape(&[2, 4]), DType::F32).unwrap();
    let w = g.param("w", &fixed_shape(&[4]), DType::F32).unwrap();
    let (out, rstd) = g.rms_norm(x, w, 1e-5).unwrap();
    let loss = g.sum_all(out).unwrap();
    let (mut g2, grads) = grad(&g, loss, &[x]).unwrap();
    let second = g2.sum_all(grads[0]).unwrap();
    match grad(&g2, second, &[x]) {
        Err(Error::Node { op, detail, .. }) => {
            assert_eq!(op, "rms_norm_backward");
            assert!(detail.contains("second-order"), "{detail}");
        }
        other => panic!("expected a node error, got {other:?}"),
    }

    let stat_loss = g.sum_all(rstd).unwrap();
    match grad(&g, stat_loss, &[x]) {
        Err(Error::Node { op, detail, .. }) => {
            assert_eq!(op, "rms_norm");
            assert!(detail.contains("saved statistic"), "{detail}");
        }
        other => panic!("expected a node error, got {other:?}"),
    }
}
