//! The CPU backend's fused composite kernels against naive f64 loops written here, on odd
//! shapes and every float dtype; backward kernels also against finite differences of the
//! naive forwards; reductions checked for bit-identical results under any thread count.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{AdamW, LayerNormGrads, NormStats};
use luoshu_backend::{Backend, Ops};
use luoshu_tensor::{rng, DType, Tensor};

const FLOATS: [DType; 4] = [DType::F64, DType::F32, DType::BF16, DType::F16];
const ROWS: [usize; 4] = [0, 1, 3, 257];
const WIDTHS: [usize; 4] = [1, 7, 33, 1000];
const IGNORE: i64 = -100;
const EPS: f32 = 1e-5;

fn ops() -> Ops<'static> {
    Ops::new(&CpuBackend)
}

/// Relative tolerance per dtype: the kernels keep f32 statistics, so even f64 inputs are
/// only as exact as those; half types are limited by rounding the output.
fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-6,
        DType::F32 => 1e-5,
        DType::F16 => 4e-3,
        _ => 2e-2,
    }
}

/// `n` normal samples times `scale`, a pure function of `stream`.
fn normals(n: usize, stream: u64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| rng::normal(7, stream, i as u64) as f64 * scale)
        .collect()
}

/// A tensor of `values` rounded to `dtype`, and the rounded values (the exact inputs the
/// naive references must see).
fn tensor(values: &[f64], dtype: DType, dims: &[usize]) -> (Tensor, Vec<f64>) {
    let t = Tensor::from_f64(values, dtype, dims).unwrap();
    let rounded = t.to_f64_vec();
    (t, rounded)
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rtol * w.abs() + atol,
            "{what}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec().iter().map(|v| v.to_bits()).collect()
}

// ----- naive references (f64, straightforward loops) -----

fn logsumexp_ref(row: &[f64]) -> f64 {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

fn softmax_ref(x: &[f64], d: usize, log: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let lse = logsumexp_ref(row);
        out.extend(
            row.iter()
                .map(|&v| if log { v - lse } else { (v - lse).exp() }),
        );
    }
    out
}

/// `(losses, lse)`.
fn cross_entropy_ref(x: &[f64], targets: &[i64], v: usize) -> (Vec<f64>, Vec<f64>) {
    let mut losses = vec![];
    let mut lses = vec![];
    for (row, &t) in x.chunks(v).zip(targets) {
        let lse = logsumexp_ref(row);
        lses.push(lse);
        losses.push(if t == IGNORE {
            0.0
        } else {
            lse - row[t as usize]
        });
    }
    (losses, lses)
}

fn cross_entropy_grad_ref(x: &[f64], targets: &[i64], gl: &[f64], v: usize) -> Vec<f64> {
    let mut grad = vec![];
    for ((row, &t), &g) in x.chunks(v).zip(targets).zip(gl) {
        let lse = logsumexp_ref(row);
        for (j, &x) in row.iter().enumerate() {
            let onehot = if j as i64 == t { 1.0 } else { 0.0 };
            grad.push(if t == IGNORE {
                0.0
            } else {
                ((x - lse).exp() - onehot) * g
            });
        }
    }
    grad
}

/// `(out, rstd)`.
fn rms_norm_ref(x: &[f64], w: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut out, mut rstd) = (vec![], vec![]);
    for row in x.chunks(d) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + EPS as f64).sqrt();
        rstd.push(r);
        out.extend(row.iter().zip(w).map(|(x, w)| x * r * w));
    }
    (out, rstd)
}

/// `(grad_x, grad_weight)`.
fn rms_norm_grad_ref(x: &[f64], w: &[f64], g: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut gx, mut gw) = (vec![], vec![0.0; d]);
    for (row, grow) in x.chunks(d).zip(g.chunks(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + EPS as f64).sqrt();
        let mean_xwg = (0..d).map(|j| row[j] * w[j] * grow[j]).sum::<f64>() / d as f64;
        for j in 0..d {
            gx.push(r * w[j] * grow[j] - row[j] * r * r * r * mean_xwg);
            gw[j] += grow[j] * row[j] * r;
        }
    }
    (gx, gw)
}

