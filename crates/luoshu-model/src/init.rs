//! Deterministic parameter initialization and rotary-embedding tables.

use crate::spec::param_specs;
use crate::{ModelConfig, ParamStore, Result};
use luoshu_tensor::{rng, Tensor};

/// Standard deviation of embeddings and projections (GPT-2 / LLaMA practice).
pub const INIT_STD: f64 = 0.02;

/// A random stream per parameter name, so a parameter's values do not depend on which
/// other parameters exist (FNV-1a of the name).
fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// f32 parameters of `cfg` drawn from `seed` through the counter-based generator: normal
/// with std [`INIT_STD`], output projections scaled by `1/sqrt(2·n_layers)` so the
/// residual stream's variance does not grow with depth, norm gains 1.
pub fn init_params(cfg: &ModelConfig, seed: u64) -> Result<ParamStore> {
    cfg.validate()?;
    let depth_scale = 1.0 / (2.0 * cfg.n_layers as f64).sqrt();
    let mut store = ParamStore::new();
    for spec in param_specs(cfg) {
        let numel: usize = spec.shape.iter().product();
        let std = if spec.role.is_norm() {
            None
        } else if spec.role.writes_residual() {
            Some(INIT_STD * depth_scale)
        } else {
            Some(INIT_STD)
        };
        let stream = stream_of(&spec.name);
        let values: Vec<f32> = match std {
            None => vec![1.0; numel],
            Some(std) => (0..numel as u64)
                .map(|i| (rng::normal(seed, stream, i) as f64 * std) as f32)
                .collect(),
        };
        store.insert(&spec.name, Tensor::from_vec(values, spec.shape.as_slice())?)?;
    }
    Ok(store)
}

/// Rotary tables `(cos, sin)`, each f32 `[len, head_dim/2]`, for positions
/// `start..start+len`: angle `pos · theta^(-2i/head_dim)`, computed in f64.
pub fn rope_tables(
    head_dim: usize,
    theta: f64,
    start: usize,
    len: usize,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for pos in start..start + len {
        for i in 0..half {
            let inv_freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
            let angle = pos as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let shape = [len, half];
    Ok((
        Tensor::from_vec(cos, shape.as_slice())?,
        Tensor::from_vec(sin, shape.as_slice())?,
    ))
}
