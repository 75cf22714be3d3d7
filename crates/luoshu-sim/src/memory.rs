//! Bytes one rank holds while a phase runs: its strategy's parameters and gradient
//! accumulator, the update strategy's optimizer state (which never moves during a step),
//! and the activations of the micro-batches in flight.

use crate::layout::Layout;
use luoshu_model::{ModelConfig, Precision};
use luoshu_train::memory_estimate::{head_activation_values, layer_activation_values};

/// Bytes by kind on the fullest rank.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Memory {
    /// Parameters in the parameter dtype plus their compute-dtype copies.
    pub parameters: f64,
    /// The gradient accumulator, in the parameter dtype.
    pub gradients: f64,
    /// AdamW's two moments, in the parameter dtype (ZeRO-1: a `1/dp` share).
    pub optimizer: f64,
    /// Activations of the micro-batches in flight under 1F1B, plus the working set of the
    /// one being computed (a recomputed layer, the head's logits).
    pub activations: f64,
}

impl Memory {
    /// All four kinds together.
    pub fn total(&self) -> f64 {
        self.parameters + self.gradients + self.optimizer + self.activations
    }

    /// Everything but the activations: the training state a rank holds between steps.
    pub fn state(&self) -> f64 {
        self.parameters + self.gradients + self.optimizer
    }
}

impl std::ops::AddAssign for Memory {
    fn add_assign(&mut self, other: Memory) {
        self.parameters += other.parameters;
        self.gradients += other.gradients;
        self.optimizer += other.optimizer;
        self.activations += other.activations;
    }
}

impl std::ops::Mul<f64> for Memory {
    type Output = Memory;
    fn mul(self, k: f64) -> Memory {
        Memory {
            parameters: self.parameters * k,
            gradients: self.gradients * k,
            optimizer: self.optimizer * k,
            activations: self.activations * k,
        }
    }
}

/// Element sizes of the number formats of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bytes {
    /// The parameter dtype: parameters, gradients, optimizer moments and the logits.
    pub param: f64,
    /// Activations and the compute copies of parameters.
    pub compute: f64,
    /// Compute copies exist only when the compute dtype differs.
    pub copy: f64,
}

impl Bytes {
    /// The element sizes of `precision`'s dtypes.
    pub fn of(precision: Precision) -> Self {
        let param = precision.param_dtype().size_in_bytes() as f64;
        let compute = precision.compute_dtype().size_in_bytes() as f64;
        Bytes {
            param,
            compute,
            copy: if precision.param_dtype() == precision.compute_dtype() {
                0.0
            } else {
                compute
            },
        }
    }
}

/// AdamW moments one rank of `layout` holds when `layout` is the update strategy.
pub fn optimizer_bytes(layout: &Layout, bytes: Bytes) -> f64 {
    let s = layout.strategy();
    let shards = if s.zero1 { s.dp as f64 } else { 1.0 };
    2.0 * bytes.param * layout.max_stage_params() as f64 / shards
}

/// Activation bytes per token a stage of `layers` layers keeps for each micro-batch in
/// flight, and the bytes per token of the one micro-batch being worked on (the layer
/// recomputed under recomputation, and the head's logits on the last stage).
pub fn activation_bytes_per_token(
    model: &ModelConfig,
    layout: &Layout,
    stage: usize,
    bytes: Bytes,
) -> (f64, f64) {
    let tp = layout.strategy().tp as f64;
    let layers = layout.stages[stage].len() as f64;
    let full = layer_activation_values(model) as f64 * bytes.compute / tp;
    let (in_flight, mut working) = if layout.candidate.recompute {
        (layers * model.d_model as f64 * bytes.compute / tp, full)
    } else {
        (layers * full, 0.0)
    };
    if stage + 1 == layout.stages.len() {
        // Logits and their gradient, in the loss dtype (the parameter dtype).
        working += head_activation_values(model) as f64 * bytes.param / tp;
    }
    (in_flight, working)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Candidate;

    #[test]
    fn state_and_activations_by_hand() {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let bytes = Bytes::of(Precision::Bf16Mixed);
        assert_eq!((bytes.param, bytes.compute, bytes.copy), (4.0, 2.0, 2.0));
        let layout = |s: &str, recompute| {
            Layout::new(
                &model,
                Candidate {
                    strategy: s.parse().unwrap(),
                    recompute,
                },
            )
            .unwrap()
        };
        let n = model.num_parameters() as f64;
        assert_eq!(optimizer_bytes(&layout("dp4", false), bytes), 8.0 * n);
        assert_eq!(optimizer_bytes(&layout("dp4zero1", false), bytes), 2.0 * n);
        // One stage of 32 layers on tp2: (11·4096 + 3·11008) values · 2 bytes / 2 per
        // layer and token; the head adds 2·32000 values · 4 bytes / 2.
        let (in_flight, working) =
            activation_bytes_per_token(&model, &layout("tp2", false), 0, bytes);
        assert_eq!(in_flight, 32.0 * (11.0 * 4096.0 + 3.0 * 11008.0));
        assert_eq!(working, 2.0 * 32000.0 * 2.0);
        let (in_flight, working) =
            activation_bytes_per_token(&model, &layout("tp2", true), 0, bytes);
        assert_eq!(in_flight, 32.0 * 4096.0);
        assert_eq!(working, 11.0 * 4096.0 + 3.0 * 11008.0 + 2.0 * 32000.0 * 2.0);
    }
}