/// `(out, mean, rstd)`.
fn layer_norm_ref(x: &[f64], w: &[f64], b: &[f64], d: usize) -> [Vec<f64>; 3] {
    let (mut out, mut means, mut rstds) = (vec![], vec![], vec![]);
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + EPS as f64).sqrt();
        means.push(mean);
        rstds.push(r);
        out.extend((0..d).map(|j| (row[j] - mean) * r * w[j] + b[j]));
    }
    [out, means, rstds]
}

/// `(grad_x, grad_weight, grad_bias)`.
fn layer_norm_grad_ref(x: &[f64], w: &[f64], g: &[f64], d: usize) -> [Vec<f64>; 3] {
    let (mut gx, mut gw, mut gb) = (vec![], vec![0.0; d], vec![0.0; d]);
    for (row, grow) in x.chunks(d).zip(g.chunks(d)) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + EPS as f64).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * r).collect();
        let gy: Vec<f64> = (0..d).map(|j| grow[j] * w[j]).collect();
        let mean_gy = gy.iter().sum::<f64>() / d as f64;
        let mean_gy_xhat = (0..d).map(|j| gy[j] * xhat[j]).sum::<f64>() / d as f64;
        for j in 0..d {
            gx.push(r * (gy[j] - mean_gy - xhat[j] * mean_gy_xhat));
            gw[j] += grow[j] * xhat[j];
            gb[j] += grow[j];
        }
    }
    [gx, gw, gb]
}

fn rope_ref(x: &[f64], cos: &[f64], sin: &[f64], dims: [usize; 4], inverse: bool) -> Vec<f64> {
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

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn swiglu_ref(gate: &[f64], up: &[f64]) -> Vec<f64> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| g * sigmoid(g) * u)
        .collect()
}

/// `(grad_gate, grad_up)`.
fn swiglu_grad_ref(gate: &[f64], up: &[f64], go: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut gg = vec![];
    let mut gu = vec![];
    for i in 0..gate.len() {
        let s = sigmoid(gate[i]);
        gg.push(go[i] * up[i] * s * (1.0 + gate[i] * (1.0 - s)));
        gu.push(go[i] * gate[i] * s);
    }
    (gg, gu)
}

