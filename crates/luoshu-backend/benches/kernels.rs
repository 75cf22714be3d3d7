//! Criterion benchmarks of the CPU kernels: f32 GEMM at 1024³, fused causal attention
//! forward+backward (batch 8, 4 heads, seq 1024, head dim 64), and packed attention: one
//! row of 4096 tokens holding several documents against one document of the same length
//! (the baseline, same run). `luoshu bench gemm` and `luoshu bench attention` compare the
//! first two with their baselines.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{AttentionInputs, AttentionOpts, AttentionOutputGrads};
use luoshu_backend::{Ops, Tensor};
use luoshu_tensor::rng;

fn random(dims: &[usize], stream: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|i| rng::normal(1, stream, i as u64)).collect();
    Tensor::from_vec(data, dims).unwrap()
}

fn gemm_1024(c: &mut Criterion) {
    let ops = Ops::new(&CpuBackend);
    let n = 1024;
    let (a, b) = (random(&[n, n], 1), random(&[n, n], 2));
    let out = ops.matmul(&a, &b).unwrap();
    let mut group = c.benchmark_group("gemm");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    group.bench_function("f32 1024x1024x1024", |bench| {
        bench.iter(|| ops.matmul_into(&a, &b, &out).unwrap())
    });
    group.finish();
}

/// Causal attention of random `[b, h, s, d]` heads, forward then backward, for one
/// segment layout (`None`: one document per row).
struct AttentionCase {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grad_out: Tensor,
}

impl AttentionCase {
    fn new(dims: [usize; 4]) -> Self {
        AttentionCase {
            q: random(&dims, 3),
            k: random(&dims, 4),
            v: random(&dims, 5),
            grad_out: random(&dims, 6),
        }
    }

    fn forward_backward(&self, ops: &Ops, segments: Option<&Tensor>) {
        let opts = AttentionOpts {
            scale: 0.125,
            causal: true,
        };
        let inputs = AttentionInputs::new(&self.q, &self.k, &self.v).with_segments(segments);
        let (out, lse) = ops.attention(inputs, opts).unwrap();
        let output_grads = AttentionOutputGrads::new(&out, &lse, &self.grad_out);
        ops.attention_backward(inputs, opts, output_grads).unwrap();
    }
}

fn attention_forward_backward(c: &mut Criterion) {
    let ops = Ops::new(&CpuBackend);
    let case = AttentionCase::new([8, 4, 1024, 64]);
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    group.bench_function("causal f32 b8 h4 s1024 d64 fwd+bwd", |bench| {
        bench.iter(|| case.forward_backward(&ops, None))
    });
    group.finish();
}

/// Segment ids of one row packed from documents of these lengths.
fn segments(documents: &[usize]) -> Tensor {
    let ids: Vec<i64> = documents
        .iter()
        .enumerate()
        .flat_map(|(doc, &len)| std::iter::repeat_n(doc as i64, len))
        .collect();
    let len = ids.len();
    Tensor::from_vec(ids, [1, len].as_slice()).unwrap()
}

fn packed_attention_forward_backward(c: &mut Criterion) {
    let ops = Ops::new(&CpuBackend);
    let case = AttentionCase::new([1, 4, 4096, 64]);
    let layouts: [(&str, Option<Tensor>); 3] = [
        ("one document of 4096", None),
        ("8 documents of 512", Some(segments(&[512; 8]))),
        (
            "10 documents of 2048..32",
            Some(segments(&[2048, 1024, 512, 256, 128, 64, 32, 16, 8, 8])),
        ),
    ];
    let mut group = c.benchmark_group("packed attention f32 h4 s4096 d64 fwd+bwd");
    group.sample_size(10);
    for (name, segments) in &layouts {
        let segments = segments.as_ref();
        group.bench_function(*name, |bench| {
            bench.iter(|| case.forward_backward(&ops, segments))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    gemm_1024,
    attention_forward_backward,
    packed_attention_forward_backward
);
criterion_main!(benches);
