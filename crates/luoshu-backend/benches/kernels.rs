//! Criterion benchmarks of the CPU kernels: f32 GEMM at 1024³ and fused causal attention
//! forward+backward (batch 8, 4 heads, seq 1024, head dim 64). `luoshu bench gemm` and
//! `luoshu bench attention` compare the same kernels with their baselines.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::AttentionOpts;
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

fn attention_forward_backward(c: &mut Criterion) {
    let ops = Ops::new(&CpuBackend);
    let dims = [8, 4, 1024, 64];
    let (q, k, v, grad_out) = (
        random(&dims, 3),
        random(&dims, 4),
        random(&dims, 5),
        random(&dims, 6),
    );
    let opts = AttentionOpts {
        scale: 0.125,
        causal: true,
    };
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    group.bench_function("causal f32 b8 h4 s1024 d64 fwd+bwd", |bench| {
        bench.iter(|| {
            let (out, lse) = ops.attention(&q, &k, &v, None, opts).unwrap();
            ops.attention_backward(&q, &k, &v, None, &out, &lse, &grad_out, opts)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, gemm_1024, attention_forward_backward);
criterion_main!(benches);