/// Central finite differences of `f` at `x`: `∂f/∂x_i` for every `i`.
fn finite_diff(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let plus = f(&x);
            x[i] = orig - h;
            let minus = f(&x);
            x[i] = orig;
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

// ----- softmax -----

#[test]
fn softmax_and_log_softmax_match_naive() {
    for dtype in FLOATS {
        for rows in ROWS {
            for d in WIDTHS {
                let (x, xv) = tensor(&normals(rows * d, 1, 3.0), dtype, &[rows, d]);
                let t = tol(dtype);
                let sm = ops().softmax(&x).unwrap();
                let what = format!("softmax {dtype} [{rows}, {d}]");
                assert_close(
                    &what,
                    &sm.to_f64_vec(),
                    &softmax_ref(&xv, d, false),
                    t,
                    1e-7,
                );
                let lsm = ops().log_softmax(&x).unwrap();
                let what = format!("log_softmax {dtype} [{rows}, {d}]");
                assert_close(&what, &lsm.to_f64_vec(), &softmax_ref(&xv, d, true), t, t);
            }
        }
    }
}

#[test]
fn softmax_is_stable_for_large_logits_and_handles_higher_rank() {
    let xv: Vec<f64> = (0..2 * 3 * 5).map(|i| 1000.0 + i as f64 * 7.0).collect();
    let (x, _) = tensor(&xv, DType::F32, &[2, 3, 5]);
    let got = ops().softmax(&x).unwrap().to_f64_vec();
    assert!(got.iter().all(|v| v.is_finite()));
    assert_close(
        "softmax rank 3",
        &got,
        &softmax_ref(&xv, 5, false),
        1e-5,
        1e-7,
    );
}

/// Rows of length 0, called on the backend directly: `Ops` rejects these outputs today
/// because `Layout::is_contiguous` says no for a zero-sized inner dimension.
#[test]
fn empty_rows_are_accepted() {
    let zeros = |dims: &[usize]| Tensor::zeros(DType::F32, dims).unwrap();
    let x = zeros(&[3, 0]);
    CpuBackend.softmax(&x, &zeros(&[3, 0])).unwrap();
    CpuBackend.log_softmax(&x, &zeros(&[3, 0])).unwrap();

    let (w, out, rstd) = (zeros(&[0]), zeros(&[3, 0]), zeros(&[3]));
    CpuBackend.rms_norm(&x, &w, EPS, &out, &rstd).unwrap();
    // The mean of nothing is NaN, as the `reduce` contract says.
    assert!(rstd.to_f64_vec().iter().all(|r| r.is_nan()));
    CpuBackend
        .rms_norm_backward(&x, &w, &rstd, &out, &zeros(&[3, 0]), &zeros(&[0]))
        .unwrap();

    let t = Tensor::from_slice(&[IGNORE; 3], [3]).unwrap();
    let (losses, lse) = (zeros(&[3]), zeros(&[3]));
    CpuBackend
        .cross_entropy(&x, &t, IGNORE, &losses, &lse)
        .unwrap();
    assert_eq!(losses.to_f64_vec(), [0.0; 3]);
    assert_eq!(lse.to_f64_vec(), [f64::NEG_INFINITY; 3]);

    let (xr, table) = (zeros(&[1, 3, 2, 0]), zeros(&[3, 0]));
    CpuBackend
        .rope(&xr, &table, &table, false, &zeros(&[1, 3, 2, 0]))
        .unwrap();
}

// ----- cross-entropy -----

/// Targets for `rows` rows of a vocabulary of `v`, every third one ignored.
fn targets(rows: usize, v: usize) -> Vec<i64> {
    (0..rows)
        .map(|i| {
            if i % 3 == 1 {
                IGNORE
            } else {
                (rng::bits(3, 0, i as u64) % v as u64) as i64
            }
        })
        .collect()
}

#[test]
fn cross_entropy_forward_and_backward_match_naive() {
    for dtype in FLOATS {
        for rows in ROWS {
            for v in WIDTHS {
                let (x, xv) = tensor(&normals(rows * v, 2, 2.0), dtype, &[rows, v]);
                let tv = targets(rows, v);
                let t = Tensor::from_slice(&tv, [rows]).unwrap();
                let (losses, lse) = ops().cross_entropy(&x, &t, IGNORE).unwrap();
                let (want_losses, want_lse) = cross_entropy_ref(&xv, &tv, v);
                let what = format!("cross_entropy {dtype} [{rows}, {v}]");
                // Losses and lse are f32 whatever the logits' dtype.
                let tl = tol(dtype).clamp(1e-6, 1e-5);
                assert_close(&what, &losses.to_f64_vec(), &want_losses, tl, tl);
                assert_close(&what, &lse.to_f64_vec(), &want_lse, tl, tl);
                for (&l, &target) in losses.to_vec::<f32>().unwrap().iter().zip(&tv) {
                    if target == IGNORE {
                        assert_eq!(l, 0.0, "{what}: ignored rows have zero loss");
                    }
                }

                let (gl, glv) = tensor(&normals(rows, 3, 1.0), DType::F32, &[rows]);
                let grad = ops()
                    .cross_entropy_backward(&x, &t, &lse, &gl, IGNORE)
                    .unwrap();
                let what = format!("cross_entropy_backward {dtype} [{rows}, {v}]");
                let want = cross_entropy_grad_ref(&xv, &tv, &glv, v);
                let t = tol(dtype).max(1e-5);
                assert_close(&what, &grad.to_f64_vec(), &want, t, t * 1e-2);
            }
        }
    }
}

#[test]
fn cross_entropy_rejects_out_of_range_targets_in_the_kernel() {
    let x = Tensor::from_f64(&[0.0; 6], DType::F32, [2, 3]).unwrap();
    let t = Tensor::from_slice(&[0i64, 3], [2]).unwrap();
    let (losses, lse) = (
        Tensor::zeros(DType::F32, [2]).unwrap(),
        Tensor::zeros(DType::F32, [2]).unwrap(),
    );
    assert!(CpuBackend
        .cross_entropy(&x, &t, IGNORE, &losses, &lse)
        .is_err());
}

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let (rows, v) = (5, 9);
    let (x, xv) = tensor(&normals(rows * v, 4, 2.0), DType::F64, &[rows, v]);
    let tv = targets(rows, v);
    let t = Tensor::from_slice(&tv, [rows]).unwrap();
    let (gl, glv) = tensor(&normals(rows, 5, 1.0), DType::F32, &[rows]);
    let (_, lse) = ops().cross_entropy(&x, &t, IGNORE).unwrap();
    let grad = ops()
        .cross_entropy_backward(&x, &t, &lse, &gl, IGNORE)
        .unwrap();
    let fd = finite_diff(&xv, |x| dot(&cross_entropy_ref(x, &tv, v).0, &glv));
    assert_close("cross_entropy fd", &grad.to_f64_vec(), &fd, 1e-5, 1e-7);
}

