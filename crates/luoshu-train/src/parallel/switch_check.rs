//! The switch check, on any communicator backend: a model state held by a running
//! strategy is switched along a sequence of strategies and back; every stop must hold
//! exactly that strategy's pieces of the canonical tensors, and the end must equal the
//! start bit for bit. `tests/placement.rs` runs it on threads ranks, the `mpi_strategies`
//! example under `mpirun`.

use super::conformance::{train_config, SEED};
use super::ParallelTrainer;
use crate::placement::strategy_placements;
use crate::{Error, Result};
use luoshu_backend::{Backend, Ops};
use luoshu_comm::Communicator;
use luoshu_dist::switch::{allocate_pieces, execute_switch, SwitchPieces};
use luoshu_dist::{Mesh, Placement, Strategy, SwitchPlanner, Topology};
use luoshu_model::{init_params, ModelConfig};
use luoshu_tensor::{rng, DType, Tensor};
use std::sync::Arc;

/// Grouped-query attention (4 query heads, 2 kv heads) and an untied head, 4 layers:
/// every parameter role, uneven ZeRO pieces, and tensor parallelism up to 2.
pub fn switch_model() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        d_model: 32,
        n_layers: 4,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: 16,
        tie_embeddings: false,
        ..ModelConfig::default()
    }
}

/// Canonical stand-ins for gradient accumulators: seeded normals, one stream per tensor.
fn canonical_grads(model: &ModelConfig) -> Result<Vec<Tensor>> {
    luoshu_model::param_specs(model)
        .iter()
        .enumerate()
        .map(|(t, spec)| {
            let n: usize = spec.shape.iter().product();
            let values: Vec<f32> = (0..n as u64)
                .map(|i| rng::normal(SEED, 0x6772_6164 + t as u64, i))
                .collect();
            Ok(Tensor::from_vec(values, spec.shape.as_slice())?)
        })
        .collect()
}

/// Whether every piece equals the corresponding canonical cut, bit for bit.
fn same_bits(got: &[Vec<Tensor>], expected: &[Vec<Tensor>]) -> Result<bool> {
    if got.len() != expected.len() {
        return Ok(false);
    }
    for (a, b) in got.iter().flatten().zip(expected.iter().flatten()) {
        if a.dims() != b.dims() || a.to_vec::<f32>()? != b.to_vec::<f32>()? {
            return Ok(false);
        }
    }
    Ok(got.iter().map(Vec::len).eq(expected.iter().map(Vec::len)))
}

/// One rank's part of the check over `world` (its size is every strategy's device
/// count): parameters as the running `hops[0]` trainer holds them plus gradient
/// accumulators, switched along `hops` and back to `hops[0]`.
pub fn switch_round_trip(
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    hops: &[Strategy],
) -> Result<()> {
    let model = switch_model();
    let rank = world.rank();
    let ops = Ops::new(backend.as_ref());
    let first = *hops
        .first()
        .ok_or_else(|| Error::Config("a round trip needs at least one strategy".into()))?;
    let mesh = Mesh::new(first, world.clone())?;
    let trainer = ParallelTrainer::new(model.clone(), train_config(), backend.clone(), mesh, SEED)?;
    let params = init_params(&model, SEED)?;
    let canonical: Vec<Tensor> = params
        .tensors()
        .iter()
        .cloned()
        .chain(canonical_grads(&model)?)
        .collect();
    let layout_of = |strategy: Strategy| -> Result<Vec<Placement>> {
        let placed = strategy_placements(&model, strategy)?;
        Ok(placed.params.into_iter().chain(placed.grads).collect())
    };
    let cut = |placements: &[Placement]| -> Result<Vec<Vec<Tensor>>> {
        placements
            .iter()
            .zip(&canonical)
            .map(|(p, t)| Ok(p.cut_for(&ops, rank, t)?))
            .collect()
    };
    let mut layout = layout_of(first)?;
    let running = trainer.state_pieces()?.params;
    let start = cut(&layout)?;
    if !same_bits(&running, &start[..running.len()])? {
        return Err(Error::State(format!(
            "rank {rank}: the running {first} trainer does not hold its placement's pieces"
        )));
    }
    let mut pieces: Vec<Vec<Tensor>> = running
        .into_iter()
        .chain(start[params.len()..].iter().cloned())
        .collect();
    let topology = Topology::gpu_cluster(world.size(), 2.min(world.size()))?;
    let mut planner = SwitchPlanner::new();
    let route: Vec<Strategy> = hops[1..].iter().copied().chain([first]).collect();
    for (hop, &next) in route.iter().enumerate() {
        let target = layout_of(next)?;
        let plan = planner.plan(&layout, &target, &topology, DType::F32.size_in_bytes())?;
        let moved = allocate_pieces(&ops, &target, rank, DType::F32)?;
        execute_switch(
            &plan,
            &layout,
            &target,
            world.as_ref(),
            &ops,
            SwitchPieces {
                src: &pieces,
                dst: &moved,
            },
            hop as u64,
        )?;
        if !same_bits(&moved, &cut(&target)?)? {
            return Err(Error::State(format!(
                "rank {rank}: after switching to {next} (hop {}) the pieces differ from the \
                 canonical state",
                hop + 1
            )));
        }
        (layout, pieces) = (target, moved);
    }
    Ok(())
}
