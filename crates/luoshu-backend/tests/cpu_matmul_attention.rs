//! The CPU matmul against the reference backend over layouts (transposes by strides,
//! broadcast batches, slices, empty dims) and dtypes; the fused CPU attention against a
//! naive f64 attention written here (forward) and central finite differences of it
//! (backward), over grouped-query heads, causal masks with sq != sk, odd head dims,
//! several tiles, strided views and bf16; packed rows against each document alone and,
//! for random document layouts, against the reference backend.
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{AttentionInputs, AttentionOpts, AttentionOutputGrads};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{DType, Ops, Tensor};
use luoshu_tensor::rng;

const CPU: CpuBackend = CpuBackend;

fn randn(n: usize, stream: u64) -> Vec<f64> {
    (0..n)
        .map(|i| rng::normal(7, stream, i as u64) as f64)
        .collect()
}

fn tensor(values: &[f64], dtype: DType, dims: &[usize]) -> Tensor {
    Tensor::from_f64(values, dtype, dims).unwrap()
}

fn random(dtype: DType, dims: &[usize], stream: u64) -> Tensor {
    tensor(&randn(dims.iter().product(), stream), dtype, dims)
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: element count");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol * (1.0 + w.abs())
        };
        assert!(ok, "{what}[{i}]: got {g}, want {w} (tol {tol})");
    }
}

// ----- matmul -----

/// How one operand is laid out before the product sees it.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Contiguous,
    /// Stored as its transpose and viewed back through swapped strides.
    Transposed,
    /// Every other column of a twice-as-wide tensor (non-unit column stride, offset 1).
    EveryOtherColumn,
    /// One row broadcast over all rows (row stride 0).
    BroadcastRow,
}

fn operand(
    dtype: DType,
    batch: &[usize],
    rows: usize,
    cols: usize,
    form: Form,
    stream: u64,
) -> Tensor {
    let dims = |r: usize, c: usize| [batch, &[r, c]].concat();
    let last = batch.len();
    match form {
        Form::Contiguous => random(dtype, &dims(rows, cols), stream),
        Form::Transposed => random(dtype, &dims(cols, rows), stream)
            .transpose(last, last + 1)
            .unwrap(),
        Form::EveryOtherColumn => random(dtype, &dims(rows, 2 * cols), stream)
            .slice(last + 1, 1, 2 * cols, 2)
            .unwrap(),
        Form::BroadcastRow => random(dtype, &dims(1, cols), stream)
            .broadcast_to(dims(rows, cols))
            .unwrap(),
    }
}

fn matmul_tol(dtype: DType, k: usize) -> f64 {
    match dtype {
        DType::F64 => 1e-12 * k as f64,
        DType::F32 => 2e-6 * k as f64,
        _ => 2e-2,
    }
}

/// `(a batch, b batch, m, k, n, a form, b form)`; unequal batches broadcast.
type MatmulCase = (
    &'static [usize],
    &'static [usize],
    usize,
    usize,
    usize,
    Form,
    Form,
);

#[test]
fn matmul_matches_reference_over_layouts_and_dtypes() {
    use Form::*;
    let cases: &[MatmulCase] = &[
        (&[], &[], 7, 5, 9, Contiguous, Contiguous),
        (&[3], &[3], 17, 33, 19, Transposed, Contiguous),
        (&[2, 3], &[1, 3], 6, 4, 5, Contiguous, Transposed),
        (&[4], &[], 9, 11, 3, EveryOtherColumn, Transposed),
        (&[2], &[2], 5, 6, 7, BroadcastRow, EveryOtherColumn),
        // Many small matrices: parallel over the batch.
        (&[64], &[64], 8, 8, 8, Transposed, Transposed),
        // Large products: gemm's own threads.
        (&[], &[], 160, 300, 120, Transposed, Transposed),
        (&[2], &[2], 130, 130, 131, Contiguous, Transposed),
        (&[2], &[2], 0, 4, 3, Contiguous, Contiguous),
        (&[2], &[2], 3, 4, 0, Contiguous, Contiguous),
    ];
    let (cpu, reference) = (Ops::new(&CPU), Ops::new(&ReferenceBackend));
    for dtype in [DType::F64, DType::F32, DType::BF16, DType::F16] {
        for (i, &(ba, bb, m, k, n, fa, fb)) in cases.iter().enumerate() {
            let a = operand(dtype, ba, m, k, fa, 2 * i as u64);
            let b = operand(dtype, bb, k, n, fb, 2 * i as u64 + 1);
            let got = cpu.matmul(&a, &b).unwrap();
            let want = reference.matmul(&a, &b).unwrap();
            assert_eq!(got.dims(), want.dims(), "{dtype} case {i}");
            let what = format!("{dtype} case {i}");
            assert_close(
                &what,
                &got.to_f64_vec(),
                &want.to_f64_vec(),
                matmul_tol(dtype, k),
            );
        }
    }
}