// ----- norms -----

/// A weight near 1 with some spread (so both terms of the gradients matter).
fn weight(d: usize, stream: u64) -> Vec<f64> {
    normals(d, stream, 0.5).iter().map(|w| 1.0 + w).collect()
}

#[test]
fn rms_norm_forward_and_backward_match_naive() {
    for dtype in FLOATS {
        for rows in ROWS {
            for d in WIDTHS {
                let (x, xv) = tensor(&normals(rows * d, 10, 2.0), dtype, &[rows, d]);
                let (w, wv) = tensor(&weight(d, 11), dtype, &[d]);
                let (out, rstd) = ops().rms_norm(&x, &w, EPS).unwrap();
                let (want_out, want_rstd) = rms_norm_ref(&xv, &wv, d);
                let what = format!("rms_norm {dtype} [{rows}, {d}]");
                let t = tol(dtype);
                assert_close(&what, &out.to_f64_vec(), &want_out, t, t);
                assert_close(&what, &rstd.to_f64_vec(), &want_rstd, 1e-5, 0.0);

                let (g, gv) = tensor(&normals(rows * d, 12, 1.0), dtype, &[rows, d]);
                let (gx, gw) = ops().rms_norm_backward(&x, &w, &rstd, &g).unwrap();
                let (want_gx, want_gw) = rms_norm_grad_ref(&xv, &wv, &gv, d);
                let what = format!("rms_norm_backward {dtype} [{rows}, {d}]");
                let t = t.max(1e-5);
                assert_close(&what, &gx.to_f64_vec(), &want_gx, t, t);
                assert_close(&what, &gw.to_f64_vec(), &want_gw, t, 10.0 * t);
            }
        }
    }
}

