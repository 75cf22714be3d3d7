//! Choosing the next token from logits: greedy, temperature and top-k sampling. Draws come
//! from the counter-based generator, indexed by decoding step, so a seed reproduces a
//! sample exactly.

use crate::{Error, Result};
use luoshu_tensor::rng;

/// The generator stream of sampling draws ("sample" in ASCII), apart from parameter init.
const SAMPLING_STREAM: u64 = 0x7361_6d70_6c65;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f64,
    /// Sample only among the `k` most likely tokens (`None`: all of them).
    pub top_k: Option<usize>,
    /// Seeds the draws; step `i` of decoding uses draw `i` of this seed's stream.
    pub seed: u64,
}

impl Sampler {
    /// Refuses a negative or non-finite temperature and a `top_k` of 0.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::Generate(format!(
                "temperature must be a finite number >= 0 (0 is greedy), got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::Generate("top_k must be at least 1".into()));
        }
        Ok(())
    }

    /// The token chosen from `logits` at decoding step `step` (the index of the draw).
    pub fn sample(&self, logits: &[f32], step: u64) -> Result<u32> {
        self.validate()?;
        if logits.is_empty() || logits.iter().any(|l| l.is_nan()) {
            return Err(Error::State(format!(
                "cannot sample from {} logits containing NaN or none at all",
                logits.len()
            )));
        }
        // Most likely first; equal logits keep the lower id, so top_k = 1 is greedy.
        let mut ranked: Vec<usize> = (0..logits.len()).collect();
        ranked.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.temperature == 0.0 {
            return token_id(ranked[0]);
        }
        ranked.truncate(self.top_k.unwrap_or(ranked.len()));
        let max = logits[ranked[0]] as f64;
        let weights: Vec<f64> = ranked
            .iter()
            .map(|&i| ((logits[i] as f64 - max) / self.temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = rng::uniform(self.seed, SAMPLING_STREAM, step) as f64 * total;
        for (&id, w) in ranked.iter().zip(&weights) {
            if target < *w {
                return token_id(id);
            }
            target -= w;
        }
        // Rounding left `target` past the last weight: the least likely candidate.
        token_id(ranked[ranked.len() - 1])
    }
}

fn token_id(index: usize) -> Result<u32> {
    u32::try_from(index).map_err(|_| Error::State(format!("token id {index} does not fit in u32")))
}
