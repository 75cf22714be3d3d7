//! Strategies export where they keep the model state: every element is covered as many
//! times as the strategy replicates it, a running trainer holds exactly its placement's
//! pieces (gathered through the switch executor they reproduce `gather_state`), and a
//! model state round-trips through several strategies bit for bit.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::{Backend, Ops};
use luoshu_comm::threads;
use luoshu_dist::switch::{allocate_pieces, execute_switch, SwitchPieces};
use luoshu_dist::{Mesh, Piece, Placement, Region, Strategy, SwitchPlanner, Topology};
use luoshu_model::{param_specs, ModelConfig, ParamRole};
use luoshu_tensor::DType;
use luoshu_train::parallel::conformance::{batch, train_config, SEED};
use luoshu_train::parallel::switch_check::{switch_model, switch_round_trip};
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::placement::strategy_placements;
use std::sync::Arc;

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// Every product of dp, tp ≤ 2 (the switch model has 2 kv heads) and pp ≤ 4 on at most 8
/// ranks, with and without ZeRO-1.
fn strategies() -> Vec<Strategy> {
    let mut out = Vec::new();
    for dp in 1..=8 {
        for tp in [1, 2] {
            for pp in 1..=4 {
                for zero1 in [false, true] {
                    if dp * tp * pp <= 8 {
                        out.push(Strategy {
                            dp,
                            tp,
                            pp,
                            zero1,
                            cp: 1,
                        });
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_element_is_held_once_per_replica_under_every_strategy() {
    for tied in [false, true] {
        let model = ModelConfig {
            tie_embeddings: tied,
            ..switch_model()
        };
        for strategy in strategies() {
            let placed = strategy_placements(&model, strategy).unwrap();
            for (t, spec) in param_specs(&model).iter().enumerate() {
                // A tied embedding is also the head on the last stage; a parameter tensor
                // parallelism does not split (norm gains) is on every tensor-parallel rank.
                let stages = if tied && spec.role == ParamRole::Embedding && strategy.pp > 1 {
                    2
                } else {
                    1
                };
                let tp_copies = match spec.role.tp_split_dim() {
                    Some(_) => 1,
                    None => strategy.tp,
                };
                let copies = stages * tp_copies;
                let check = |what: &str, placement: &Placement, times: usize| {
                    let coverage = placement.coverage();
                    assert!(
                        coverage.iter().all(|&c| c == times),
                        "{strategy} {what} {}: coverage {:?}, expected {times}",
                        spec.name,
                        &coverage[..coverage.len().min(8)]
                    );
                };
                check("params", &placed.params[t], strategy.dp * copies);
                let sharded = if strategy.zero1 {
                    copies
                } else {
                    strategy.dp * copies
                };
                check("grads", &placed.grads[t], sharded);
                check("optimizer", &placed.optimizer[t], sharded);
            }
        }
    }
}

#[test]
fn strategies_that_do_not_fit_are_refused_with_the_reason() {
    let model = switch_model();
    let tp4: Strategy = "tp4".parse().unwrap();
    let err = strategy_placements(&model, tp4).unwrap_err().to_string();
    assert!(err.contains("n_kv_heads"), "{err}");
    let pp5: Strategy = "pp5".parse().unwrap();
    let err = strategy_placements(&model, pp5).unwrap_err().to_string();
    assert!(err.contains("every stage needs a layer"), "{err}");
}

/// Every tensor whole on rank 0.
fn on_rank_zero(dims: &[usize]) -> Placement {
    let mut placement = Placement::nothing(dims);
    placement.add(Piece::whole(Region::whole(dims).unwrap()), 0);
    placement
}

/// After two training steps under `strategy`, the pieces the trainer holds, switched to
/// rank 0, equal its gathered parameters and moments bit for bit.
fn gathered_through_the_switch_equals_gather_state(strategy: &str) {
    let strategy: Strategy = strategy.parse().unwrap();
    let model = switch_model();
    let placed = strategy_placements(&model, strategy).unwrap();
    let topology = Topology::gpu_cluster(strategy.devices(), 2).unwrap();
    let results = threads::run(strategy.devices(), |world| {
        let backend = backend();
        let ops = Ops::new(backend.as_ref());
        let mesh = Mesh::new(strategy, world.clone()).unwrap();
        let mut trainer =
            ParallelTrainer::new(model.clone(), train_config(), backend.clone(), mesh, SEED)
                .unwrap();
        for step in 0..2 {
            trainer.train_step(&batch(step)).unwrap();
        }
        let pieces = trainer.state_pieces().unwrap();
        let mut planner = SwitchPlanner::new();
        let mut gather = |from: &[Placement], src: &[Vec<luoshu_tensor::Tensor>], tag| {
            let to: Vec<Placement> = from.iter().map(|p| on_rank_zero(&p.dims)).collect();
            let plan = planner.plan(from, &to, &topology, 4).unwrap();
            let dst = allocate_pieces(&ops, &to, world.rank(), DType::F32).unwrap();
            let pieces = SwitchPieces { src, dst: &dst };
            execute_switch(&plan, from, &to, world.as_ref(), &ops, pieces, tag).unwrap();
            dst
        };
        let params = gather(&placed.params, &pieces.params, 1);
        let m = gather(&placed.optimizer, &pieces.adam_m, 2);
        let v = gather(&placed.optimizer, &pieces.adam_v, 3);
        let state = trainer.gather_state().unwrap();
        (params, m, v, state)
    });
    let (params, m, v, state) = &results[0];
    let state = state.as_ref().unwrap();
    for (t, spec) in param_specs(&model).iter().enumerate() {
        for (what, got, expected) in [
            ("parameter", &params[t][0], &state.params),
            ("first moment", &m[t][0], &state.adam_m),
            ("second moment", &v[t][0], &state.adam_v),
        ] {
            let expected = expected.get(&spec.name).unwrap();
            assert_eq!(
                got.to_vec::<f32>().unwrap(),
                expected.to_vec::<f32>().unwrap(),
                "{strategy}: {what} {}",
                spec.name
            );
        }
    }
}

#[test]
fn data_and_tensor_parallel_pieces_gather_to_the_canonical_state() {
    gathered_through_the_switch_equals_gather_state("dp2tp2");
}

#[test]
fn pipeline_and_tensor_parallel_pieces_gather_to_the_canonical_state() {
    gathered_through_the_switch_equals_gather_state("tp2pp2");
}

#[test]
fn zero1_pieces_gather_to_the_canonical_state() {
    gathered_through_the_switch_equals_gather_state("dp2pp2zero1");
}

#[test]
fn a_model_state_round_trips_through_hot_switching_strategies() {
    let hops: Vec<Strategy> = ["tp2pp2", "dp4", "dp2tp2", "dp4zero1", "pp4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let results = threads::run(4, |world| switch_round_trip(backend(), world, &hops));
    for (rank, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("rank {rank}: {e}"));
    }
}