#[test]
fn layer_norm_forward_and_backward_match_naive() {
    for dtype in FLOATS {
        for rows in ROWS {
            for d in WIDTHS {
                // An offset mean checks the centered variance.
                let xs: Vec<f64> = normals(rows * d, 20, 2.0).iter().map(|v| v + 3.0).collect();
                let (x, xv) = tensor(&xs, dtype, &[rows, d]);
                let (w, wv) = tensor(&weight(d, 21), dtype, &[d]);
                let (b, bv) = tensor(&normals(d, 22, 0.5), dtype, &[d]);
                let (out, mean, rstd) = ops().layer_norm(&x, &w, &b, EPS).unwrap();
                let [want_out, want_mean, want_rstd] = layer_norm_ref(&xv, &wv, &bv, d);
                let what = format!("layer_norm {dtype} [{rows}, {d}]");
                let t = tol(dtype);
                assert_close(&what, &out.to_f64_vec(), &want_out, t, t);
                assert_close(&what, &mean.to_f64_vec(), &want_mean, 1e-5, 1e-6);
                // A row of length 1 has variance 0: rstd = 1/sqrt(eps) is exact enough.
                assert_close(&what, &rstd.to_f64_vec(), &want_rstd, 1e-4, 0.0);

                let (g, gv) = tensor(&normals(rows * d, 23, 1.0), dtype, &[rows, d]);
                let (gx, gw, gb) = ops().layer_norm_backward(&x, &w, &mean, &rstd, &g).unwrap();
                let [want_gx, want_gw, want_gb] = layer_norm_grad_ref(&xv, &wv, &gv, d);
                let what = format!("layer_norm_backward {dtype} [{rows}, {d}]");
                let t = t.max(1e-5);
                if d > 1 {
                    // With d == 1, x̂ is 0 up to the rounding of the f32 mean amplified by
                    // rstd = 1/sqrt(eps), so only the bias gradient is well conditioned.
                    assert_close(&what, &gx.to_f64_vec(), &want_gx, t, t);
                    assert_close(&what, &gw.to_f64_vec(), &want_gw, t, 10.0 * t);
                }
                assert_close(&what, &gb.to_f64_vec(), &want_gb, t, 10.0 * t);
            }
        }
    }
}

#[test]
fn weight_gradients_overwrite_the_output_and_are_zero_without_rows() {
    let x = Tensor::zeros(DType::F32, [0, 4]).unwrap();
    let w = Tensor::from_f64(&[1.0; 4], DType::F32, [4]).unwrap();
    let rstd = Tensor::zeros(DType::F32, [0]).unwrap();
    let gx = Tensor::zeros(DType::F32, [0, 4]).unwrap();
    let gw = Tensor::from_f64(&[7.0; 4], DType::F32, [4]).unwrap();
    let gb = Tensor::from_f64(&[7.0; 4], DType::F32, [4]).unwrap();
    CpuBackend
        .rms_norm_backward(&x, &w, &rstd, &x, &gx, &gw)
        .unwrap();
    assert_eq!(gw.to_f64_vec(), [0.0; 4]);
    let gw = Tensor::from_f64(&[7.0; 4], DType::F32, [4]).unwrap();
    CpuBackend
        .layer_norm_backward(
            &x,
            &w,
            NormStats {
                mean: &rstd,
                rstd: &rstd,
            },
            &x,
            LayerNormGrads {
                x: &gx,
                weight: &gw,
                bias: &gb,
            },
        )
        .unwrap();
    assert_eq!(gw.to_f64_vec(), [0.0; 4]);
    assert_eq!(gb.to_f64_vec(), [0.0; 4]);
}

