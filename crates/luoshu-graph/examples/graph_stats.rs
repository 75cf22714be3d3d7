//! Graph-compiler statistics on a training graph: a 4-layer pre-norm transformer stack
//! (d 256, 4 heads, seq 256, batch 8, vocabulary 512) written from primitives (softmax,
//! RMSNorm, attention and cross-entropy spelled out), differentiated, then compiled two ways:
//!
//! * baseline: autodiff of the primitive graph, no passes;
//! * optimized: the forward pipeline (fold, simplify, DCE, pattern fusion) before autodiff,
//!   then the default pipeline (… elementwise fusion, DCE) on the training graph.
//!
//! Prints kernel launches, planned peak memory vs the sum of all intermediate buffers, and
//! compile time. Run: `cargo run --release -p luoshu-graph --example graph_stats`.

#[path = "../tests/primitives/mod.rs"]
mod primitives;

use luoshu_graph::memory::{plan_memory, MemoryPlan, StepKind};
use luoshu_graph::passes::{optimize, optimize_forward};
use luoshu_graph::schedule::schedule;
use luoshu_graph::{fixed_shape, grad, Bindings, Graph, Result, Value};
use luoshu_tensor::DType;
use std::time::{Duration, Instant};

const LAYERS: usize = 4;
const D: usize = 256;
const HEADS: usize = 4;
const SEQ: usize = 256;
const BATCH: usize = 8;
const VOCAB: usize = 512;

fn param(g: &mut Graph, name: String, dims: &[usize]) -> Result<Value> {
    g.param(&name, &fixed_shape(dims), DType::F32)
}

/// `[b, s, d]` → `[b, heads, s, d / heads]`.
fn split_heads(g: &mut Graph, x: Value) -> Result<Value> {
    let x = g.reshape(x, &fixed_shape(&[BATCH, SEQ, HEADS, D / HEADS]))?;
    g.permute(x, &[0, 2, 1, 3])
}

fn merge_heads(g: &mut Graph, x: Value) -> Result<Value> {
    let x = g.permute(x, &[0, 2, 1, 3])?;
    g.reshape(x, &fixed_shape(&[BATCH, SEQ, D]))
}

/// The forward graph; returns it, the loss and the parameters.
fn transformer() -> Result<(Graph, Value, Vec<Value>)> {
    let mut g = Graph::new();
    let tokens = g.input("tokens", &fixed_shape(&[BATCH * SEQ]), DType::I64)?;
    let targets = g.input("targets", &fixed_shape(&[BATCH * SEQ]), DType::I64)?;
    let embed = param(&mut g, "embed".into(), &[VOCAB, D])?;
    let mut params = vec![embed];
    let x = g.index_select(embed, 0, tokens)?;
    let mut x = g.reshape(x, &fixed_shape(&[BATCH, SEQ, D]))?;
    for l in 0..LAYERS {
        let mut p = |name: &str, dims: &[usize]| -> Result<Value> {
            let v = param(&mut g, format!("l{l}.{name}"), dims)?;
            params.push(v);
            Ok(v)
        };
        let (n1, wq, wk, wv, wo) = (
            p("n1", &[D])?,
            p("wq", &[D, D])?,
            p("wk", &[D, D])?,
            p("wv", &[D, D])?,
            p("wo", &[D, D])?,
        );
        let (n2, w1, w3, w2) = (
            p("n2", &[D])?,
            p("w1", &[D, 4 * D])?,
            p("w3", &[D, 4 * D])?,
            p("w2", &[4 * D, D])?,
        );
        let h = primitives::rms_norm(&mut g, x, n1, 1e-5)?;
        let q = g.matmul(h, wq)?;
        let q = split_heads(&mut g, q)?;
        let k = g.matmul(h, wk)?;
        let k = split_heads(&mut g, k)?;
        let v = g.matmul(h, wv)?;
        let v = split_heads(&mut g, v)?;
        let a = primitives::attention(&mut g, q, k, v, true)?;
        let a = merge_heads(&mut g, a)?;
        let o = g.matmul(a, wo)?;
        x = g.plus(x, o)?;
        let h = primitives::rms_norm(&mut g, x, n2, 1e-5)?;
        let gate = g.matmul(h, w1)?;
        let up = g.matmul(h, w3)?;
        let act = g.silu(gate)?;
        let act = g.mul(act, up)?;
        let m = g.matmul(act, w2)?;
        x = g.plus(x, m)?;
    }
    let nf = param(&mut g, "norm".into(), &[D])?;
    let head = param(&mut g, "head".into(), &[D, VOCAB])?;
    params.extend([nf, head]);
    let h = primitives::rms_norm(&mut g, x, nf, 1e-5)?;
    let logits = g.matmul(h, head)?;
    let logits = g.reshape(logits, &fixed_shape(&[BATCH * SEQ, VOCAB]))?;
    let losses = primitives::cross_entropy(&mut g, logits, targets)?;
    let total = g.sum_all(losses)?;
    let loss = g.mul_scalar(total, 1.0 / (BATCH * SEQ) as f64)?;
    g.set_outputs(vec![loss])?;
    Ok((g, loss, params))
}

