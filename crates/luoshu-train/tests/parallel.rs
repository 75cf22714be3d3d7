//! Every strategy trains exactly like one device on the threads backend: after each of 5
//! steps, on every rank, the loss, the gradient norm before clipping, every parameter
//! element and both AdamW moments match the single-device trainer (fp32, rtol 1e-5; see
//! `parallel::compare`), for the tied model and the GQA model with an untied head, with
//! clipping on and off. The check fails when one bucket's gradients are doubled, even
//! where clipping and Adam hide it from the parameters. Context parallelism (cp2, cp4,
//! dp2cp2, tp2cp2) is held to the same check. A distributed run is
//! bit-identical to itself, and a checkpoint taken under one strategy resumes under
//! another.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::{Backend, Ops};
use luoshu_comm::threads;
use luoshu_dist::Strategy;
use luoshu_model::ParamStore;
use luoshu_tensor::Tensor;
use luoshu_train::parallel::compare::{compare_pieces, Agreement};
use luoshu_train::parallel::conformance::{all_references, batch, Case, Reference};
use luoshu_train::parallel::conformance::{check_rank, check_trainer, parallel_trainer};
use luoshu_train::parallel::conformance::{compare_losses, compare_params, compare_runs};
use luoshu_train::parallel::conformance::{distributed_rank, single_device};
use luoshu_train::parallel::switch_check::switch_model;
use luoshu_train::parallel::GradientFault;
use luoshu_train::placement::strategy_placements;
use luoshu_train::TrainerState;
use std::sync::{Arc, OnceLock};

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

/// One device's run of every case, computed once per test binary.
fn references() -> &'static [Reference] {
    static REFERENCES: OnceLock<Vec<Reference>> = OnceLock::new();
    REFERENCES.get_or_init(|| all_references(backend(), STEPS).unwrap())
}

/// Every rank's result of the check of `reference` under `strategy`, with `fault`
/// injected.
fn check_all_ranks(
    strategy: Strategy,
    reference: &Reference,
    fault: Option<GradientFault>,
) -> Vec<Result<Agreement, String>> {
    threads::run(strategy.devices(), |comm| {
        let mut trainer = parallel_trainer(backend(), comm, strategy, &reference.case)
            .map_err(|e| e.to_string())?;
        trainer.inject_gradient_fault(fault);
        check_trainer(&mut trainer, reference).map_err(|e| e.to_string())
    })
}

