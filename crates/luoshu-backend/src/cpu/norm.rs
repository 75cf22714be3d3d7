//! CPU kernels: RMSNorm and LayerNorm, forward and backward. Rows are split across rayon
//! tasks; the weight (and bias) gradients are per-task partial sums over a fixed split of
//! the rows, combined in task order, so they are bit-identical on every run.

use super::rows::{
    input, lane_sum, load_vec, output, row_chunks_mut, rows_per_partial, rows_per_task, store_vec,
    sum_partials, with_float, Acc, Float,
};
use crate::ops::{LayerNormGrads, NormStats};
use crate::Result;
use luoshu_tensor::{Borrows, Tensor};
use rayon::prelude::*;

/// `(rows, width)` of `x` seen as rows of its last dimension.
fn rows_and_width(x: &Tensor) -> (usize, usize) {
    let width = x.dims().last().copied().unwrap_or(1);
    let rows = x.dims()[..x.rank().saturating_sub(1)].iter().product();
    (rows, width)
}

/// `1 / sqrt(variance + eps)`; `sum` is the row's sum of (centered) squares.
fn reciprocal_std<A: Acc>(sum: A, width: usize, eps: f32) -> A {
    A::ONE / (sum / A::from_usize(width) + A::from_f32(eps)).sqrt()
}

pub(crate) fn rms_norm(
    x: &Tensor,
    weight: &Tensor,
    eps: f32,
    out: &Tensor,
    rstd: &Tensor,
) -> Result<()> {
    with_float!("rms_norm", x.dtype(), |T| rms_forward::<T>(
        x, weight, eps, out, rstd
    ))
}

pub(crate) fn rms_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    rstd: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_weight: &Tensor,
) -> Result<()> {
    with_float!("rms_norm_backward", x.dtype(), |T| rms_backward::<T>(
        x,
        weight,
        rstd,
        grad_out,
        grad_x,
        grad_weight
    ))
}

pub(crate) fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
    out: &Tensor,
    stats: NormStats<'_>,
) -> Result<()> {
    with_float!("layer_norm", x.dtype(), |T| layer_forward::<T>(
        x, weight, bias, eps, out, stats
    ))
}

pub(crate) fn layer_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    stats: NormStats<'_>,
    grad_out: &Tensor,
    grads: LayerNormGrads<'_>,
) -> Result<()> {
    with_float!("layer_norm_backward", x.dtype(), |T| layer_backward::<T>(
        x, weight, stats, grad_out, grads
    ))
}

fn rms_forward<T: Float>(
    x: &Tensor,
    weight: &Tensor,
    eps: f32,
    out: &Tensor,
    rstd: &Tensor,
) -> Result<()> {
    const OP: &str = "rms_norm";
    let borrows = Borrows::new();
    let (rows, d) = rows_and_width(x);
    let w = load_vec::<T::Acc>(OP, "weight", weight)?;
    let x = input::<T>(&borrows, OP, "x", x)?;
    let out = output::<T>(&borrows, OP, "out", out)?;
    let rstd = output::<f32>(&borrows, OP, "rstd", rstd)?;
    let per_task = rows_per_task(d);
    row_chunks_mut(out, d, rows, per_task)
        .zip(rstd.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, (out, rstd))| {
            for (r, rstd) in rstd.iter_mut().enumerate() {
                let row = task * per_task + r;
                let x = &x[row * d..(row + 1) * d];
                let inv = reciprocal_std(
                    lane_sum(d, |j| {
                        let v = x[j].load();
                        v * v
                    }),
                    d,
                    eps,
                );
                *rstd = inv.to_f32();
                let out = &mut out[r * d..(r + 1) * d];
                for ((o, &x), &w) in out.iter_mut().zip(x).zip(&w) {
                    *o = T::store(x.load() * inv * w);
                }
            }
        });
    Ok(())
}

fn rms_backward<T: Float>(
    x: &Tensor,
    weight: &Tensor,
    rstd: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_weight: &Tensor,
) -> Result<()> {
    const OP: &str = "rms_norm_backward";
    let borrows = Borrows::new();
    let (rows, d) = rows_and_width(x);
    let w = load_vec::<T::Acc>(OP, "weight", weight)?;
    let x = input::<T>(&borrows, OP, "x", x)?;
    let rstd = input::<f32>(&borrows, OP, "rstd", rstd)?;
    let g = input::<T>(&borrows, OP, "grad_out", grad_out)?;
    let gx = output::<T>(&borrows, OP, "grad_x", grad_x)?;
    if d == 0 {
        return Ok(());
    }
    let per_task = rows_per_partial(rows, d);
    let partials: Vec<Vec<T::Acc>> = gx
        .par_chunks_mut(per_task * d)
        .enumerate()
        .map(|(task, gx)| {
            let mut gw = vec![T::Acc::ZERO; d];
            for (r, gx) in gx.chunks_mut(d).enumerate() {
                let row = task * per_task + r;
                let span = row * d..(row + 1) * d;
                // Slices of exactly `d` let the compiler drop bounds checks in the loops.
                let (x, g, w) = (&x[span.clone()], &g[span], &w[..d]);
                let (gx, gw) = (&mut gx[..d], &mut gw[..d]);
                let inv = T::Acc::from_f32(rstd[row]);
                // mean(x·w·g) over the row, scaled by rstd³ as the d(rstd)/dx term needs.
                let dot = lane_sum(d, |j| x[j].load() * w[j] * g[j].load());
                let coef = inv * inv * inv * dot / T::Acc::from_usize(d);
                for j in 0..d {
                    let (xj, gj) = (x[j].load(), g[j].load());
                    gx[j] = T::store(inv * w[j] * gj - xj * coef);
                    gw[j] += gj * xj * inv;
                }
            }
            gw
        })
        .collect();
    store_vec(
        OP,
        "grad_weight",
        grad_weight,
        &sum_partials(partials.iter().map(Vec::as_slice), d),
    )
}

