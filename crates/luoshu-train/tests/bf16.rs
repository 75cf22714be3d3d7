//! bf16 mixed precision (`TrainConfig::precision = Bf16Mixed`: activations and matmul
//! inputs in bf16; parameters, gradients and AdamW state in f32) under dp2, tp2 and pp2,
//! against fp32 under the same strategy, on the threads backend with the conformance
//! harness's tied model and batches. On every rank:
//!
//! - the summed gradient of step 0 (both runs start from the same f32 parameters), every
//!   element of the rank's local gradient: `|bf16 − fp32| ≤ GRAD_TOL · rms(fp32 gradient)`;
//! - the loss of step 0 and of each later training step: relative [`LOSS_RTOL`];
//! - the global gradient norm before clipping of each step: relative [`NORM_RTOL`].
//!
//! fp32 under each of these strategies equals one device (`tests/parallel.rs`), so the same
//! bounds hold against one fp32 device. bf16 keeps 8 significant bits (relative rounding
//! 2^-9 ≈ 2e-3 per value); the tolerances are about 3× the worst measured over these runs,
//! far below what a wrong gradient gives (doubled, its largest elements are off by several
//! rms and its norm by 100 %).

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::Strategy;
use luoshu_model::Precision;
use luoshu_train::parallel::conformance::{batch, parallel_trainer, Case};
use luoshu_train::parallel::ParallelTrainer;
use std::sync::Arc;

/// Training steps whose losses and gradient norms are compared.
const STEPS: usize = 4;
/// Largest gradient element error, in units of the rank's fp32 gradient rms (measured worst:
/// 0.14 under dp2, 0.13 under tp2, 0.11 under pp2).
const GRAD_TOL: f64 = 0.4;
/// Largest relative loss error (measured worst: 1.0e-4).
const LOSS_RTOL: f64 = 1e-3;
/// Largest relative error of the gradient norm before clipping (measured worst: 2.0e-3).
const NORM_RTOL: f64 = 1e-2;

/// One rank's view of a run: the step-0 gradient and loss, then each step's loss and
/// gradient norm.
struct Run {
    gradient: Vec<f32>,
    losses: Vec<f64>,
    norms: Vec<f64>,
}

fn run(mut trainer: ParallelTrainer) -> Run {
    let first = batch(0);
    let grads = trainer.zero_gradients().unwrap();
    let scale = 1.0 / first.target_tokens as f32;
    let local_loss = trainer.accumulate_batch(&first, scale, &grads).unwrap();
    trainer.reduce_gradients(&grads).unwrap();
    let mut losses = vec![trainer.reported_loss(local_loss).unwrap()];
    let mut norms = Vec::new();
    for step in 0..STEPS {
        let stats = trainer.train_step(&batch(step)).unwrap();
        losses.push(stats.loss);
        norms.push(stats.grad_norm);
    }
    Run {
        gradient: grads.to_vec::<f32>().unwrap(),
        losses,
        norms,
    }
}

/// The worst errors of one rank: gradient element over rms, loss and norm relative.
#[derive(Debug, Clone, Copy, Default)]
struct Worst {
    gradient: f64,
    loss: f64,
    norm: f64,
}

fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

fn worst(bf16: &Run, fp32: &Run) -> Worst {
    assert_eq!(bf16.gradient.len(), fp32.gradient.len());
    let n = fp32.gradient.len() as f64;
    let rms = (fp32
        .gradient
        .iter()
        .map(|&g| f64::from(g).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let gradient = bf16
        .gradient
        .iter()
        .zip(&fp32.gradient)
        .map(|(&b, &f)| (f64::from(b) - f64::from(f)).abs() / rms)
        .fold(0.0, f64::max);
    let max_relative = |got: &[f64], want: &[f64]| {
        got.iter()
            .zip(want)
            .map(|(&g, &w)| relative(g, w))
            .fold(0.0, f64::max)
    };
    Worst {
        gradient,
        loss: max_relative(&bf16.losses, &fp32.losses),
        norm: max_relative(&bf16.norms, &fp32.norms),
    }
}

/// Every rank's worst errors of bf16 against fp32 under `strategy`.
fn bf16_against_fp32(strategy: &str) -> Vec<Worst> {
    let strategy: Strategy = strategy.parse().unwrap();
    let fp32 = Case::tied(true);
    let mut bf16 = fp32.clone();
    bf16.config.precision = Precision::Bf16Mixed;
    threads::run(strategy.devices(), |comm| {
        let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
        let trainer =
            |case: &Case| parallel_trainer(backend.clone(), comm.clone(), strategy, case).unwrap();
        let want = run(trainer(&fp32));
        let got = run(trainer(&bf16));
        worst(&got, &want)
    })
}

fn check(strategy: &str) {
    let ranks = bf16_against_fp32(strategy);
    eprintln!("bf16 against fp32 under {strategy}: {ranks:?}");
    for (rank, w) in ranks.iter().enumerate() {
        assert!(
            w.gradient > 0.0,
            "{strategy} rank {rank}: bf16 changed nothing"
        );
        assert!(
            w.gradient <= GRAD_TOL && w.loss <= LOSS_RTOL && w.norm <= NORM_RTOL,
            "{strategy} rank {rank}: {w:?} exceeds gradient {GRAD_TOL} · rms, loss \
             {LOSS_RTOL} and norm {NORM_RTOL} relative"
        );
    }
}

#[test]
fn bf16_under_dp2_tracks_fp32() {
    check("dp2");
}

#[test]
fn bf16_under_tp2_tracks_fp32() {
    check("tp2");
}

#[test]
fn bf16_under_pp2_tracks_fp32() {
    check("pp2");
}
