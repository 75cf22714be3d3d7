//! `luoshu bench train --profile`: where a training step's time goes, per op family, and
//! how close the step comes to the FP32 peak (our GEMM's rate, measured in the same run).

use super::kernels::{our_gemm, GEMM_SHAPES};
use luoshu_backend::profiled::{Family, Profiled};
use std::time::Duration;

/// The FP32 peak the profile compares against: our best GEMM rate on the square 1024³
/// shape, in FLOP/s.
pub fn measure_peak(budget: Duration) -> Result<f64, String> {
    Ok(our_gemm(&GEMM_SHAPES[0], budget)? * 1e9)
}

/// What the profile needs besides the per-family counters.
pub struct StepTotals {
    /// Summed wall time of the measured steps.
    pub seconds: f64,
    pub best_step_seconds: f64,
    pub steps: usize,
    /// FLOPs of one step by the PaLM MFU formula (`ModelConfig::flops_per_token_at`).
    pub model_flops: f64,
    /// FLOP/s of the GEMM peak measured before and after the steps.
    pub peaks: (f64, f64),
}

impl StepTotals {
    /// The peak the step is compared with: the higher GEMM rate.
    fn peak(&self) -> f64 {
        self.peaks.0.max(self.peaks.1)
    }
}

pub fn print(profiled: &Profiled, step: &StepTotals) {
    let totals = profiled.totals();
    let kernels: f64 = totals.iter().map(|(_, t)| t.time.as_secs_f64()).sum();
    let per_step = |s: f64| s / step.steps as f64 * 1e3;
    let peak = step.peak();
    println!(
        "profile over {} measured steps ({:.1} ms/step); FP32 peak = our 1024³ GEMM in the same \
         run, {:.1} GFLOP/s before the steps and {:.1} after; fractions are of the higher",
        step.steps,
        per_step(step.seconds),
        step.peaks.0 / 1e9,
        step.peaks.1 / 1e9
    );
    println!(
        "{:<26} {:>10} {:>7} {:>9} {:>10} {:>8}",
        "family", "ms/step", "share", "calls", "GFLOP/s", "of peak"
    );
    let row = |name: &str, seconds: f64, calls: String, flops: f64| {
        let rate = (flops > 0.0).then(|| flops / seconds.max(f64::MIN_POSITIVE));
        println!(
            "{:<26} {:>10.1} {:>6.1}% {:>9} {:>10} {:>8}",
            name,
            per_step(seconds),
            seconds / step.seconds * 100.0,
            calls,
            rate.map_or_else(|| "-".into(), |r| format!("{:.1}", r / 1e9)),
            rate.map_or_else(|| "-".into(), |r| format!("{:.0}%", r / peak * 100.0)),
        );
    };
    for (family, t) in &totals {
        let calls = (t.calls / step.steps as u64).to_string();
        row(family.name(), t.time.as_secs_f64(), calls, t.flops);
    }
    // The trainers' collectives run outside the backend; one device has none.
    row("communication", 0.0, "0".into(), 0.0);
    row(
        "outside kernels",
        (step.seconds - kernels).max(0.0),
        "-".into(),
        0.0,
    );
    let counted: f64 = totals
        .iter()
        .filter(|(f, _)| matches!(f, Family::Matmul | Family::Attention))
        .map(|(_, t)| t.flops)
        .sum();
    let model_rate = step.model_flops * step.steps as f64 / step.seconds;
    let best_rate = step.model_flops / step.best_step_seconds;
    let counted_rate = counted / step.seconds;
    println!(
        "step: {:.1} GFLOP/s by the PaLM formula (6·N + 12·L·d·seq per token, {:.2} GFLOP/step) \
         = {:.0}% of peak (fastest step: {:.1} GFLOP/s, {:.0}%); {:.1} GFLOP/s of executed \
         matmul + causal attention FLOPs = {:.0}% of peak",
        model_rate / 1e9,
        step.model_flops / 1e9,
        model_rate / peak * 100.0,
        best_rate / 1e9,
        best_rate / peak * 100.0,
        counted_rate / 1e9,
        counted_rate / peak * 100.0
    );
}