/// The strong check of every case `strategy` supports, on every rank.
fn check_equivalent(strategy: &str) {
    let strategy: Strategy = strategy.parse().unwrap();
    let mut cases = 0;
    for reference in references() {
        if !reference.case.supports(strategy) {
            continue;
        }
        let results = threads::run(strategy.devices(), |comm| {
            check_rank(backend(), comm, strategy, reference)
        });
        let mut worst = Agreement::default();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(a) => worst.merge(a),
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        eprintln!(
            "{strategy} {}: worst {:.3} at {}",
            reference.case.name, worst.ratio, worst.at
        );
        cases += 1;
    }
    assert!(cases >= 2, "{strategy} runs only {cases} case(s)");
    // The older gathered comparison still holds.
    let expected = single_device(backend(), STEPS).unwrap();
    let got = distributed(&strategy.to_string(), None, 0, STEPS);
    compare_runs(&strategy.to_string(), &got, &expected).unwrap();
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

#[test]
fn the_gqa_case_is_the_switch_model() {
    assert_eq!(Case::gqa_untied(true).model, switch_model());
    assert_eq!(Case::tied(false).config.grad_clip, 0.0);
    assert!(Case::tied(true).config.grad_clip > 0.0);
}

/// Clipping is active on every step of the clipped cases (so they test clipping) and the
/// norm is far from the threshold (so a rounding difference cannot flip it).
#[test]
fn clipping_is_active_on_every_step_of_the_clipped_cases() {
    for reference in references() {
        let clip = reference.case.config.grad_clip;
        for (i, (stats, _)) in reference.steps.iter().enumerate() {
            let norm = stats.grad_norm;
            assert!(
                clip == 0.0 || norm > 1.2 * clip,
                "{} step {i}: norm {norm}, clip {clip}",
                reference.case.name
            );
        }
    }
}

#[test]
fn doubling_one_buckets_gradients_fails_the_check_on_every_rank() {
    let fault = GradientFault {
        bucket: Some(1),
        factor: 2.0,
    };
    for strategy in ["dp2", "tp2pp2"] {
        let strategy: Strategy = strategy.parse().unwrap();
        for reference in references() {
            if !reference.case.supports(strategy) {
                continue;
            }
            for result in check_all_ranks(strategy, reference, Some(fault)) {
                let err = result.unwrap_err();
                assert!(
                    err.contains("step 0: gradient norm before clipping"),
                    "{err}"
                );
            }
        }
    }
}

/// Without clipping, one bucket's doubled gradients show in the parameters themselves
/// after one step, on every rank (Adam's eps 1e-3 keeps most updates about linear in
/// the gradient).
#[test]
fn without_clipping_a_doubled_bucket_shows_in_the_parameters() {
    let strategy: Strategy = "dp2tp2".parse().unwrap();
    let reference = &references()[3];
    assert_eq!(reference.case, Case::gqa_untied(false));
    let placed = strategy_placements(&reference.case.model, strategy).unwrap();
    let results = threads::run(strategy.devices(), |comm| {
        let rank = comm.rank();
        let mut trainer = parallel_trainer(backend(), comm, strategy, &reference.case).unwrap();
        trainer.inject_gradient_fault(Some(GradientFault {
            bucket: Some(0),
            factor: 2.0,
        }));
        trainer.train_step(&batch(0)).unwrap();
        let pieces = trainer.state_pieces().unwrap();
        let backend = backend();
        let ops = Ops::new(backend.as_ref());
        compare_pieces(
            &ops,
            "doubled",
            rank,
            &pieces,
            &placed,
            &reference.steps[0].1,
        )
        .map_err(|e| e.to_string())
    });
    for result in results {
        let err = result.unwrap_err();
        assert!(err.contains("doubled: parameter "), "{err}");
    }
}

/// With clipping active, every gradient doubled is clipped back to the same update: the
/// losses, parameters and moments of rank 0's gathered state still match one device (the
/// old check passed such a bug), but the gradient norm before clipping does not.
#[test]
fn a_gradient_doubled_everywhere_hides_behind_clipping_but_not_from_the_check() {
    let strategy: Strategy = "dp2".parse().unwrap();
    let fault = GradientFault {
        bucket: None,
        factor: 2.0,
    };
    let case = Case::tied(true);
    let expected = single_device(backend(), STEPS).unwrap();
    let mut gathered = threads::run(strategy.devices(), |comm| {
        let mut trainer = parallel_trainer(backend(), comm, strategy, &case).unwrap();
        trainer.inject_gradient_fault(Some(fault));
        let losses: Vec<f64> = (0..STEPS)
            .map(|i| trainer.train_step(&batch(i)).unwrap().loss)
            .collect();
        (losses, trainer.gather_state().unwrap())
    });
    let (losses, state) = gathered.remove(0);
    compare_runs("doubled", &(losses, state.unwrap()), &expected).unwrap();
    let reference = &references()[0];
    assert_eq!(reference.case, case);
    for result in check_all_ranks(strategy, reference, Some(fault)) {
        let err = result.unwrap_err();
        assert!(err.contains("gradient norm before clipping"), "{err}");
        assert!(err.contains("2.000000 times one device's"), "{err}");
    }
}

/// Each rank checks its own copy: a data-parallel replica whose final norm gain is off in
/// one element fails there, naming the element, and the other rank fails too, naming it.
#[test]
fn a_difference_on_one_replica_fails_every_rank_and_names_it() {
    let strategy: Strategy = "dp2".parse().unwrap();
    let good = &references()[0];
    let mut bad = good.clone();
    let (_, last) = bad.steps.last_mut().unwrap();
    let mut params = ParamStore::new();
    for (name, t) in last.params.iter() {
        let mut values = t.to_vec::<f32>().unwrap();
        if name == "final_norm" {
            values[5] += 1e-4;
        }
        params
            .insert(name, Tensor::from_vec(values, t.dims()).unwrap())
            .unwrap();
    }
    last.params = params;
    let results = threads::run(strategy.devices(), |comm| {
        let reference = if comm.rank() == 1 { &bad } else { good };
        check_rank(backend(), comm, strategy, reference).map_err(|e| e.to_string())
    });
    let rank0 = results[0].as_ref().unwrap_err();
    assert!(rank0.contains("rank(s) [1] differ"), "{rank0}");
    let rank1 = results[1].as_ref().unwrap_err();
    assert!(
        rank1.contains("rank 1 (data 1, stage 0, tensor 0), step 4: parameter final_norm[5]"),
        "{rank1}"
    );
}

// ----- context parallelism: each sequence cut into 2·cp chunks over the cp ranks -----

#[test]
fn context_parallel_equals_one_device() {
    check_equivalent("cp2");
}

#[test]
fn context_parallel_4_equals_one_device() {
    check_equivalent("cp4");
}

#[test]
fn dp_cp_product_equals_one_device() {
    check_equivalent("dp2cp2");
}

#[test]
fn tp_cp_product_equals_one_device() {
    check_equivalent("tp2cp2");
}