#[test]
fn matmul_with_empty_contraction_writes_zeros() {
    for dtype in [DType::F64, DType::F32, DType::BF16, DType::F16] {
        let a = random(dtype, &[2, 4, 0], 1);
        let b = random(dtype, &[2, 0, 3], 2);
        let out = tensor(&[5.0; 24], dtype, &[2, 4, 3]);
        Ops::new(&CPU).matmul_into(&a, &b, &out).unwrap();
        assert_eq!(out.to_f64_vec(), vec![0.0; 24], "{dtype}");
    }
}

#[test]
fn matmul_writes_only_its_output_region() {
    // The output is a window in the middle of a larger buffer.
    let buffer = tensor(&[9.0; 40], DType::F32, &[40]);
    let out = buffer.narrow(0, 10, 12).unwrap().reshape([3, 4]).unwrap();
    let a = random(DType::F32, &[3, 2], 3);
    let b = random(DType::F32, &[2, 4], 4);
    Ops::new(&CPU).matmul_into(&a, &b, &out).unwrap();
    let all = buffer.to_f64_vec();
    assert!(all[..10].iter().chain(&all[22..]).all(|&x| x == 9.0));
    let want = Ops::new(&ReferenceBackend).matmul(&a, &b).unwrap();
    assert_close("window", &out.to_f64_vec(), &want.to_f64_vec(), 1e-5);
}

// ----- attention -----

#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    hq: usize,
    hkv: usize,
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
}

impl Dims {
    fn q(&self) -> [usize; 4] {
        [self.b, self.hq, self.sq, self.d]
    }
    fn k(&self) -> [usize; 4] {
        [self.b, self.hkv, self.sk, self.d]
    }
    fn v(&self) -> [usize; 4] {
        [self.b, self.hkv, self.sk, self.dv]
    }
    fn out(&self) -> [usize; 4] {
        [self.b, self.hq, self.sq, self.dv]
    }
}

/// Plain attention in f64: `(out, lse)`; a row that sees no key gives zeros and `-inf`.
fn naive_attention(
    dims: Dims,
    (q, k, v): (&[f64], &[f64], &[f64]),
    opts: AttentionOpts,
) -> (Vec<f64>, Vec<f64>) {
    let Dims {
        b,
        hq,
        hkv,
        sq,
        sk,
        d,
        dv,
    } = dims;
    let scale = opts.scale as f64;
    let (mut out, mut lse) = (vec![0.0; b * hq * sq * dv], vec![0.0; b * hq * sq]);
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / (hq / hkv);
            for i in 0..sq {
                let row = (bi * hq + h) * sq + i;
                let visible = |j: usize| !opts.causal || j + sq <= i + sk;
                let scores: Vec<f64> = (0..sk)
                    .map(|j| {
                        let kr = ((bi * hkv + kh) * sk + j) * d;
                        scale * (0..d).map(|c| q[row * d + c] * k[kr + c]).sum::<f64>()
                    })
                    .collect();
                let max = (0..sk)
                    .filter(|&j| visible(j))
                    .map(|j| scores[j])
                    .fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    lse[row] = f64::NEG_INFINITY;
                    continue;
                }
                let p: Vec<f64> = (0..sk)
                    .map(|j| {
                        if visible(j) {
                            (scores[j] - max).exp()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let sum: f64 = p.iter().sum();
                lse[row] = max + sum.ln();
                for c in 0..dv {
                    out[row * dv + c] = (0..sk)
                        .map(|j| p[j] * v[((bi * hkv + kh) * sk + j) * dv + c])
                        .sum::<f64>()
                        / sum;
                }
            }
        }
    }
    (out, lse)
}