#[test]
fn norms_accept_a_weight_of_another_dtype() {
    let (rows, d) = (3, 33);
    let (x, xv) = tensor(&normals(rows * d, 30, 1.0), DType::BF16, &[rows, d]);
    let (w, wv) = tensor(&weight(d, 31), DType::F32, &[d]);
    let (out, rstd) = ops().rms_norm(&x, &w, EPS).unwrap();
    assert_close(
        "rms_norm bf16 x, f32 weight",
        &out.to_f64_vec(),
        &rms_norm_ref(&xv, &wv, d).0,
        2e-2,
        2e-2,
    );
    let (_, gw) = ops().rms_norm_backward(&x, &w, &rstd, &x).unwrap();
    assert_eq!(gw.dtype(), DType::F32);
    assert_close(
        "rms_norm_backward f32 weight",
        &gw.to_f64_vec(),
        &rms_norm_grad_ref(&xv, &wv, &xv, d).1,
        1e-5,
        1e-4,
    );
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let (rows, d) = (4, 7);
    let (x, xv) = tensor(&normals(rows * d, 40, 1.5), DType::F64, &[rows, d]);
    let (w, wv) = tensor(&weight(d, 41), DType::F64, &[d]);
    let (g, gv) = tensor(&normals(rows * d, 42, 1.0), DType::F64, &[rows, d]);
    let (_, rstd) = ops().rms_norm(&x, &w, EPS).unwrap();
    let (gx, gw) = ops().rms_norm_backward(&x, &w, &rstd, &g).unwrap();
    let fd_x = finite_diff(&xv, |x| dot(&rms_norm_ref(x, &wv, d).0, &gv));
    let fd_w = finite_diff(&wv, |w| dot(&rms_norm_ref(&xv, w, d).0, &gv));
    assert_close("rms_norm fd x", &gx.to_f64_vec(), &fd_x, 1e-5, 1e-6);
    assert_close("rms_norm fd w", &gw.to_f64_vec(), &fd_w, 1e-5, 1e-6);
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let (rows, d) = (4, 7);
    let (x, xv) = tensor(&normals(rows * d, 50, 1.5), DType::F64, &[rows, d]);
    let (w, wv) = tensor(&weight(d, 51), DType::F64, &[d]);
    let (b, bv) = tensor(&normals(d, 52, 0.5), DType::F64, &[d]);
    let (g, gv) = tensor(&normals(rows * d, 53, 1.0), DType::F64, &[rows, d]);
    let (_, mean, rstd) = ops().layer_norm(&x, &w, &b, EPS).unwrap();
    let (gx, gw, gb) = ops().layer_norm_backward(&x, &w, &mean, &rstd, &g).unwrap();
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        let [out, _, _] = layer_norm_ref(x, w, b, d);
        dot(&out, &gv)
    };
    let fd_x = finite_diff(&xv, |x| loss(x, &wv, &bv));
    let fd_w = finite_diff(&wv, |w| loss(&xv, w, &bv));
    let fd_b = finite_diff(&bv, |b| loss(&xv, &wv, b));
    assert_close("layer_norm fd x", &gx.to_f64_vec(), &fd_x, 1e-5, 1e-6);
    assert_close("layer_norm fd w", &gw.to_f64_vec(), &fd_w, 1e-5, 1e-6);
    assert_close("layer_norm fd b", &gb.to_f64_vec(), &fd_b, 1e-5, 1e-6);
}

// ----- rope -----

/// `(cos, sin)` tables `[seq, half]` of the usual rotary angles.
fn rope_tables(seq: usize, half: usize) -> (Vec<f64>, Vec<f64>) {
    let angle = |s: usize, i: usize| s as f64 / 10000f64.powf(i as f64 / half.max(1) as f64);
    let cos = (0..seq * half).map(|k| angle(k / half, k % half).cos());
    let sin = (0..seq * half).map(|k| angle(k / half, k % half).sin());
    (
        cos.map(|c| c as f32 as f64).collect(),
        sin.map(|s| s as f32 as f64).collect(),
    )
}