/// Forward + backward graph with the loss and every gradient as outputs.
fn training_graph(g: &Graph, loss: Value, params: &[Value]) -> Result<Graph> {
    let (mut full, grads) = grad(g, loss, params)?;
    let mut outputs = vec![loss];
    outputs.extend(grads);
    full.set_outputs(outputs)?;
    Ok(full)
}

/// The forward graph's loss and parameters looked up again after a rewrite.
fn rebind(g: &Graph, params: &[Value], old: &Graph) -> Result<Vec<Value>> {
    params
        .iter()
        .map(|p| {
            let name = old.node(p.node).op.name();
            let name = name.trim_start_matches("param:");
            g.leaf(name)
                .map(Value::from)
                .ok_or_else(|| luoshu_graph::Error::Invalid {
                    detail: format!("parameter {name} lost by the forward pipeline"),
                })
        })
        .collect()
}

fn plan(g: &Graph) -> Result<MemoryPlan> {
    let bindings = Bindings::new();
    let order = schedule(g, &bindings)?;
    plan_memory(g, &order, &bindings)
}

fn launches(p: &MemoryPlan) -> usize {
    p.kinds.iter().filter(|k| **k == StepKind::Compute).count()
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(name: &str, g: &Graph, p: &MemoryPlan, time: Duration) {
    println!(
        "{name:<10} {:>6} nodes {:>5} kernel launches  peak {:>8.1} MiB  intermediates {:>8.1} MiB  ({} in place)  compile {:>6.1} ms",
        g.len(),
        launches(p),
        mib(p.report.arena_bytes),
        mib(p.report.intermediate_bytes),
        p.report.in_place,
        time.as_secs_f64() * 1e3
    );
}

fn main() -> Result<()> {
    let (fwd, loss, params) = transformer()?;

    let start = Instant::now();
    let base = training_graph(&fwd, loss, &params)?;
    let base_plan = plan(&base)?;
    let base_time = start.elapsed();

    let start = Instant::now();
    let (opt_fwd, fwd_stats) = optimize_forward(&fwd)?;
    let opt_loss = opt_fwd.outputs()[0];
    let opt_params = rebind(&opt_fwd, &params, &fwd)?;
    let train = training_graph(&opt_fwd, opt_loss, &opt_params)?;
    let autodiff_done = start.elapsed();
    let (opt, stats) = optimize(&train)?;
    let passes_done = start.elapsed();
    let opt_plan = plan(&opt)?;
    let opt_time = start.elapsed();

    println!("transformer: {LAYERS} layers, d {D}, {HEADS} heads, seq {SEQ}, batch {BATCH}, vocab {VOCAB} (f32)");
    for s in fwd_stats.iter().chain(&stats) {
        println!("  {s}");
    }
    report("baseline", &base, &base_plan, base_time);
    report("optimized", &opt, &opt_plan, opt_time);
    println!(
        "optimized compile: forward passes + autodiff {:.1} ms, training-graph passes {:.1} ms, schedule + memory plan {:.1} ms",
        autodiff_done.as_secs_f64() * 1e3,
        (passes_done - autodiff_done).as_secs_f64() * 1e3,
        (opt_time - passes_done).as_secs_f64() * 1e3
    );
    Ok(())
}
