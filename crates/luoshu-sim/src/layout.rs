//! A candidate strategy and where it puts things: the strategy's degrees, activation
//! recomputation, the layers of each pipeline stage and the parameters each rank holds,
//! taken from the same stage balancing and model shards the trainer runs.

use crate::Result;
use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;
use luoshu_train::placement::{check_strategy, shard_at, stage_layers};
use std::fmt;
use std::ops::Range;

/// A strategy the search may pick for a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The parallel degrees (dp, tp, pp, cp) and ZeRO-1.
    pub strategy: Strategy,
    /// Full activation recomputation: each layer keeps only its input and reruns its
    /// forward during the backward.
    pub recompute: bool,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.strategy)?;
        if self.recompute {
            write!(f, "+recompute")?;
        }
        Ok(())
    }
}

/// Every `dp·cp·tp·pp = devices` with tensor parallelism inside a node (`tp` divides
/// `per_node`), that the model can be sharded by (heads divisible by `tp`, at most one
/// stage per layer), with and without recomputation, and with ZeRO-1 when `zero1` allows
/// it and `dp > 1`. Context parallelism (`cp > 1`) combines with `dp` and `tp` only, as
/// the runtime allows.
pub fn candidates(
    model: &ModelConfig,
    devices: usize,
    per_node: usize,
    zero1: bool,
) -> Vec<Candidate> {
    let divisors = |n: usize| (1..=n).filter(move |d| n.is_multiple_of(*d));
    let mut out = Vec::new();
    for tp in divisors(devices).filter(|tp| per_node.is_multiple_of(*tp)) {
        for pp in divisors(devices / tp) {
            for cp in divisors(devices / (tp * pp)).filter(|&cp| cp == 1 || pp == 1) {
                let dp = devices / (tp * pp * cp);
                for zero in [false, true] {
                    if zero && !(zero1 && dp > 1 && cp == 1) {
                        continue;
                    }
                    let strategy = Strategy {
                        dp,
                        tp,
                        pp,
                        zero1: zero,
                        cp,
                    };
                    if check_strategy(model, strategy, devices).is_err() {
                        continue;
                    }
                    for recompute in [false, true] {
                        out.push(Candidate {
                            strategy,
                            recompute,
                        });
                    }
                }
            }
        }
    }
    out
}

/// A candidate laid out on the ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The candidate laid out.
    pub candidate: Candidate,
    /// Layers of each pipeline stage.
    pub stages: Vec<Range<usize>>,
    /// Parameters one rank of each stage holds (its tensor-parallel shard).
    pub stage_params: Vec<u64>,
}

impl Layout {
    /// `candidate` laid out for `model` with the trainer's stage balancing and shards;
    /// errors when the strategy cannot shard the model.
    pub fn new(model: &ModelConfig, candidate: Candidate) -> Result<Self> {
        let strategy = candidate.strategy;
        check_strategy(model, strategy, strategy.devices())?;
        let stages = stage_layers(model, strategy.pp)?;
        let stage_params = (0..strategy.pp)
            .map(|stage| {
                let shard = shard_at(model, strategy, &stages, 0, stage)?;
                Ok(shard
                    .params(model)
                    .iter()
                    .map(|p| p.local.shape.iter().product::<usize>() as u64)
                    .sum())
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok(Layout {
            candidate,
            stages,
            stage_params,
        })
    }

    /// The candidate's strategy.
    pub fn strategy(&self) -> Strategy {
        self.candidate.strategy
    }

    /// The world rank of replica `replica` (data rank · cp + context rank), stage `stage`,
    /// tensor rank `tp` (as [`luoshu_dist::Mesh`] numbers them).
    pub fn rank(&self, replica: usize, stage: usize, tp: usize) -> usize {
        let s = self.strategy();
        (replica * s.pp + stage) * s.tp + tp
    }

    /// The tensor-parallel group of the first replica's first stage.
    pub fn tp_group(&self) -> Vec<usize> {
        (0..self.strategy().tp)
            .map(|t| self.rank(0, 0, t))
            .collect()
    }

    /// The data-parallel group of `stage`'s first tensor rank (ZeRO-1 shards over it).
    pub fn dp_group(&self, stage: usize) -> Vec<usize> {
        let s = self.strategy();
        (0..s.dp).map(|d| self.rank(d * s.cp, stage, 0)).collect()
    }

    /// The replicas of `stage`'s first tensor rank's parameters (data and context
    /// parallel), over which gradients are summed.
    pub fn replica_group(&self, stage: usize) -> Vec<usize> {
        (0..self.strategy().replicas())
            .map(|r| self.rank(r, stage, 0))
            .collect()
    }

    /// The context-parallel group of the first replica's first tensor rank.
    pub fn cp_group(&self) -> Vec<usize> {
        (0..self.strategy().cp)
            .map(|c| self.rank(c, 0, 0))
            .collect()
    }

    /// The most parameters any rank holds.
    pub fn max_stage_params(&self) -> u64 {
        self.stage_params.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_keep_tensor_parallelism_inside_a_node() {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let all = candidates(&model, 16, 8, true);
        assert!(all.iter().all(|c| c.strategy.devices() == 16));
        assert!(all.iter().all(|c| c.strategy.tp <= 8));
        assert!(all.iter().any(|c| c.strategy.zero1));
        assert!(!candidates(&model, 16, 8, false)
            .iter()
            .any(|c| c.strategy.zero1));
        // tp ∈ {1,2,4,8} × pp ∈ divisors of 16/tp: 5+4+3+2 = 14 degree triples; all but
        // dp = 1 twice more with ZeRO-1, then twice for recompute.
        let triples = 5 + 4 + 3 + 2;
        let dp_one = 4;
        // With pp = 1, cp ∈ divisors of 16/tp beyond 1 (4 + 3 + 2 + 1), never with ZeRO-1.
        let context = 4 + 3 + 2 + 1;
        assert_eq!(all.len(), 2 * (2 * triples - dp_one + context));
        assert!(all
            .iter()
            .filter(|c| c.strategy.cp > 1)
            .all(|c| c.strategy.pp == 1 && !c.strategy.zero1));
    }

    #[test]
    fn context_replicas_sum_gradients_with_the_data_replicas() {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let candidate = Candidate {
            strategy: "dp2cp2tp2".parse().unwrap(),
            recompute: false,
        };
        let layout = Layout::new(&model, candidate).unwrap();
        // Tensor ranks vary fastest, then context, then data ranks.
        assert_eq!(layout.cp_group(), vec![0, 2]);
        assert_eq!(layout.dp_group(0), vec![0, 4]);
        assert_eq!(layout.replica_group(0), vec![0, 2, 4, 6]);
    }

    #[test]
    fn stage_params_add_up_to_the_model() {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let candidate = Candidate {
            strategy: "tp1pp4".parse().unwrap(),
            recompute: false,
        };
        let layout = Layout::new(&model, candidate).unwrap();
        let total: u64 = layout.stage_params.iter().sum();
        assert_eq!(total, model.num_parameters() as u64);
        assert_eq!(layout.rank(1, 2, 0), 6);
        assert_eq!(layout.dp_group(0), vec![0]);
    }
}
