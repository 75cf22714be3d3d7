//! Every strategy trains exactly like one device on the threads backend: the losses of 5
//! steps and the final parameters match the single-device trainer (fp32, rtol 1e-5; see
//! `parallel::conformance`), a distributed run is bit-identical to itself, and a checkpoint
//! taken under one strategy resumes under another.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::Strategy;
use luoshu_train::parallel::conformance::{compare_losses, compare_params, compare_runs};
use luoshu_train::parallel::conformance::{distributed_rank, single_device};
use luoshu_train::TrainerState;
use std::sync::Arc;

const STEPS: usize = 5;

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// Rank 0's losses and gathered state after steps `first..first + steps` under `strategy`.
fn distributed(
    strategy: &str,
    resume: Option<&TrainerState>,
    first: usize,
    steps: usize,
) -> (Vec<f64>, TrainerState) {
    let strategy: Strategy = strategy.parse().unwrap();
    let mut results = threads::run(strategy.devices(), |comm| {
        distributed_rank(backend(), comm, strategy, resume, first, steps).unwrap()
    });
    let (losses, state) = results.remove(0);
    (losses, state.expect("rank 0 holds the gathered state"))
}

fn check_equivalent(strategy: &str) {
    let expected = single_device(backend(), STEPS).unwrap();
    let got = distributed(strategy, None, 0, STEPS);
    compare_runs(strategy, &got, &expected).unwrap();
}

#[test]
fn single_rank_mesh_equals_the_single_device_trainer() {
    check_equivalent("single");
}

#[test]
fn data_parallel_equals_one_device() {
    check_equivalent("dp2");
}

#[test]
fn data_parallel_with_more_ranks_than_micro_batches_equals_one_device() {
    check_equivalent("dp5");
}

#[test]
fn zero1_equals_one_device() {
    check_equivalent("dp2zero1");
}

#[test]
fn zero1_with_uneven_pieces_equals_one_device() {
    check_equivalent("dp3zero1");
}

#[test]
fn tensor_parallel_equals_one_device() {
    check_equivalent("tp2");
}

#[test]
fn tensor_parallel_4_equals_one_device() {
    check_equivalent("tp4");
}

#[test]
fn pipeline_parallel_equals_one_device() {
    check_equivalent("pp2");
}

#[test]
fn pipeline_4_stages_equals_one_device() {
    check_equivalent("pp4");
}

#[test]
fn dp_tp_product_equals_one_device() {
    check_equivalent("dp2tp2");
}

#[test]
fn dp_pp_product_equals_one_device() {
    check_equivalent("dp2pp2");
}

#[test]
fn tp_pp_product_equals_one_device() {
    check_equivalent("tp2pp2");
}

#[test]
fn dp_tp_pp_product_on_8_ranks_equals_one_device() {
    check_equivalent("dp2tp2pp2zero1");
}

#[test]
fn a_distributed_run_is_bit_identical_to_itself() {
    let (losses_a, a) = distributed("dp2tp2", None, 0, 3);
    let (losses_b, b) = distributed("dp2tp2", None, 0, 3);
    assert_eq!(losses_a, losses_b);
    for (x, y) in a.params.tensors().iter().zip(b.params.tensors()) {
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
}

#[test]
fn a_dp2_checkpoint_resumes_under_tp2() {
    let (_, midway) = distributed("dp2", None, 0, 2);
    let (continued_losses, continued) = distributed("dp2", Some(&midway), 2, 3);
    let (switched_losses, switched) = distributed("tp2", Some(&midway), 2, 3);
    compare_losses("after the switch", &switched_losses, &continued_losses).unwrap();
    compare_params("after the switch", &switched.params, &continued.params).unwrap();
}

#[test]
fn a_dead_rank_fails_the_step_on_every_rank_instead_of_hanging() {
    let strategy: Strategy = "dp2".parse().unwrap();
    let results = threads::run(2, |comm| {
        if comm.rank() == 1 {
            return Err("rank 1 left".to_string());
        }
        distributed_rank(backend(), comm, strategy, None, 0, 1).map_err(|e| e.to_string())
    });
    let err = results[0].as_ref().unwrap_err();
    assert!(err.contains("rank 1"), "{err}");
}
