//! The default decompositions of the composite ops, run on the reference backend and
//! compared with plain scalar loops written here (forward ops) and with central finite
//! differences of those loops (backward ops).
use luoshu_backend::composite;
use luoshu_backend::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, LayerNormGrads,
    NormStats,
};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{Backend, DType, Tensor};
use luoshu_tensor::rng;

const BACKEND: &dyn Backend = &ReferenceBackend;
const IGNORE: i64 = -100;

// ----- helpers -----

fn randn(n: usize, stream: u64) -> Vec<f64> {
    (0..n)
        .map(|i| rng::normal(42, stream, i as u64) as f64)
        .collect()
}

fn tensor(values: &[f64], dtype: DType, dims: &[usize]) -> Tensor {
    Tensor::from_f64(values, dtype, dims).unwrap()
}

fn zeros(dtype: DType, dims: &[usize]) -> Tensor {
    Tensor::zeros(dtype, dims).unwrap()
}

/// `values` as the op sees them after rounding to `dtype`.
fn rounded(values: &[f64], dtype: DType) -> Vec<f64> {
    tensor(values, dtype, &[values.len()]).to_f64_vec()
}

/// Forward tolerance: f64 is exact up to rounding; half types round the output once.
fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 2e-5,
        _ => 2e-2,
    }
}

/// Gradient tolerance against finite differences. Even for f64 inputs the saved row
/// statistics (lse, rstd, mean) are f32 by contract, which bounds the agreement near 1e-7.
fn grad_tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-6,
        _ => 1e-4,
    }
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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central differences of the scalar function `f` at `x`.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

// ----- softmax -----

fn naive_log_softmax(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            row.iter().map(move |v| v - lse)
        })
        .collect()
}

#[test]
fn softmax_and_log_softmax_match_loops() {
    for dtype in [DType::F64, DType::F32, DType::BF16, DType::F16] {
        for dims in [vec![3, 5], vec![1, 7], vec![2, 3, 1], vec![4]] {
            let n: usize = dims.iter().product();
            let mut values: Vec<f64> = randn(n, 1).iter().map(|v| 3.0 * v).collect();
            let cols = *dims.last().unwrap();
            if cols > 1 {
                values[1] = f64::NEG_INFINITY; // a masked entry in a row with finite ones
            }
            let x = tensor(&values, dtype, &dims);
            let want_log = naive_log_softmax(&rounded(&values, dtype), cols);
            let want: Vec<f64> = want_log.iter().map(|v| v.exp()).collect();

            let out = zeros(dtype, &dims);
            composite::softmax(BACKEND, &x, &out).unwrap();
            assert_close(
                &format!("softmax {dtype} {dims:?}"),
                &out.to_f64_vec(),
                &want,
                tol(dtype),
            );
            let out = zeros(dtype, &dims);
            composite::log_softmax(BACKEND, &x, &out).unwrap();
            assert_close(
                &format!("log_softmax {dtype} {dims:?}"),
                &out.to_f64_vec(),
                &want_log,
                tol(dtype),
            );
        }
    }
}

// ----- cross-entropy -----

/// `(losses, lse)` per row.
fn naive_cross_entropy(x: &[f64], vocab: usize, targets: &[i64]) -> (Vec<f64>, Vec<f64>) {
    let log_probs = naive_log_softmax(x, vocab);
    let lse: Vec<f64> = x
        .chunks(vocab)
        .zip(log_probs.chunks(vocab))
        .map(|(row, lp)| row[0] - lp[0])
        .collect();
    let losses = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| match t {
            IGNORE => 0.0,
            t => -log_probs[i * vocab + t as usize],
        })
        .collect();
    (losses, lse)
}

