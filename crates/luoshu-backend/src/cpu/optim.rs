//! CPU kernels: the AdamW update (in place, elementwise) and the sum of squares used for
//! global-norm clipping (fixed chunks, f64 partial sums added in chunk order).

use super::rows::{input, lane_sum, output, with_float, Float, ELEMS_PER_TASK};
use crate::ops::AdamW;
use crate::Result;
use luoshu_tensor::{Borrows, Element, Tensor};
use rayon::prelude::*;

pub(crate) fn adamw(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamW,
) -> Result<()> {
    with_float!("adamw", grad.dtype(), |G| adamw_typed::<G>(
        param, grad, m, v, hp
    ))
}

fn adamw_typed<G: Float>(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamW,
) -> Result<()> {
    const OP: &str = "adamw";
    let borrows = Borrows::new();
    let grad = input::<G>(&borrows, OP, "grad", grad)?;
    let param = output::<f32>(&borrows, OP, "param", param)?;
    let m = output::<f32>(&borrows, OP, "m", m)?;
    let v = output::<f32>(&borrows, OP, "v", v)?;
    // Bias corrections in f64: `β^step` of a large step must not underflow early.
    let step = hp.step as f64;
    let correction1 = (1.0 - f64::from(hp.beta1).powf(step)) as f32;
    let correction2 = (1.0 - f64::from(hp.beta2).powf(step)) as f32;
    let AdamW {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        ..
    } = hp;
    param
        .par_chunks_mut(ELEMS_PER_TASK)
        .zip(m.par_chunks_mut(ELEMS_PER_TASK))
        .zip(v.par_chunks_mut(ELEMS_PER_TASK))
        .zip(grad.par_chunks(ELEMS_PER_TASK))
        .for_each(|(((param, m), v), grad)| {
            for (((p, m), v), &g) in param.iter_mut().zip(m).zip(v).zip(grad) {
                let g = g.load_as::<f32>();
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                let (m_hat, v_hat) = (*m / correction1, *v / correction2);
                *p -= lr * (m_hat / (v_hat.sqrt() + eps) + weight_decay * *p);
            }
        });
    Ok(())
}

pub(crate) fn sum_squares(tensors: &[&Tensor]) -> Result<f64> {
    tensors.iter().try_fold(0.0, |total, t| {
        with_float!("sum_squares", t.dtype(), |T| Ok(
            total + tensor_sum_squares::<T>(t)?
        ))
    })
}

fn tensor_sum_squares<T: Float>(t: &Tensor) -> Result<f64> {
    let borrows = Borrows::new();
    let x = input::<T>(&borrows, "sum_squares", "tensors", t)?;
    let partials: Vec<f64> = x
        .par_chunks(ELEMS_PER_TASK)
        .map(|chunk| {
            lane_sum(chunk.len(), |i| {
                let v = Element::to_f64(chunk[i]);
                v * v
            })
        })
        .collect();
    Ok(partials.iter().sum())
}
