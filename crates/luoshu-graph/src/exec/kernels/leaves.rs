use crate::{Distribution, Error, Op, Result};
use luoshu_backend::ops::RandomDist;
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;

/// Computed leaves. Inputs and parameters are bound by name from the feeds, never computed.
pub(super) fn run(ops: &Ops, op: &Op, out: &Tensor) -> Result<()> {
    match op {
        Op::Full { value, .. } => ops.fill_into(value.get(), out)?,
        Op::Constant(c) => {
            let values: Vec<f64> = c.values.iter().map(|v| v.get()).collect();
            ops.copy_into(&Tensor::from_f64(&values, c.dtype, c.dims.as_slice())?, out)?;
        }
        Op::Arange { start, step, .. } => ops.arange_into(start.get(), step.get(), out)?,
        Op::Random {
            dist, seed, stream, ..
        } => ops.random_into(random_dist(*dist), *seed, *stream, out)?,
        Op::Input { name, .. } | Op::Parameter { name, .. } => {
            return Err(Error::Invalid {
                detail: format!("leaf `{name}` is fed by name, not computed"),
            })
        }
        other => return Err(super::context::not_in_family(other, "leaf")),
    }
    Ok(())
}

/// The backend's f32 parameters of a graph distribution.
fn random_dist(dist: Distribution) -> RandomDist {
    match dist {
        Distribution::Uniform { low, high } => RandomDist::Uniform {
            low: low.get() as f32,
            high: high.get() as f32,
        },
        Distribution::Normal { mean, std } => RandomDist::Normal {
            mean: mean.get() as f32,
            std: std.get() as f32,
        },
        Distribution::Bernoulli { p } => RandomDist::Bernoulli { p: p.get() as f32 },
    }
}