#[test]
fn cross_entropy_forward_and_backward_match_loops() {
    let (n, vocab) = (5, 7);
    let targets = [3i64, IGNORE, 0, 6, IGNORE];
    let t = Tensor::from_slice(&targets, [n]).unwrap();
    let values: Vec<f64> = randn(n * vocab, 2).iter().map(|v| 2.0 * v).collect();
    let grad_losses = randn(n, 3);
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        let logits = tensor(&values, dtype, &[n, vocab]);
        let x = rounded(&values, dtype);
        let (want_losses, want_lse) = naive_cross_entropy(&x, vocab, &targets);
        let (losses, lse) = (zeros(DType::F32, &[n]), zeros(DType::F32, &[n]));
        composite::cross_entropy(BACKEND, &logits, &t, IGNORE, &losses, &lse).unwrap();
        let stat_tol = tol(dtype).max(1e-6); // stats are f32
        assert_close("ce losses", &losses.to_f64_vec(), &want_losses, stat_tol);
        assert_close("ce lse", &lse.to_f64_vec(), &want_lse, stat_tol);
        assert!(losses.to_f64_vec()[1] == 0.0 && losses.to_f64_vec()[4] == 0.0);

        let gl = tensor(&grad_losses, DType::F32, &[n]);
        let grad = zeros(dtype, &[n, vocab]);
        composite::cross_entropy_backward(BACKEND, &logits, &t, &lse, &gl, IGNORE, &grad).unwrap();
        let gl = gl.to_f64_vec();
        let want = numeric_grad(&x, |x| dot(&naive_cross_entropy(x, vocab, &targets).0, &gl));
        let gtol = if dtype == DType::BF16 {
            tol(dtype)
        } else {
            grad_tol(dtype)
        };
        assert_close(&format!("ce grad {dtype}"), &grad.to_f64_vec(), &want, gtol);
    }
}

#[test]
fn cross_entropy_without_classes_ignores_every_row() {
    let logits = zeros(DType::F32, &[2, 0]);
    let t = Tensor::from_slice(&[IGNORE, IGNORE], [2]).unwrap();
    let (losses, lse) = (zeros(DType::F32, &[2]), zeros(DType::F32, &[2]));
    composite::cross_entropy(BACKEND, &logits, &t, IGNORE, &losses, &lse).unwrap();
    assert_eq!(losses.to_f64_vec(), [0.0, 0.0]);
    assert_eq!(lse.to_f64_vec(), [f64::NEG_INFINITY; 2]);
}

// ----- norms -----

const EPS: f32 = 1e-5;

/// `(out, rstd)`.
fn naive_rms_norm(x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let d = w.len();
    let mut out = Vec::new();
    let mut rstd = Vec::new();
    for row in x.chunks(d) {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + EPS as f64).sqrt();
        out.extend(row.iter().zip(w).map(|(v, w)| v * r * w));
        rstd.push(r);
    }
    (out, rstd)
}

/// `(out, mean, rstd)`.
fn naive_layer_norm(x: &[f64], w: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = w.len();
    let (mut out, mut means, mut rstds) = (Vec::new(), Vec::new(), Vec::new());
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + EPS as f64).sqrt();
        out.extend((0..d).map(|i| (row[i] - mean) * r * w[i] + b[i]));
        means.push(mean);
        rstds.push(r);
    }
    (out, means, rstds)
}

const NORM_SHAPES: [&[usize]; 3] = [&[2, 3, 5], &[1, 4], &[7]];

#[test]
fn rms_norm_forward_and_backward_match_loops() {
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        for dims in NORM_SHAPES {
            let (n, d) = (dims.iter().product::<usize>(), *dims.last().unwrap());
            let rows = &dims[..dims.len() - 1];
            let (xv, wv, dyv) = (randn(n, 4), randn(d, 5), randn(n, 6));
            let (x, w, dy) = (
                tensor(&xv, dtype, dims),
                tensor(&wv, dtype, &[d]),
                tensor(&dyv, dtype, dims),
            );
            let (xv, wv, dyv) = (
                rounded(&xv, dtype),
                rounded(&wv, dtype),
                rounded(&dyv, dtype),
            );
            let (want, want_rstd) = naive_rms_norm(&xv, &wv);
            let (out, rstd) = (zeros(dtype, dims), zeros(DType::F32, rows));
            composite::rms_norm(BACKEND, &x, &w, EPS, &out, &rstd).unwrap();
            assert_close("rms out", &out.to_f64_vec(), &want, tol(dtype));
            assert_close(
                "rms rstd",
                &rstd.to_f64_vec(),
                &want_rstd,
                tol(dtype).max(1e-6),
            );
            if dtype == DType::BF16 {
                continue;
            }
            let (gx, gw) = (zeros(dtype, dims), zeros(dtype, &[d]));
            composite::rms_norm_backward(BACKEND, &x, &w, &rstd, &dy, &gx, &gw).unwrap();
            let want_gx = numeric_grad(&xv, |x| dot(&naive_rms_norm(x, &wv).0, &dyv));
            let want_gw = numeric_grad(&wv, |w| dot(&naive_rms_norm(&xv, w).0, &dyv));
            let what = format!("{dtype} {dims:?}");
            assert_close(
                &format!("rms gx {what}"),
                &gx.to_f64_vec(),
                &want_gx,
                grad_tol(dtype),
            );
            assert_close(
                &format!("rms gw {what}"),
                &gw.to_f64_vec(),
                &want_gw,
                grad_tol(dtype),
            );
        }
    }
}

