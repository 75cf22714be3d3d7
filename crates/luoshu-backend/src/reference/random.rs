//! Reference kernel: counter-based random tensors through `luoshu_tensor::rng`.

use super::access::write_floats;
use crate::ops::RandomDist;
use crate::Result;
use luoshu_tensor::{rng, Tensor};

/// Element `i` (logical row-major) is a pure function of `(seed, stream, i)`, computed in
/// f64 from the generator's f32 draw and converted to `out`'s dtype.
pub(super) fn random(dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
    let draw = |i: usize| {
        let i = i as u64;
        match dist {
            RandomDist::Uniform { low, high } => {
                let (low, high) = (f64::from(low), f64::from(high));
                low + (high - low) * f64::from(rng::uniform(seed, stream, i))
            }
            RandomDist::Normal { mean, std } => {
                f64::from(mean) + f64::from(std) * f64::from(rng::normal(seed, stream, i))
            }
            RandomDist::Bernoulli { p } => {
                if rng::uniform(seed, stream, i) < p {
                    1.0
                } else {
                    0.0
                }
            }
        }
    };
    let values: Vec<f64> = (0..out.numel()).map(draw).collect();
    write_floats(out, &values)
}
