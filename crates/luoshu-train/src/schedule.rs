//! Learning-rate schedule: linear warmup, then cosine decay to a floor.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Learning rate per optimizer step: linear warmup to `peak_lr`, then a half cosine down to
/// `min_lr` at `total_steps` (see [`LrSchedule::lr_at`]); missing fields take the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrSchedule {
    /// Learning rate at the end of warmup.
    pub peak_lr: f64,
    /// Learning rate reached at `total_steps` and kept afterwards.
    pub min_lr: f64,
    /// Steps of linear warmup (0 starts at `peak_lr`).
    pub warmup_steps: u64,
    /// The step at which the cosine reaches `min_lr`; must be at least `warmup_steps`.
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
    /// [`Error::TrainConfig`] unless `0 <= min_lr <= peak_lr`, `peak_lr > 0` (both finite) and
    /// `warmup_steps <= total_steps`.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(warmup_steps: u64, total_steps: u64) -> LrSchedule {
        LrSchedule {
            peak_lr: 1.0,
            min_lr: 0.1,
            warmup_steps,
            total_steps,
        }
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = schedule(4, 12);
        for (step, want) in [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0)] {
            assert_close(s.lr_at(step), want);
        }
    }

    /// Decay over steps 4..12 (8 steps): lr = 0.1 + 0.9 · ½(1 + cos(π · (step − 4) / 8)).
    #[test]
    fn cosine_decays_from_the_peak_to_the_floor_and_stays_there() {
        let s = schedule(4, 12);
        let quarter = 0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        for (step, want) in [
            (4, 1.0),
            (6, quarter),
            (8, 0.55),
            (10, 0.1 + 0.9 - (quarter - 0.1)),
            (12, 0.1),
            (13, 0.1),
            (1000, 0.1),
        ] {
            assert_close(s.lr_at(step), want);
        }
        assert_close(quarter, 0.868_198_051_533_946_4);
    }

    #[test]
    fn no_warmup_starts_at_the_peak_and_no_decay_drops_to_the_floor() {
        assert_close(schedule(0, 10).lr_at(0), 1.0);
        assert_close(schedule(0, 10).lr_at(5), 0.55);
        let warmup_only = schedule(3, 3);
        assert_close(warmup_only.lr_at(2), 1.0);
        assert_close(warmup_only.lr_at(3), 0.1);
    }

    #[test]
    fn impossible_schedules_are_refused_saying_what_must_hold() {
        let bad = |s: LrSchedule| s.validate().unwrap_err().to_string();
        assert!(
            bad(schedule(13, 12)).contains("warmup_steps (13) must not exceed total_steps (12)")
        );
        let inverted = LrSchedule {
            min_lr: 2.0,
            ..schedule(4, 12)
        };
        assert!(bad(inverted).contains("need 0 <= min_lr <= peak_lr"));
        let nan = LrSchedule {
            peak_lr: f64::NAN,
            ..schedule(4, 12)
        };
        assert!(bad(nan).contains("peak_lr NaN"));
        assert!(schedule(12, 12).validate().is_ok());
    }
}