/// A `[b, h, s, dim]` input, either contiguous or a permuted view of a `[b, s, h, dim]`
/// tensor (strided, last dim contiguous).
fn heads_input(dtype: DType, dims: [usize; 4], strided: bool, stream: u64) -> Tensor {
    if strided {
        random(dtype, &[dims[0], dims[2], dims[1], dims[3]], stream)
            .permute(&[0, 2, 1, 3])
            .unwrap()
    } else {
        random(dtype, &dims, stream)
    }
}

struct Case {
    dims: Dims,
    causal: bool,
    strided: bool,
    dtype: DType,
}

fn cases() -> Vec<Case> {
    let small = |sq, sk| Dims {
        b: 2,
        hq: 4,
        hkv: 2,
        sq,
        sk,
        d: 5,
        dv: 3,
    };
    // Several query and key tiles (of 128), neither seq a multiple of the tile.
    let tiled = Dims {
        b: 1,
        hq: 2,
        hkv: 1,
        sq: 150,
        sk: 260,
        d: 5,
        dv: 4,
    };
    let mut cases = Vec::new();
    for dtype in [DType::F64, DType::F32] {
        for causal in [false, true] {
            for dims in [small(5, 7), small(7, 4), tiled] {
                cases.push(Case {
                    dims,
                    causal,
                    strided: false,
                    dtype,
                });
            }
            cases.push(Case {
                dims: small(6, 6),
                causal,
                strided: true,
                dtype,
            });
        }
    }
    for causal in [false, true] {
        cases.push(Case {
            dims: small(5, 9),
            causal,
            strided: true,
            dtype: DType::BF16,
        });
    }
    cases
}

fn opts_for(case: &Case) -> AttentionOpts {
    AttentionOpts {
        scale: 1.0 / (case.dims.d as f32).sqrt(),
        causal: case.causal,
    }
}

fn inputs(case: &Case) -> (Tensor, Tensor, Tensor) {
    let (dims, dt, st) = (case.dims, case.dtype, case.strided);
    (
        heads_input(dt, dims.q(), st, 11),
        heads_input(dt, dims.k(), st, 12),
        heads_input(dt, dims.v(), st, 13),
    )
}

fn forward_tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-6,
        DType::F32 => 2e-5,
        _ => 2e-2,
    }
}