#[test]
fn layer_norm_forward_and_backward_match_loops() {
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        for dims in NORM_SHAPES {
            let (n, d) = (dims.iter().product::<usize>(), *dims.last().unwrap());
            let rows = &dims[..dims.len() - 1];
            let (xv, wv, bv, dyv) = (randn(n, 7), randn(d, 8), randn(d, 9), randn(n, 10));
            let xv: Vec<f64> = xv.iter().map(|v| 2.0 * v + 1.0).collect();
            let (x, w, b, dy) = (
                tensor(&xv, dtype, dims),
                tensor(&wv, dtype, &[d]),
                tensor(&bv, dtype, &[d]),
                tensor(&dyv, dtype, dims),
            );
            let (xv, wv, bv, dyv) = (
                rounded(&xv, dtype),
                rounded(&wv, dtype),
                rounded(&bv, dtype),
                rounded(&dyv, dtype),
            );
            let (want, want_mean, want_rstd) = naive_layer_norm(&xv, &wv, &bv);
            let out = zeros(dtype, dims);
            let (mean, rstd) = (zeros(DType::F32, rows), zeros(DType::F32, rows));
            let stats = NormStats {
                mean: &mean,
                rstd: &rstd,
            };
            composite::layer_norm(BACKEND, &x, &w, &b, EPS, &out, stats).unwrap();
            let stat_tol = tol(dtype).max(1e-6);
            assert_close("ln out", &out.to_f64_vec(), &want, tol(dtype));
            assert_close("ln mean", &mean.to_f64_vec(), &want_mean, stat_tol);
            assert_close("ln rstd", &rstd.to_f64_vec(), &want_rstd, stat_tol);
            if dtype == DType::BF16 {
                continue;
            }
            let (gx, gw, gb) = (zeros(dtype, dims), zeros(dtype, &[d]), zeros(dtype, &[d]));
            let grads = LayerNormGrads {
                x: &gx,
                weight: &gw,
                bias: &gb,
            };
            composite::layer_norm_backward(BACKEND, &x, &w, stats, &dy, grads).unwrap();
            let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&naive_layer_norm(x, w, b).0, &dyv);
            let want_gx = numeric_grad(&xv, |x| loss(x, &wv, &bv));
            let want_gw = numeric_grad(&wv, |w| loss(&xv, w, &bv));
            let want_gb = numeric_grad(&bv, |b| loss(&xv, &wv, b));
            let what = format!("{dtype} {dims:?}");
            let gt = grad_tol(dtype);
            assert_close(&format!("ln gx {what}"), &gx.to_f64_vec(), &want_gx, gt);
            assert_close(&format!("ln gw {what}"), &gw.to_f64_vec(), &want_gw, gt);
            assert_close(&format!("ln gb {what}"), &gb.to_f64_vec(), &want_gb, gt);
        }
    }
}

// ----- rope -----

fn naive_rope(x: &[f64], dims: [usize; 4], cos: &[f64], sin: &[f64], inverse: bool) -> Vec<f64> {
    let [b, s, h, d] = dims;
    let half = d / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for si in 0..s {
            for hi in 0..h {
                let base = ((bi * s + si) * h + hi) * d;
                for i in 0..half {
                    let (c, sn) = (cos[si * half + i], sign * sin[si * half + i]);
                    let (x1, x2) = (x[base + i], x[base + i + half]);
                    out[base + i] = x1 * c - x2 * sn;
                    out[base + i + half] = x2 * c + x1 * sn;
                }
            }
        }
    }
    out
}

