//! Finite-difference checks of the oracle's gradients, in f64 on the reference backend:
//! for a random upstream gradient `g`, the vector-Jacobian product the backward op returns
//! must match the central differences of `L(x) = <g, forward(x)>`.
use super::compare::{compare, Tol};
use crate::Result;
use luoshu_tensor::{DType, Tensor};

/// Step of the central differences. Some forward outputs are f32 by contract (losses, lse),
/// so the step is large enough that their rounding does not swamp the difference.
const STEP: f64 = 1e-3;
/// Agreement expected between the analytic and numerical gradients.
const TOL: Tol = Tol {
    atol: 1e-3,
    rtol: 1e-3,
};

/// `<a, b>` in f64.
pub fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

/// `t` with element `index` moved by `delta` (a fresh f64 tensor).
fn nudged(t: &Tensor, index: usize, delta: f64) -> Result<Tensor> {
    let mut values = t.to_f64_vec();
    values[index] += delta;
    Ok(Tensor::from_f64(&values, DType::F64, t.dims())?)
}

/// Compare `analytic[k]` (the gradient of `loss` for `inputs[wrt[k]]`) with central
/// differences of `loss`. Returns a message naming the first input that disagrees.
pub fn check_vjp(
    inputs: &[Tensor],
    wrt: &[usize],
    analytic: &[Tensor],
    loss: impl Fn(&[Tensor]) -> Result<f64>,
) -> std::result::Result<(), String> {
    for (&k, grad) in wrt.iter().zip(analytic) {
        let mut numerical = Vec::with_capacity(inputs[k].numel());
        for index in 0..inputs[k].numel() {
            let mut at = inputs.to_vec();
            at[k] = nudged(&inputs[k], index, STEP).map_err(|e| e.to_string())?;
            let plus = loss(&at).map_err(|e| e.to_string())?;
            at[k] = nudged(&inputs[k], index, -STEP).map_err(|e| e.to_string())?;
            let minus = loss(&at).map_err(|e| e.to_string())?;
            numerical.push((plus - minus) / (2.0 * STEP));
        }
        let c = compare(&grad.to_f64_vec(), &numerical, TOL);
        if c.exceeded > 0 || c.spurious_nonfinite.is_some() || grad.numel() != numerical.len() {
            let worst = c.worst.map_or(String::new(), |e| {
                format!(
                    ": at [{}] the backward gives {} but finite differences give {}",
                    e.index, e.got, e.want
                )
            });
            return Err(format!(
                "the reference gradient of input #{k} disagrees with finite differences in {} of {} elements{worst}",
                c.exceeded,
                numerical.len()
            ));
        }
    }
    Ok(())
}

/// The verdict of a check run on the oracle; an error of the oracle itself fails it too.
pub fn oracle_verdict(
    r: Result<std::result::Result<(), String>>,
) -> std::result::Result<(), String> {
    r.map_err(|e| format!("the reference failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_sum(inputs: &[Tensor]) -> Result<f64> {
        Ok(inputs[0].to_f64_vec().iter().map(|x| x * x).sum())
    }

    #[test]
    fn accepts_the_right_gradient_and_rejects_a_wrong_one() {
        let x = Tensor::from_f64(&[0.5, -1.0, 2.0], DType::F64, [3]).unwrap();
        let right = Tensor::from_f64(&[1.0, -2.0, 4.0], DType::F64, [3]).unwrap();
        let wrong = Tensor::from_f64(&[1.0, -2.0, 4.1], DType::F64, [3]).unwrap();
        let inputs = [x];
        assert!(check_vjp(&inputs, &[0], &[right], square_sum).is_ok());
        let err = check_vjp(&inputs, &[0], &[wrong], square_sum).unwrap_err();
        assert!(err.contains("[2]"), "{err}");
    }
}