#[test]
fn rope_matches_naive_and_inverse_undoes_it() {
    let shapes = [[1, 1, 1, 2], [2, 5, 3, 8], [3, 7, 2, 34], [0, 4, 2, 6]];
    for dtype in FLOATS {
        for dims in shapes {
            let n = dims.iter().product();
            let (x, xv) = tensor(&normals(n, 60, 1.0), dtype, &dims[..]);
            let (cv, sv) = rope_tables(dims[1], dims[3] / 2);
            let table = [dims[1], dims[3] / 2];
            let cos = Tensor::from_f64(&cv, DType::F32, table).unwrap();
            let sin = Tensor::from_f64(&sv, DType::F32, table).unwrap();
            let t = tol(dtype);
            for inverse in [false, true] {
                let out = ops().rope(&x, &cos, &sin, inverse).unwrap();
                let what = format!("rope {dtype} {dims:?} inverse {inverse}");
                let want = rope_ref(&xv, &cv, &sv, dims, inverse);
                assert_close(&what, &out.to_f64_vec(), &want, t, t);
            }
            let there = ops().rope(&x, &cos, &sin, false).unwrap();
            let back = ops().rope(&there, &cos, &sin, true).unwrap();
            let what = format!("rope round trip {dtype} {dims:?}");
            assert_close(&what, &back.to_f64_vec(), &xv, 2.0 * t, 2.0 * t);
        }
    }
}

// ----- swiglu -----

#[test]
fn swiglu_forward_and_backward_match_naive() {
    for dtype in FLOATS {
        for n in [0, 1, 7, 33, 1000, 40_000] {
            let (gate, gv) = tensor(&normals(n, 70, 3.0), dtype, &[n]);
            let (up, uv) = tensor(&normals(n, 71, 1.0), dtype, &[n]);
            let (go, gov) = tensor(&normals(n, 72, 1.0), dtype, &[n]);
            let t = tol(dtype);
            let out = ops().swiglu(&gate, &up).unwrap();
            let what = format!("swiglu {dtype} [{n}]");
            assert_close(&what, &out.to_f64_vec(), &swiglu_ref(&gv, &uv), t, t * 1e-2);
            let (gg, gu) = ops().swiglu_backward(&gate, &up, &go).unwrap();
            let (want_gg, want_gu) = swiglu_grad_ref(&gv, &uv, &gov);
            let what = format!("swiglu_backward {dtype} [{n}]");
            assert_close(&what, &gg.to_f64_vec(), &want_gg, t, t * 1e-2);
            assert_close(&what, &gu.to_f64_vec(), &want_gu, t, t * 1e-2);
        }
    }
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let n = 11;
    let (gate, gv) = tensor(&normals(n, 80, 3.0), DType::F64, &[n]);
    let (up, uv) = tensor(&normals(n, 81, 1.0), DType::F64, &[n]);
    let (go, gov) = tensor(&normals(n, 82, 1.0), DType::F64, &[n]);
    let (gg, gu) = ops().swiglu_backward(&gate, &up, &go).unwrap();
    let fd_gate = finite_diff(&gv, |g| dot(&swiglu_ref(g, &uv), &gov));
    let fd_up = finite_diff(&uv, |u| dot(&swiglu_ref(&gv, u), &gov));
    assert_close("swiglu fd gate", &gg.to_f64_vec(), &fd_gate, 1e-6, 1e-8);
    assert_close("swiglu fd up", &gu.to_f64_vec(), &fd_up, 1e-6, 1e-8);
}

// ----- optimizer -----

struct NaiveAdamW {
    param: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl NaiveAdamW {
    fn step(&mut self, grad: &[f64], hp: AdamW) {
        let (b1, b2) = (hp.beta1 as f64, hp.beta2 as f64);
        let (c1, c2) = (1.0 - b1.powi(hp.step as i32), 1.0 - b2.powi(hp.step as i32));
        for (i, &g) in grad.iter().enumerate() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let update = (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + hp.eps as f64);
            self.param[i] -= hp.lr as f64 * (update + hp.weight_decay as f64 * self.param[i]);
        }
    }
}

