//! AdamW with global-norm gradient clipping, on the backend's fused kernels.

use crate::{Error, Result};
use luoshu_backend::ops::{AdamW as AdamWStep, BinaryOp};
use luoshu_backend::Ops;
use luoshu_model::ParamStore;
use luoshu_tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters other than the learning rate (which comes from the schedule);
/// missing fields take the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Decay of the first-moment (mean) estimate, in `[0, 1)`; 0.9 by default.
    pub beta1: f64,
    /// Decay of the second-moment estimate, in `[0, 1)`; 0.95 by default.
    pub beta2: f64,
    /// Added to `sqrt(v̂)` in the update's denominator, `> 0`; 1e-8 by default.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to norm gains).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

impl AdamWConfig {
    /// The weight decay of a parameter of shape `dims`: matrices decay, norm gains don't.
    pub fn decay_for(&self, dims: &[usize]) -> f64 {
        if dims.len() >= 2 {
            self.weight_decay
        } else {
            0.0
        }
    }

    /// [`Error::TrainConfig`] unless both betas are in `[0, 1)`, `eps > 0` and `weight_decay >= 0`
    /// (all finite).
    pub fn validate(&self) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::TrainConfig(format!(
                    "{name} must be in [0, 1), got {beta}"
                )));
            }
        }
        let eps_ok = self.eps > 0.0 && self.eps.is_finite();
        let decay_ok = self.weight_decay >= 0.0 && self.weight_decay.is_finite();
        if !(eps_ok && decay_ok) {
            return Err(Error::TrainConfig(format!(
                "need eps > 0 and weight_decay >= 0, got eps {} and weight_decay {}",
                self.eps, self.weight_decay
            )));
        }
        Ok(())
    }
}

/// AdamW's state: first and second moments per parameter and the number of steps taken.
#[derive(Debug, Clone)]
pub struct AdamWState {
    /// Optimizer steps taken (the bias correction of the next step uses `step + 1`).
    pub step: u64,
    /// First moments: f32 tensors with the parameters' names and shapes.
    pub m: ParamStore,
    /// Second moments: f32 tensors with the parameters' names and shapes.
    pub v: ParamStore,
}

/// AdamW over a [`ParamStore`], updating parameters in place.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    state: AdamWState,
}

/// Zero f32 tensors with `params`' names and shapes.
fn zeros_like(ops: &Ops, params: &ParamStore) -> Result<ParamStore> {
    let mut out = ParamStore::new();
    for (name, t) in params.iter() {
        out.insert(name, ops.alloc(DType::F32, t.dims())?)?;
    }
    Ok(out)
}

impl AdamW {
    /// An optimizer for `params` with zero moments at step 0; the config is validated first.
    pub fn new(ops: &Ops, config: AdamWConfig, params: &ParamStore) -> Result<Self> {
        config.validate()?;
        let state = AdamWState {
            step: 0,
            m: zeros_like(ops, params)?,
            v: zeros_like(ops, params)?,
        };
        Ok(AdamW { config, state })
    }

    /// The moments and step count, for checkpoints.
    pub fn state(&self) -> &AdamWState {
        &self.state
    }

    /// Replace the state (moments must match `params`).
    pub fn restore(&mut self, state: AdamWState, params: &ParamStore) -> Result<()> {
        state.m.check_matches(params, "optimizer first moment")?;
        state.v.check_matches(params, "optimizer second moment")?;
        self.state = state;
        Ok(())
    }

    /// One update of every parameter with its gradient at learning rate `lr`.
    pub fn step(
        &mut self,
        ops: &Ops,
        params: &ParamStore,
        grads: &[Tensor],
        lr: f64,
    ) -> Result<()> {
        if grads.len() != params.len() {
            return Err(Error::State(format!(
                "{} gradients for {} parameters",
                grads.len(),
                params.len()
            )));
        }
        self.state.step += 1;
        let c = &self.config;
        for (i, (param, grad)) in params.tensors().iter().zip(grads).enumerate() {
            let decay = c.decay_for(param.dims());
            let hp = AdamWStep {
                lr: lr as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                weight_decay: decay as f32,
                step: self.state.step,
            };
            let (m, v) = (&self.state.m.tensors()[i], &self.state.v.tensors()[i]);
            ops.adamw(param, grad, m, v, hp)?;
        }
        Ok(())
    }
}

/// The global L2 norm of `grads`; when it exceeds `max_norm` (> 0), scale them in place
/// to that norm. Returns the norm before clipping.
pub fn clip_grad_norm(ops: &Ops, grads: &[Tensor], max_norm: f64) -> Result<f64> {
    let refs: Vec<&Tensor> = grads.iter().collect();
    let norm = ops.sum_squares(&refs)?.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        for g in grads {
            let factor = ops.full(max_norm / norm, g.dtype(), &[])?;
            ops.binary_into(BinaryOp::Mul, g, &factor, g)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_backend::cpu::CpuBackend;

    fn grads() -> Vec<Tensor> {
        vec![
            Tensor::from_slice(&[3.0f32, 4.0], [2]).unwrap(),
            Tensor::from_slice(&[12.0f32], [1]).unwrap(),
        ]
    }

    fn values(grads: &[Tensor]) -> Vec<Vec<f32>> {
        grads.iter().map(|g| g.to_vec::<f32>().unwrap()).collect()
    }

    /// The global norm is √(3² + 4² + 12²) = 13 over both tensors together.
    #[test]
    fn a_norm_above_the_limit_scales_every_gradient_by_the_same_factor() {
        let backend = CpuBackend::new();
        let ops = Ops::new(&backend);
        let g = grads();
        let norm = clip_grad_norm(&ops, &g, 6.5).unwrap();
        assert_eq!(norm, 13.0);
        assert_eq!(values(&g), [vec![1.5, 2.0], vec![6.0]]);
    }

    #[test]
    fn a_norm_within_the_limit_or_a_disabled_limit_leaves_gradients_alone() {
        let backend = CpuBackend::new();
        let ops = Ops::new(&backend);
        for max_norm in [13.0, 20.0, 0.0] {
            let g = grads();
            assert_eq!(clip_grad_norm(&ops, &g, max_norm).unwrap(), 13.0);
            assert_eq!(
                values(&g),
                [vec![3.0, 4.0], vec![12.0]],
                "max_norm {max_norm}"
            );
        }
    }
}