#[test]
fn rope_matches_loops_and_inverse_is_its_adjoint() {
    let dims = [2, 3, 2, 6];
    let n: usize = dims.iter().product();
    let (s, half) = (dims[1], dims[3] / 2);
    let angles: Vec<f64> = (0..s * half)
        .map(|i| (i / half) as f64 * 10f64.powf(-((i % half) as f64) / half as f64))
        .collect();
    let cos_v = rounded(
        &angles.iter().map(|a| a.cos()).collect::<Vec<_>>(),
        DType::F32,
    );
    let sin_v = rounded(
        &angles.iter().map(|a| a.sin()).collect::<Vec<_>>(),
        DType::F32,
    );
    let cos = tensor(&cos_v, DType::F32, &[s, half]);
    let sin = tensor(&sin_v, DType::F32, &[s, half]);
    let (xv, yv) = (randn(n, 11), randn(n, 12));
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        let (x, y) = (tensor(&xv, dtype, &dims), tensor(&yv, dtype, &dims));
        let (xr, yr) = (rounded(&xv, dtype), rounded(&yv, dtype));
        let mut outs = Vec::new();
        for (input, values, inverse) in [(&x, &xr, false), (&y, &yr, true)] {
            let out = zeros(dtype, &dims);
            composite::rope(BACKEND, input, &cos, &sin, inverse, &out).unwrap();
            let want = naive_rope(values, dims, &cos_v, &sin_v, inverse);
            assert_close(
                &format!("rope {dtype} inverse={inverse}"),
                &out.to_f64_vec(),
                &want,
                tol(dtype),
            );
            outs.push(out.to_f64_vec());
        }
        if dtype == DType::F64 {
            // <rope(x), y> == <x, rope⁻¹(y)>: the inverse rotation is the backward.
            let (lhs, rhs) = (dot(&outs[0], &yr), dot(&xr, &outs[1]));
            assert!(
                (lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()),
                "{lhs} vs {rhs}"
            );
        }
    }
}

// ----- swiglu -----

fn naive_swiglu(g: &[f64], u: &[f64]) -> Vec<f64> {
    g.iter()
        .zip(u)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect()
}

#[test]
fn swiglu_forward_and_backward_match_loops() {
    let dims = [3, 5];
    let (gv, uv, dyv) = (randn(15, 13), randn(15, 14), randn(15, 15));
    let gv: Vec<f64> = gv.iter().map(|v| 3.0 * v).collect();
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        let (g, u, dy) = (
            tensor(&gv, dtype, &dims),
            tensor(&uv, dtype, &dims),
            tensor(&dyv, dtype, &dims),
        );
        let (gr, ur, dyr) = (
            rounded(&gv, dtype),
            rounded(&uv, dtype),
            rounded(&dyv, dtype),
        );
        let out = zeros(dtype, &dims);
        composite::swiglu(BACKEND, &g, &u, &out).unwrap();
        assert_close(
            "swiglu",
            &out.to_f64_vec(),
            &naive_swiglu(&gr, &ur),
            tol(dtype),
        );

        let (gg, gu) = (zeros(dtype, &dims), zeros(dtype, &dims));
        composite::swiglu_backward(BACKEND, &g, &u, &dy, &gg, &gu).unwrap();
        let want_gg = numeric_grad(&gr, |g| dot(&naive_swiglu(g, &ur), &dyr));
        let want_gu = numeric_grad(&ur, |u| dot(&naive_swiglu(&gr, u), &dyr));
        let gt = if dtype == DType::BF16 {
            tol(dtype)
        } else {
            grad_tol(dtype)
        };
        assert_close(
            &format!("swiglu gg {dtype}"),
            &gg.to_f64_vec(),
            &want_gg,
            gt,
        );
        assert_close(
            &format!("swiglu gu {dtype}"),
            &gu.to_f64_vec(),
            &want_gu,
            gt,
        );
    }
}

// ----- attention -----

#[derive(Debug, Clone, Copy)]
struct Attn {
    b: usize,
    hq: usize,
    hkv: usize,
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
    causal: bool,
}

impl Attn {
    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }
    fn q_dims(&self) -> [usize; 4] {
        [self.b, self.hq, self.sq, self.d]
    }
    fn k_dims(&self) -> [usize; 4] {
        [self.b, self.hkv, self.sk, self.d]
    }
    fn v_dims(&self) -> [usize; 4] {
        [self.b, self.hkv, self.sk, self.dv]
    }
    fn out_dims(&self) -> [usize; 4] {
        [self.b, self.hq, self.sq, self.dv]
    }
}