#[test]
fn attention_forward_matches_naive() {
    let ops = Ops::new(&CPU);
    for case in cases() {
        let (q, k, v) = inputs(&case);
        let opts = opts_for(&case);
        let (out, lse) = ops
            .attention(AttentionInputs::new(&q, &k, &v), opts)
            .unwrap();
        let (qv, kv, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
        let (want_out, want_lse) = naive_attention(case.dims, (&qv, &kv, &vv), opts);
        let what = format!("{:?} causal={} {}", case.dims, case.causal, case.dtype);
        let tol = forward_tol(case.dtype);
        assert_close(&format!("out {what}"), &out.to_f64_vec(), &want_out, tol);
        assert_close(
            &format!("lse {what}"),
            &lse.to_f64_vec(),
            &want_lse,
            tol.max(1e-6),
        );
    }
}

/// At most this many elements of each input are checked by finite differences.
const FD_SAMPLES: usize = 48;

/// `∂(Σ out·w)/∂x[i]` for sampled `i` by central differences of the naive attention.
fn finite_difference_grads(
    dims: Dims,
    inputs: [&[f64]; 3],
    w: &[f64],
    opts: AttentionOpts,
    which: usize,
) -> Vec<(usize, f64)> {
    let eps = 1e-6;
    let loss = |x: &[f64]| {
        let mut args = inputs;
        args[which] = x;
        let (out, _) = naive_attention(dims, (args[0], args[1], args[2]), opts);
        out.iter().zip(w).map(|(o, w)| o * w).sum::<f64>()
    };
    let n = inputs[which].len();
    let samples = n.min(FD_SAMPLES);
    (0..samples)
        .map(|s| {
            let i = s * n / samples;
            let mut x = inputs[which].to_vec();
            x[i] += eps;
            let up = loss(&x);
            x[i] -= 2.0 * eps;
            let down = loss(&x);
            (i, (up - down) / (2.0 * eps))
        })
        .collect()
}

fn grad_tol(dtype: DType) -> f64 {
    match dtype {
        // The saved lse is f32 by contract, which bounds the agreement near 1e-7.
        DType::F64 => 1e-6,
        DType::F32 => 1e-4,
        _ => 5e-2,
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let ops = Ops::new(&CPU);
    for case in cases() {
        let (q, k, v) = inputs(&case);
        let opts = opts_for(&case);
        let (out, lse) = ops
            .attention(AttentionInputs::new(&q, &k, &v), opts)
            .unwrap();
        let grad_out = random(case.dtype, &case.dims.out(), 14);
        let grads = ops
            .attention_backward(
                AttentionInputs::new(&q, &k, &v),
                opts,
                AttentionOutputGrads::new(&out, &lse, &grad_out),
            )
            .unwrap();
        let values = [q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec()];
        let w = grad_out.to_f64_vec();
        let what = format!("{:?} causal={} {}", case.dims, case.causal, case.dtype);
        let got = [
            grads.0.to_f64_vec(),
            grads.1.to_f64_vec(),
            grads.2.to_f64_vec(),
        ];
        let args = [&values[0][..], &values[1][..], &values[2][..]];
        for (which, name) in ["dq", "dk", "dv"].iter().enumerate() {
            for (i, want) in finite_difference_grads(case.dims, args, &w, opts, which) {
                let g = got[which][i];
                let tol = grad_tol(case.dtype);
                assert!(
                    (g - want).abs() <= tol * (1.0 + want.abs()),
                    "{name}[{i}] {what}: got {g}, want {want}"
                );
            }
        }
    }
}

#[test]
fn attention_rows_that_see_no_key_are_zero() {
    // sq > sk with a causal mask: the first sq - sk query rows see nothing.
    let dims = Dims {
        b: 1,
        hq: 1,
        hkv: 1,
        sq: 5,
        sk: 2,
        d: 3,
        dv: 2,
    };
    let case = Case {
        dims,
        causal: true,
        strided: false,
        dtype: DType::F32,
    };
    let (q, k, v) = inputs(&case);
    let opts = opts_for(&case);
    let ops = Ops::new(&CPU);
    let (out, lse) = ops
        .attention(AttentionInputs::new(&q, &k, &v), opts)
        .unwrap();
    let lse_values = lse.to_f64_vec();
    assert!(
        lse_values[..3].iter().all(|&x| x == f64::NEG_INFINITY),
        "{lse_values:?}"
    );
    assert!(
        lse_values[3..].iter().all(|x| x.is_finite()),
        "{lse_values:?}"
    );
    assert!(out.to_f64_vec()[..6].iter().all(|&x| x == 0.0));
    let grad_out = random(DType::F32, &dims.out(), 5);
    let (gq, _, _) = ops
        .attention_backward(
            AttentionInputs::new(&q, &k, &v),
            opts,
            AttentionOutputGrads::new(&out, &lse, &grad_out),
        )
        .unwrap();
    let gq = gq.to_f64_vec();
    assert!(gq[..9].iter().all(|&x| x == 0.0), "{gq:?}");
    assert!(gq.iter().all(|x| x.is_finite()), "{gq:?}");
}

// ----- packed rows -----

/// Packed attention is, by definition, each document's own causal attention: on both
/// backends the output, lse and gradients of a packed row equal those of every document
/// run alone (documents of length 1, 130 and 200 cross the 128-wide tiles).
#[test]
fn packed_rows_equal_each_document_alone() {
    let documents = [1usize, 130, 2, 200, 1, 30];
    let seq: usize = documents.iter().sum();
    let (hq, hkv, d) = (4, 2, 8);
    let q = random(DType::F32, &[1, hq, seq, d], 31);
    let k = random(DType::F32, &[1, hkv, seq, d], 32);
    let v = random(DType::F32, &[1, hkv, seq, d], 33);
    let g = random(DType::F32, &[1, hq, seq, d], 34);
    let segments = segment_ids(&documents);
    let opts = AttentionOpts {
        scale: 0.35,
        causal: true,
    };
    let reference = ReferenceBackend;
    for backend in [&CPU as &dyn luoshu_backend::Backend, &reference] {
        let ops = Ops::new(backend);
        let packed = AttentionInputs::new(&q, &k, &v).with_segments(Some(&segments));
        let (out, lse) = ops.attention(packed, opts).unwrap();
        let grads = ops
            .attention_backward(packed, opts, AttentionOutputGrads::new(&out, &lse, &g))
            .unwrap();
        let mut start = 0;
        for len in documents {
            let doc = |t: &Tensor| t.narrow(2, start, len).unwrap();
            let (doc_q, doc_k, doc_v, doc_g) = (doc(&q), doc(&k), doc(&v), doc(&g));
            let alone_inputs = AttentionInputs::new(&doc_q, &doc_k, &doc_v);
            let (alone_out, alone_lse) = ops.attention(alone_inputs, opts).unwrap();
            let alone = ops
                .attention_backward(
                    alone_inputs,
                    opts,
                    AttentionOutputGrads::new(&alone_out, &alone_lse, &doc_g),
                )
                .unwrap();
            let what = |name: &str| format!("{} {name} of document at {start}", backend.name());
            let pairs = [
                ("out", doc(&out), alone_out),
                (
                    "lse",
                    doc(&lse.unsqueeze(3).unwrap()),
                    alone_lse.unsqueeze(3).unwrap(),
                ),
                ("grad q", doc(&grads.0), alone.0),
                ("grad k", doc(&grads.1), alone.1),
                ("grad v", doc(&grads.2), alone.2),
            ];
            for (name, packed, alone) in pairs {
                let packed = ops.contiguous(&packed).unwrap().to_f64_vec();
                assert_close(&what(name), &packed, &alone.to_f64_vec(), 1e-5);
            }
            start += len;
        }
    }
}

/// Context parallelism runs a chunk of queries against every earlier key, with one segment
/// id per key and the queries at the last key positions: on both backends that equals the
/// chunk's rows of the whole row's packed attention (documents cross both chunk edges, a
/// length-1 document sits inside the chunk), forward and backward.
#[test]
fn end_aligned_query_chunk_equals_the_rows_of_the_whole_row() {
    let documents = [3usize, 140, 1, 60, 45];
    let seq: usize = documents.iter().sum();
    let (lo, hi) = (100, 205);
    let (hq, hkv, d) = (4, 2, 8);
    let q = random(DType::F32, &[1, hq, seq, d], 41);
    let k = random(DType::F32, &[1, hkv, seq, d], 42);
    let v = random(DType::F32, &[1, hkv, seq, d], 43);
    let g = random(DType::F32, &[1, hq, hi - lo, d], 44);
    let segments = segment_ids(&documents);
    let opts = AttentionOpts {
        scale: 0.35,
        causal: true,
    };
    let reference = ReferenceBackend;
    for backend in [&CPU as &dyn luoshu_backend::Backend, &reference] {
        let ops = Ops::new(backend);
        let zeros = |len: usize| ops.full(0.0, DType::F32, &[1, hq, len, d]).unwrap();
        // The whole row, with the upstream gradient only on the chunk's rows.
        let g_whole = ops.concat(&[&zeros(lo), &g, &zeros(seq - hi)], 2).unwrap();
        let whole_inputs = AttentionInputs::new(&q, &k, &v).with_segments(Some(&segments));
        let (out, lse) = ops.attention(whole_inputs, opts).unwrap();
        let whole = ops
            .attention_backward(
                whole_inputs,
                opts,
                AttentionOutputGrads::new(&out, &lse, &g_whole),
            )
            .unwrap();
        let keys = |t: &Tensor| t.narrow(2, 0, hi).unwrap();
        let chunk_q = q.narrow(2, lo, hi - lo).unwrap();
        let chunk_ids = segments.narrow(1, 0, hi).unwrap();
        let (chunk_k, chunk_v) = (keys(&k), keys(&v));
        let chunk_inputs =
            AttentionInputs::new(&chunk_q, &chunk_k, &chunk_v).with_segments(Some(&chunk_ids));
        let (c_out, c_lse) = ops.attention(chunk_inputs, opts).unwrap();
        let chunk = ops
            .attention_backward(
                chunk_inputs,
                opts,
                AttentionOutputGrads::new(&c_out, &c_lse, &g),
            )
            .unwrap();
        let rows = |t: &Tensor| t.narrow(2, lo, hi - lo).unwrap();
        let pairs = [
            ("out", rows(&out), c_out),
            (
                "lse",
                rows(&lse.unsqueeze(3).unwrap()),
                c_lse.unsqueeze(3).unwrap(),
            ),
            ("grad q", rows(&whole.0), chunk.0),
            ("grad k", keys(&whole.1), chunk.1),
            ("grad v", keys(&whole.2), chunk.2),
        ];
        for (name, want, got) in pairs {
            let want = ops.contiguous(&want).unwrap().to_f64_vec();
            let what = format!("{} {name}", backend.name());
            assert_close(&what, &got.to_f64_vec(), &want, 1e-5);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Random document layouts (length-1 documents, documents crossing and ending inside
    /// 128-wide tiles, two rows with different layouts, causal or not): the tiled CPU
    /// kernels agree with the reference backend forward and backward.
    #[test]
    fn random_packed_rows_match_the_reference(
        rows in proptest::collection::vec(
            proptest::collection::vec(1usize..90, 1..8),
            2,
        ),
        causal in proptest::bool::ANY,
        stream in 0u64..1000,
    ) {
        let seq = rows.iter().map(|r| r.iter().sum::<usize>()).max().unwrap();
        // Each row: its documents, then padding as one more segment.
        let mut ids: Vec<i64> = Vec::new();
        for documents in &rows {
            for (doc, &len) in documents.iter().enumerate() {
                ids.extend(std::iter::repeat_n(doc as i64, len));
            }
            ids.resize(ids.len().next_multiple_of(seq), documents.len() as i64);
        }
        let segments = Tensor::from_slice(&ids, [2, seq]).unwrap();
        let q = random(DType::F32, &[2, 4, seq, 16], stream);
        let k = random(DType::F32, &[2, 2, seq, 16], stream + 1);
        let v = random(DType::F32, &[2, 2, seq, 8], stream + 2);
        let g = random(DType::F32, &[2, 4, seq, 8], stream + 3);
        let opts = AttentionOpts { scale: 0.25, causal };
        let run = |backend: &dyn luoshu_backend::Backend| {
            let ops = Ops::new(backend);
            let inputs = AttentionInputs::new(&q, &k, &v).with_segments(Some(&segments));
            let (out, lse) = ops.attention(inputs, opts).unwrap();
            let (gq, gk, gv) = ops
                .attention_backward(inputs, opts, AttentionOutputGrads::new(&out, &lse, &g))
                .unwrap();
            [out, lse, gq, gk, gv].map(|t| t.to_f64_vec())
        };
        let (got, want) = (run(&CPU), run(&ReferenceBackend));
        for (name, (got, want)) in ["out", "lse", "grad q", "grad k", "grad v"].iter().zip(got.iter().zip(&want)) {
            assert_close(name, got, want, 2e-4);
        }
    }
}

/// One row's segment ids, `[1, Σ documents]`: document i's tokens carry id i.
fn segment_ids(documents: &[usize]) -> Tensor {
    let ids: Vec<i64> = documents
        .iter()
        .enumerate()
        .flat_map(|(doc, &len)| std::iter::repeat_n(doc as i64, len))
        .collect();
    Tensor::from_slice(&ids, [1, ids.len()]).unwrap()
}
