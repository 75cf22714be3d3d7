//! Learning-rate schedule: linear warmup, then cosine decay to a floor.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrSchedule {
    /// Learning rate at the end of warmup.
    pub peak_lr: f64,
    /// Learning rate reached at `total_steps` and kept afterwards.
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            peak_lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 20,
            total_steps: 400,
        }
    }
}

impl LrSchedule {
    pub fn validate(&self) -> Result<()> {
        let finite = self.peak_lr.is_finite() && self.min_lr.is_finite();
        if !finite || self.peak_lr <= 0.0 || self.min_lr < 0.0 || self.min_lr > self.peak_lr {
            return Err(Error::TrainConfig(format!(
                "need 0 <= min_lr <= peak_lr with peak_lr > 0, got min_lr {} and peak_lr {}",
                self.min_lr, self.peak_lr
            )));
        }
        if self.warmup_steps > self.total_steps {
            return Err(Error::TrainConfig(format!(
                "warmup_steps ({}) must not exceed total_steps ({})",
                self.warmup_steps, self.total_steps
            )));
        }
        Ok(())
    }

    /// Learning rate of optimizer step `step` (0-based): `peak·(step+1)/warmup` during
    /// warmup, then a half cosine from `peak_lr` down to `min_lr` at `total_steps`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if step >= self.total_steps || decay_steps == 0 {
            return self.min_lr;
        }
        let progress = (step - self.warmup_steps) as f64 / decay_steps as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.peak_lr - self.min_lr) * cosine
    }
}