/// `(out, lse)` by the definition, one query row at a time.
fn naive_attention(a: &Attn, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let group = a.hq / a.hkv;
    let scale = a.scale() as f64;
    let mut out = vec![0.0; a.b * a.hq * a.sq * a.dv];
    let mut lse = vec![f64::NEG_INFINITY; a.b * a.hq * a.sq];
    for b in 0..a.b {
        for h in 0..a.hq {
            let kv = b * a.hkv + h / group;
            for i in 0..a.sq {
                let row = (b * a.hq + h) * a.sq + i;
                let visible: Vec<usize> = (0..a.sk)
                    .filter(|&j| !a.causal || j + a.sq <= i + a.sk)
                    .collect();
                if visible.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        let qk: f64 = (0..a.d)
                            .map(|c| q[row * a.d + c] * k[(kv * a.sk + j) * a.d + c])
                            .sum();
                        scale * qk
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let l = max + scores.iter().map(|s| (s - max).exp()).sum::<f64>().ln();
                lse[row] = l;
                for (&j, s) in visible.iter().zip(&scores) {
                    let p = (s - l).exp();
                    for c in 0..a.dv {
                        out[row * a.dv + c] += p * v[(kv * a.sk + j) * a.dv + c];
                    }
                }
            }
        }
    }
    (out, lse)
}

const ATTENTION_CASES: [Attn; 4] = [
    // grouped-query, causal with fewer queries than keys
    Attn {
        b: 1,
        hq: 4,
        hkv: 2,
        sq: 3,
        sk: 5,
        d: 3,
        dv: 2,
        causal: true,
    },
    // odd sizes, not causal
    Attn {
        b: 2,
        hq: 3,
        hkv: 3,
        sq: 4,
        sk: 3,
        d: 5,
        dv: 3,
        causal: false,
    },
    // more queries than keys: the first two query rows see nothing
    Attn {
        b: 1,
        hq: 2,
        hkv: 1,
        sq: 5,
        sk: 3,
        d: 2,
        dv: 2,
        causal: true,
    },
    // one query row
    Attn {
        b: 1,
        hq: 1,
        hkv: 1,
        sq: 1,
        sk: 4,
        d: 2,
        dv: 3,
        causal: true,
    },
];

/// `q` is a strided view (stored as `[b, sq, hq, d]`), like a projection output.
fn attention_inputs(a: &Attn, dtype: DType) -> (Tensor, Tensor, Tensor) {
    let n = |dims: [usize; 4]| dims.iter().product::<usize>();
    let q_stored = [a.b, a.sq, a.hq, a.d];
    let q = tensor(&randn(n(q_stored), 16), dtype, &q_stored)
        .permute(&[0, 2, 1, 3])
        .unwrap();
    let k = tensor(&randn(n(a.k_dims()), 17), dtype, &a.k_dims());
    let v = tensor(&randn(n(a.v_dims()), 18), dtype, &a.v_dims());
    (q, k, v)
}

