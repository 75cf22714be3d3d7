//! What a training benchmark measures, shared by luoshu's runs and the PyTorch baseline.

/// Seed of the random batch and of both systems' initialization.
pub const SEED: u64 = 0;

/// What one system measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainMeasurement {
    pub system: String,
    /// Median over the measured steps.
    pub step_seconds: f64,
    /// The fastest measured step (less sensitive to other load on the machine).
    pub best_step_seconds: f64,
    pub tokens_per_second: f64,
    /// Peak resident set of the measuring process, if the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// Its peak before the model was built (the runtime and libraries alone).
    pub startup_rss_mib: Option<f64>,
    pub first_loss: f64,
    pub last_loss: f64,
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
