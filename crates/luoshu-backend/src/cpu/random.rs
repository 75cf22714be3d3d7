//! CPU kernel: counter-based random tensors. Element `i` is a pure function of
//! `(seed, stream, i)` (see `luoshu_tensor::rng`), so chunks can be filled in parallel and
//! every backend agrees bit for bit.

use super::access::output;
use super::parallel::for_chunks;
use super::rows::with_float;
use crate::ops::RandomDist;
use crate::{Error, Result};
use bytemuck::Pod;
use luoshu_tensor::{rng, Borrows, DType, Element, Tensor};

pub(crate) fn random(dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
    let uniform = move |i: u64| rng::uniform(seed, stream, i);
    if out.dtype() == DType::Bool {
        return match dist {
            RandomDist::Bernoulli { p } => generate(out, move |i| u8::from(uniform(i) < p)),
            _ => Err(Error::UnsupportedDType {
                op: "random",
                dtype: DType::Bool,
                supported: "f64, f32, bf16, f16 (bool only for bernoulli)",
            }),
        };
    }
    with_float!("random", out.dtype(), |T| match dist {
        RandomDist::Uniform { low, high } => {
            let (low, high) = (f64::from(low), f64::from(high));
            generate(out, move |i| {
                T::from_f64(low + (high - low) * f64::from(uniform(i)))
            })
        }
        RandomDist::Normal { mean, std } => {
            let (mean, std) = (f64::from(mean), f64::from(std));
            generate(out, move |i| {
                T::from_f64(mean + std * f64::from(rng::normal(seed, stream, i)))
            })
        }
        RandomDist::Bernoulli { p } => generate(out, move |i| {
            T::from_f64(if uniform(i) < p { 1.0 } else { 0.0 })
        }),
    })
}

/// `out[i] = value(i)` for every logical index `i`.
fn generate<T: Pod + Send>(out: &Tensor, value: impl Fn(u64) -> T + Sync + Send) -> Result<()> {
    let borrows = Borrows::new();
    let (dst, _) = output::<T>(&borrows, "random", out)?;
    for_chunks(dst, |start, chunk| {
        for (i, d) in chunk.iter_mut().enumerate() {
            *d = value((start + i) as u64);
        }
    });
    Ok(())
}