#[test]
fn attention_forward_and_backward_match_loops() {
    for a in ATTENTION_CASES {
        for dtype in [DType::F64, DType::F32, DType::BF16] {
            let (q, k, v) = attention_inputs(&a, dtype);
            let (qv, kv, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
            let opts = AttentionOpts {
                scale: a.scale(),
                causal: a.causal,
            };
            let (out, lse) = (
                zeros(dtype, &a.out_dims()),
                zeros(DType::F32, &a.q_dims()[..3]),
            );
            composite::attention(BACKEND, AttentionInputs::new(&q, &k, &v), opts, &out, &lse)
                .unwrap();
            let (want_out, want_lse) = naive_attention(&a, &qv, &kv, &vv);
            let what = format!("{a:?} {dtype}");
            assert_close(
                &format!("out {what}"),
                &out.to_f64_vec(),
                &want_out,
                tol(dtype),
            );
            assert_close(&format!("lse {what}"), &lse.to_f64_vec(), &want_lse, 1e-5);
            if dtype == DType::BF16 {
                continue;
            }

            let n_out: usize = a.out_dims().iter().product();
            let dov = randn(n_out, 19);
            let grad_out = tensor(&dov, dtype, &a.out_dims());
            let (gq, gk, gv) = (
                zeros(dtype, &a.q_dims()),
                zeros(dtype, &a.k_dims()),
                zeros(dtype, &a.v_dims()),
            );
            let grads = AttentionGrads {
                q: &gq,
                k: &gk,
                v: &gv,
            };
            composite::attention_backward(
                BACKEND,
                AttentionInputs::new(&q, &k, &v),
                opts,
                AttentionOutputGrads::new(&out, &lse, &grad_out),
                grads,
            )
            .unwrap();
            let loss = |q: &[f64], k: &[f64], v: &[f64]| dot(&naive_attention(&a, q, k, v).0, &dov);
            let gt = grad_tol(dtype);
            let want_gq = numeric_grad(&qv, |q| loss(q, &kv, &vv));
            let want_gk = numeric_grad(&kv, |k| loss(&qv, k, &vv));
            let want_gv = numeric_grad(&vv, |v| loss(&qv, &kv, v));
            assert_close(&format!("gq {what}"), &gq.to_f64_vec(), &want_gq, gt);
            assert_close(&format!("gk {what}"), &gk.to_f64_vec(), &want_gk, gt);
            assert_close(&format!("gv {what}"), &gv.to_f64_vec(), &want_gv, gt);
        }
    }
}

#[test]
fn fully_masked_attention_rows_give_zeros_and_minus_infinity() {
    let a = ATTENTION_CASES[2];
    let (q, k, v) = attention_inputs(&a, DType::F32);
    let opts = AttentionOpts {
        scale: a.scale(),
        causal: true,
    };
    let (out, lse) = (
        zeros(DType::F32, &a.out_dims()),
        zeros(DType::F32, &a.q_dims()[..3]),
    );
    composite::attention(BACKEND, AttentionInputs::new(&q, &k, &v), opts, &out, &lse).unwrap();
    let (out, lse) = (out.to_f64_vec(), lse.to_f64_vec());
    for h in 0..a.hq {
        for i in 0..a.sq {
            let row = h * a.sq + i;
            let masked = i < a.sq - a.sk;
            assert_eq!(
                lse[row] == f64::NEG_INFINITY,
                masked,
                "row {row}: lse {}",
                lse[row]
            );
            let outs = &out[row * a.dv..(row + 1) * a.dv];
            assert_eq!(
                outs.iter().all(|&o| o == 0.0),
                masked,
                "row {row}: {outs:?}"
            );
        }
    }
}

// ----- optimizer -----

fn naive_adamw(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], hp: AdamW) {
    let (b1, b2) = (hp.beta1 as f64, hp.beta2 as f64);
    let c1 = 1.0 - b1.powi(hp.step as i32);
    let c2 = 1.0 - b2.powi(hp.step as i32);
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let update = (m[i] / c1) / ((v[i] / c2).sqrt() + hp.eps as f64);
        p[i] -= hp.lr as f64 * (update + hp.weight_decay as f64 * p[i]);
    }
}

#[test]
fn adamw_updates_param_and_moments_in_place() {
    let dims = [3, 7];
    let (mut p, mut m, mut v) = (
        rounded(&randn(21, 20), DType::F32),
        vec![0.0; 21],
        vec![0.0; 21],
    );
    let (param, mt, vt) = (
        tensor(&p, DType::F32, &dims),
        zeros(DType::F32, &dims),
        zeros(DType::F32, &dims),
    );
    for (step, grad_dtype) in [(1, DType::F32), (2, DType::BF16), (3, DType::F64)] {
        let hp = AdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            step,
        };
        let gv = rounded(&randn(21, 20 + step), grad_dtype);
        let grad = tensor(&gv, grad_dtype, &dims);
        composite::adamw(BACKEND, &param, &grad, &mt, &vt, hp).unwrap();
        naive_adamw(&mut p, &gv, &mut m, &mut v, hp);
        assert_close(&format!("param step {step}"), &param.to_f64_vec(), &p, 1e-6);
        assert_close(&format!("m step {step}"), &mt.to_f64_vec(), &m, 1e-6);
        assert_close(&format!("v step {step}"), &vt.to_f64_vec(), &v, 1e-6);
    }
}

#[test]
fn sum_squares_adds_every_element_of_every_tensor() {
    let tensors = [
        tensor(&randn(12, 30), DType::F64, &[3, 4]),
        tensor(&randn(5, 31), DType::F32, &[5]),
        tensor(&randn(6, 32), DType::BF16, &[2, 3]),
        tensor(&[2.5], DType::F32, &[]),
        zeros(DType::F32, &[0, 3]),
    ];
    let want: f64 = tensors
        .iter()
        .flat_map(|t| t.to_f64_vec())
        .map(|x| x * x)
        .sum();
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let got = composite::sum_squares(BACKEND, &refs).unwrap();
    assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
    assert_eq!(composite::sum_squares(BACKEND, &[]).unwrap(), 0.0);
}