fn layer_forward<T: Float>(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
    out: &Tensor,
    NormStats { mean, rstd }: NormStats<'_>,
) -> Result<()> {
    const OP: &str = "layer_norm";
    let borrows = Borrows::new();
    let (rows, d) = rows_and_width(x);
    let w = load_vec::<T::Acc>(OP, "weight", weight)?;
    let b = load_vec::<T::Acc>(OP, "bias", bias)?;
    let x = input::<T>(&borrows, OP, "x", x)?;
    let out = output::<T>(&borrows, OP, "out", out)?;
    let mean = output::<f32>(&borrows, OP, "mean", mean)?;
    let rstd = output::<f32>(&borrows, OP, "rstd", rstd)?;
    let per_task = rows_per_task(d);
    row_chunks_mut(out, d, rows, per_task)
        .zip(mean.par_chunks_mut(per_task))
        .zip(rstd.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, ((out, mean), rstd))| {
            for (r, (mean, rstd)) in mean.iter_mut().zip(rstd).enumerate() {
                let row = task * per_task + r;
                let x = &x[row * d..(row + 1) * d];
                // Two passes (mean, then centered squares) avoid the cancellation of
                // E[x²] - E[x]².
                let mu = lane_sum(d, |j| x[j].load()) / T::Acc::from_usize(d);
                let inv = reciprocal_std(
                    lane_sum(d, |j| {
                        let c = x[j].load() - mu;
                        c * c
                    }),
                    d,
                    eps,
                );
                (*mean, *rstd) = (mu.to_f32(), inv.to_f32());
                let (out, w, b) = (&mut out[r * d..(r + 1) * d], &w[..d], &b[..d]);
                for j in 0..d {
                    out[j] = T::store((x[j].load() - mu) * inv * w[j] + b[j]);
                }
            }
        });
    Ok(())
}

fn layer_backward<T: Float>(
    x: &Tensor,
    weight: &Tensor,
    NormStats { mean, rstd }: NormStats<'_>,
    grad_out: &Tensor,
    grads: LayerNormGrads<'_>,
) -> Result<()> {
    const OP: &str = "layer_norm_backward";
    let LayerNormGrads {
        x: grad_x,
        weight: grad_weight,
        bias: grad_bias,
    } = grads;
    let borrows = Borrows::new();
    let (rows, d) = rows_and_width(x);
    let w = load_vec::<T::Acc>(OP, "weight", weight)?;
    let x = input::<T>(&borrows, OP, "x", x)?;
    let mean = input::<f32>(&borrows, OP, "mean", mean)?;
    let rstd = input::<f32>(&borrows, OP, "rstd", rstd)?;
    let g = input::<T>(&borrows, OP, "grad_out", grad_out)?;
    let gx = output::<T>(&borrows, OP, "grad_x", grad_x)?;
    if d == 0 {
        return Ok(());
    }
    let per_task = rows_per_partial(rows, d);
    // Each task's partial holds its grad_weight sums then its grad_bias sums.
    let partials: Vec<Vec<T::Acc>> = gx
        .par_chunks_mut(per_task * d)
        .enumerate()
        .map(|(task, gx)| {
            let mut partial = vec![T::Acc::ZERO; 2 * d];
            let (gw, gb) = partial.split_at_mut(d);
            for (r, gx) in gx.chunks_mut(d).enumerate() {
                let row = task * per_task + r;
                let span = row * d..(row + 1) * d;
                let (x, g, w) = (&x[span.clone()], &g[span], &w[..d]);
                let (gx, gw, gb) = (&mut gx[..d], &mut gw[..d], &mut gb[..d]);
                let (mu, inv) = (T::Acc::from_f32(mean[row]), T::Acc::from_f32(rstd[row]));
                let xhat = |j: usize| (x[j].load() - mu) * inv;
                let n = T::Acc::from_usize(d);
                let mean_gy = lane_sum(d, |j| g[j].load() * w[j]) / n;
                let mean_gy_xhat = lane_sum(d, |j| g[j].load() * w[j] * xhat(j)) / n;
                for j in 0..d {
                    let (gj, xh) = (g[j].load(), xhat(j));
                    gx[j] = T::store(inv * (gj * w[j] - mean_gy - xh * mean_gy_xhat));
                    gw[j] += gj * xh;
                    gb[j] += gj;
                }
            }
            partial
        })
        .collect();
    let total = sum_partials(partials.iter().map(Vec::as_slice), 2 * d);
    store_vec(OP, "grad_weight", grad_weight, &total[..d])?;
    store_vec(OP, "grad_bias", grad_bias, &total[d..])
}
