//! Where a strategy keeps a model's state: the placement of every parameter, gradient
//! accumulator and optimizer state tensor over the world, derived from the same
//! [`ModelShard`]s and flat layouts the [`crate::parallel::ParallelTrainer`] builds, so a
//! running strategy holds exactly these pieces.

use crate::{Error, Result};
use luoshu_dist::{balance_stages, shard_range, Piece, Placement, Region, Strategy};
use luoshu_model::{param_specs, ModelConfig, ModelShard, ParamSpec, ShardedParam};
use std::ops::Range;

/// Relative cost of each layer for stage balancing: the layers are identical, and the
/// last one also pays for the head (a `d × vocab` projection per token).
fn layer_costs(cfg: &ModelConfig) -> Vec<f64> {
    let (d, kv, ff) = (cfg.d_model as f64, cfg.kv_dim() as f64, cfg.d_ff as f64);
    let layer = 2.0 * d * d + 2.0 * d * kv + 3.0 * d * ff;
    let mut costs = vec![layer; cfg.n_layers];
    if let Some(last) = costs.last_mut() {
        *last += d * cfg.vocab_size as f64;
    }
    costs
}

/// The layers of each of `stages` pipeline stages (contiguous, cost-balanced).
pub fn stage_layers(model: &ModelConfig, stages: usize) -> Result<Vec<Range<usize>>> {
    if stages == 0 || stages > model.n_layers {
        return Err(Error::Strategy(format!(
            "{stages} pipeline stages for {} layers: every stage needs a layer (use pp1 to \
             pp{})",
            model.n_layers, model.n_layers
        )));
    }
    Ok(balance_stages(&layer_costs(model), stages)?)
}

/// The shard of the rank at tensor-parallel index `tp_rank` on stage `stage`.
pub fn shard_at(
    model: &ModelConfig,
    strategy: Strategy,
    stages: &[Range<usize>],
    tp_rank: usize,
    stage: usize,
) -> Result<ModelShard> {
    Ok(ModelShard::new(
        model,
        strategy.tp,
        tp_rank,
        strategy.pp,
        stage,
        stages[stage].clone(),
    )?)
}

/// The box of the canonical parameter a sharded parameter covers.
pub fn param_region(shard: &ModelShard, p: &ShardedParam) -> Result<Region> {
    let mut ranges: Vec<Range<usize>> = p.full.shape.iter().map(|&n| 0..n).collect();
    if let Some(dim) = p.split {
        ranges[dim] = shard.tp_range(p.full.shape[dim]);
    }
    Ok(Region::new(&ranges)?)
}

/// The placements of a model's state under one strategy, one entry per parameter in
/// [`param_specs`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePlacements {
    /// The strategy these placements are for.
    pub strategy: Strategy,
    /// The parameters' specifications, in [`param_specs`] order.
    pub specs: Vec<ParamSpec>,
    /// Parameters: each rank holds its shard, replicated over data parallelism.
    pub params: Vec<Placement>,
    /// Reduced gradient accumulators: like the parameters, or ZeRO-1's flat shards.
    pub grads: Vec<Placement>,
    /// AdamW moments (and fp32 master weights): like the parameters, or ZeRO-1's flat
    /// shards of each rank's flattened local parameters.
    pub optimizer: Vec<Placement>,
}

/// Checks that `strategy` can run `model` on `devices` ranks, with an error saying what
/// would work.
pub fn check_strategy(model: &ModelConfig, strategy: Strategy, devices: usize) -> Result<()> {
    if strategy.devices() != devices {
        return Err(Error::Strategy(format!(
            "strategy {strategy} uses dp·cp·tp·pp = {} ranks but {devices} devices are given: \
             make the product of the degrees equal the device count",
            strategy.devices()
        )));
    }
    if let Some(why) = strategy.unsupported_combination() {
        return Err(Error::Strategy(format!("strategy {strategy}: {why}")));
    }
    stage_layers(model, strategy.pp)?;
    ModelShard::new(model, strategy.tp, 0, 1, 0, 0..model.n_layers)?;
    Ok(())
}

/// Where `strategy` keeps every tensor of `model`'s state on a world of
/// `strategy.devices()` ranks (rank = (replica · pp + stage) · tp + tp rank with replica =
/// dp rank · cp + cp rank, as in [`luoshu_dist::Mesh`]; context-parallel ranks hold the
/// parameters like data-parallel ones).
pub fn strategy_placements(model: &ModelConfig, strategy: Strategy) -> Result<StatePlacements> {
    check_strategy(model, strategy, strategy.devices())?;
    let specs = param_specs(model);
    let stages = stage_layers(model, strategy.pp)?;
    let nothing =
        || -> Vec<Placement> { specs.iter().map(|s| Placement::nothing(&s.shape)).collect() };
    let (mut params, mut flat) = (nothing(), nothing());
    let rank_of = |replica: usize, stage: usize, tp: usize| {
        (replica * strategy.pp + stage) * strategy.tp + tp
    };
    for stage in 0..strategy.pp {
        for tp_rank in 0..strategy.tp {
            let shard = shard_at(model, strategy, &stages, tp_rank, stage)?;
            let local = shard.params(model);
            let total: usize = local
                .iter()
                .map(|p| p.local.shape.iter().product::<usize>())
                .sum();
            let mut offset = 0;
            for p in &local {
                let index = specs.iter().position(|s| *s == p.full).ok_or_else(|| {
                    Error::State(format!("`{}` is not a parameter of the model", p.full.name))
                })?;
                let region = param_region(&shard, p)?;
                let len = region.numel();
                for replica in 0..strategy.replicas() {
                    let rank = rank_of(replica, stage, tp_rank);
                    params[index].add(Piece::whole(region), rank);
                    // ZeRO-1 (never with cp, so replicas are data ranks): data rank
                    // `replica` owns this range of the flat local parameters.
                    let owned = shard_range(total, strategy.replicas(), replica);
                    let (start, end) = (owned.start.max(offset), owned.end.min(offset + len));
                    if start < end {
                        let piece = Piece {
                            region,
                            flat: Some((start - offset, end - offset)),
                        };
                        flat[index].add(piece, rank);
                    }
                }
                offset += len;
            }
        }
    }
    let (grads, optimizer) = if strategy.zero1 {
        (flat.clone(), flat)
    } else {
        (params.clone(), params.clone())
    };
    Ok(StatePlacements {
        strategy,
        specs,
        params,
        grads,
        optimizer,
    })
}