#[test]
fn adamw_three_steps_match_naive() {
    for dtype in FLOATS {
        for n in [0, 1, 33, 40_000] {
            let (param, pv) = tensor(&normals(n, 90, 1.0), DType::F32, &[n]);
            let (m, v) = (
                Tensor::zeros(DType::F32, [n]).unwrap(),
                Tensor::zeros(DType::F32, [n]).unwrap(),
            );
            let mut naive = NaiveAdamW {
                param: pv,
                m: vec![0.0; n],
                v: vec![0.0; n],
            };
            for step in 1..=3 {
                let hp = AdamW {
                    lr: 1e-2,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.1,
                    step,
                };
                let (grad, gv) = tensor(&normals(n, 90 + step, 0.1), dtype, &[n]);
                ops().adamw(&param, &grad, &m, &v, hp).unwrap();
                naive.step(&gv, hp);
                let what = format!("adamw {dtype} [{n}] step {step}");
                assert_close(&what, &param.to_f64_vec(), &naive.param, 1e-5, 1e-6);
                // m mixes gradients of both signs: its rounding is relative to |g| ~ 0.1.
                assert_close(&what, &m.to_f64_vec(), &naive.m, 1e-5, 1e-8);
                assert_close(&what, &v.to_f64_vec(), &naive.v, 1e-5, 1e-12);
            }
        }
    }
}

#[test]
fn sum_squares_matches_naive() {
    let parts: Vec<(Tensor, Vec<f64>)> = FLOATS
        .iter()
        .zip([0, 1, 1000, 40_000])
        .enumerate()
        .map(|(i, (&dtype, n))| tensor(&normals(n, 100 + i as u64, 2.0), dtype, &[n]))
        .collect();
    let tensors: Vec<&Tensor> = parts.iter().map(|(t, _)| t).collect();
    let want: f64 = parts
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x * x))
        .sum();
    let got = ops().sum_squares(&tensors).unwrap();
    assert!((got - want).abs() <= 1e-12 * want, "got {got}, want {want}");
    assert_eq!(ops().sum_squares(&[]).unwrap(), 0.0);
}

// ----- determinism -----

/// Every kernel that reduces across rows or tasks, on shapes that split into many tasks.
fn reduction_outputs() -> Vec<Vec<u64>> {
    let (rows, d) = (2049, 96);
    let (x, _) = tensor(&normals(rows * d, 110, 1.0), DType::F32, &[rows, d]);
    let (w, _) = tensor(&weight(d, 111), DType::F32, &[d]);
    let (b, _) = tensor(&normals(d, 112, 0.5), DType::F32, &[d]);
    let (g, _) = tensor(&normals(rows * d, 113, 1.0), DType::F32, &[rows, d]);
    let t = Tensor::from_slice(&targets(rows, d), [rows]).unwrap();
    let (gl, _) = tensor(&normals(rows, 114, 1.0), DType::F32, &[rows]);
    let (_, rstd) = ops().rms_norm(&x, &w, EPS).unwrap();
    let (rms_gx, rms_gw) = ops().rms_norm_backward(&x, &w, &rstd, &g).unwrap();
    let (ln_out, mean, rstd) = ops().layer_norm(&x, &w, &b, EPS).unwrap();
    let (ln_gx, ln_gw, ln_gb) = ops().layer_norm_backward(&x, &w, &mean, &rstd, &g).unwrap();
    let (losses, lse) = ops().cross_entropy(&x, &t, IGNORE).unwrap();
    let ce_grad = ops()
        .cross_entropy_backward(&x, &t, &lse, &gl, IGNORE)
        .unwrap();
    let softmax = ops().softmax(&x).unwrap();
    let norm = ops().sum_squares(&[&x, &g]).unwrap();
    let mut outs: Vec<Vec<u64>> = [
        &rms_gx, &rms_gw, &ln_out, &ln_gx, &ln_gw, &ln_gb, &losses, &ce_grad, &softmax,
    ]
    .iter()
    .map(|t| bits(t))
    .collect();
    outs.push(vec![norm.to_bits()]);
    outs
}

#[test]
fn reductions_are_bit_identical_across_runs_and_thread_counts() {
    let first = reduction_outputs();
    assert_eq!(first, reduction_outputs(), "two runs differ");
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(
            first,
            pool.install(reduction_outputs),
            "{threads} threads differ from the global pool"
        );
    }
}
