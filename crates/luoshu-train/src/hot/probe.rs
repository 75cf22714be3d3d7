//! The measured probe behind `luoshu train --hot-switch auto`: each length bucket's
//! micro-batches from a sample of real global batches are run (forward, backward and the
//! phase's gradient reduction, exactly what a hot-switching phase does) under every
//! strategy that can run the model on the world's ranks, and each bucket takes the
//! fastest. The cost-model issue replaces the measurement with a model validated against
//! it; until then this is what chooses.

use super::BucketStrategies;
use crate::parallel::ParallelTrainer;
use crate::placement::check_strategy;
use crate::trainer::loss_scale;
use crate::{Error, Result, TrainConfig};
use luoshu_backend::Backend;
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_data::{BucketBatch, GlobalBatch};
use luoshu_dist::{Mesh, Strategy};
use luoshu_model::ModelConfig;
use luoshu_tensor::Tensor;
use std::sync::Arc;
use std::time::Instant;

/// A bucket keeps the update strategy unless another strategy saves more than this
/// fraction of the whole sample's time under the update strategy: switching parameters
/// and gradients into another layout costs time the probe does not measure, so a saving
/// at the level of measurement noise, or on a bucket too small to matter, is not worth a
/// switch.
pub const SWITCH_MARGIN: f64 = 0.05;

/// What the probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTable {
    /// The buckets' upper edges, ascending.
    pub edges: Vec<usize>,
    /// Sequences of each bucket in the sample.
    pub sequences: Vec<usize>,
    /// Target tokens of each bucket in the sample.
    pub tokens: Vec<usize>,
    /// The strategies timed, in the order of the inner index of `seconds`.
    pub candidates: Vec<Strategy>,
    /// `seconds[bucket][candidate]`: the slowest rank's time for the bucket's sample
    /// (`None` when the sample holds no sequence of the bucket).
    pub seconds: Vec<Vec<Option<f64>>>,
}

/// Every data × context × tensor × pipeline product on `devices` ranks that can run
/// `model` (tensor parallelism divides its heads, kv heads, vocabulary and FFN; every stage
/// gets a layer; context parallelism without pipelines), in a fixed order: data
/// parallelism first, then context parallelism.
pub fn candidate_strategies(model: &ModelConfig, devices: usize) -> Vec<Strategy> {
    let divisors = |n: usize| (1..=n).filter(move |d| n.is_multiple_of(*d));
    let mut out = Vec::new();
    for dp in divisors(devices).rev() {
        for cp in divisors(devices / dp).rev() {
            for tp in divisors(devices / dp / cp).rev() {
                let strategy = Strategy {
                    dp,
                    tp,
                    pp: devices / dp / cp / tp,
                    zero1: false,
                    cp,
                };
                if check_strategy(model, strategy, devices).is_ok() {
                    out.push(strategy);
                }
            }
        }
    }
    out
}

/// What a probe measures: each bucket of `edges` under each of `candidates`, on the
/// micro-batches `sample` holds for the bucket.
#[derive(Clone, Copy)]
pub struct ProbeGrid<'a> {
    /// The strategies to time.
    pub candidates: &'a [Strategy],
    /// The buckets' upper edges, ascending.
    pub edges: &'a [usize],
    /// The global batches whose micro-batches are timed.
    pub sample: &'a [GlobalBatch],
}

/// Collective over `world`: time every cell of `grid` (one untimed run first compiles the
/// plans for its shapes), every rank agreeing on the slowest rank's times.
pub fn probe(
    model: &ModelConfig,
    config: &TrainConfig,
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    grid: ProbeGrid<'_>,
    seed: u64,
) -> Result<ProbeTable> {
    let ProbeGrid {
        candidates,
        edges,
        sample,
    } = grid;
    if candidates.is_empty() {
        return Err(Error::Config(format!(
            "no strategy can run this model on {} ranks to probe",
            world.size()
        )));
    }
    let buckets: Vec<GlobalBatch> = (0..edges.len())
        .map(|b| bucket_sample(edges, b, sample))
        .collect();
    let mut seconds = vec![vec![None; candidates.len()]; edges.len()];
    for (c, &strategy) in candidates.iter().enumerate() {
        let mesh = Mesh::new(strategy, world.clone())?;
        let mut trainer =
            ParallelTrainer::new(model.clone(), config.clone(), backend.clone(), mesh, seed)?;
        for (b, batch) in buckets.iter().enumerate() {
            if batch.buckets.is_empty() {
                continue;
            }
            run_phase(&mut trainer, batch)?;
            let start = Instant::now();
            run_phase(&mut trainer, batch)?;
            let mine = Tensor::from_vec(vec![start.elapsed().as_secs_f64()], [1])?;
            let slowest = world.all_reduce(&mine, ReduceOp::Max)?.to_f64_vec()[0];
            seconds[b][c] = Some(slowest);
        }
    }
    let count = |batch: &GlobalBatch, f: fn(&luoshu_data::MicroBatch) -> usize| {
        batch
            .buckets
            .iter()
            .flat_map(|b| &b.micro_batches)
            .map(f)
            .sum()
    };
    Ok(ProbeTable {
        edges: edges.to_vec(),
        sequences: buckets.iter().map(|b| count(b, |m| m.rows)).collect(),
        tokens: buckets
            .iter()
            .map(|b| count(b, |m| m.target_tokens))
            .collect(),
        candidates: candidates.to_vec(),
        seconds,
    })
}

/// The micro-batches of every batch of `sample` whose length falls in bucket `b` of
/// `edges`, as one phase.
fn bucket_sample(edges: &[usize], b: usize, sample: &[GlobalBatch]) -> GlobalBatch {
    let low = if b == 0 { 0 } else { edges[b - 1] };
    let buckets: Vec<BucketBatch> = sample
        .iter()
        .flat_map(|batch| &batch.buckets)
        .filter(|bucket| bucket.seq_len > low && bucket.seq_len <= edges[b])
        .filter(|bucket| !bucket.micro_batches.is_empty())
        .cloned()
        .collect();
    GlobalBatch::of_buckets(buckets)
}

/// What a phase of a hot-switching step computes: forward and backward of every
/// micro-batch, then the sum over the strategy's ranks.
fn run_phase(trainer: &mut ParallelTrainer, batch: &GlobalBatch) -> Result<()> {
    let scale = loss_scale(batch)?;
    let grads = trainer.zero_gradients()?;
    trainer.accumulate_batch(batch, scale, &grads)?;
    trainer.reduce_gradients(&grads)
}

impl ProbeTable {
    /// The fastest candidate of bucket `b`, if the sample had any of it.
    fn fastest(&self, b: usize) -> Option<(usize, f64)> {
        self.seconds[b]
            .iter()
            .enumerate()
            .filter_map(|(c, s)| s.map(|s| (c, s)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
    }

    /// Each bucket's strategy and the update strategy (`update`, or else the fastest
    /// strategy of the longest sampled bucket); every bucket takes its fastest strategy
    /// when that saves more than [`SWITCH_MARGIN`] of the sample's time under the update
    /// strategy, and keeps the update strategy otherwise (or when the sample had none of
    /// the bucket).
    pub fn choose(&self, update: Option<Strategy>) -> Result<(BucketStrategies, Strategy)> {
        let longest = (0..self.edges.len())
            .rev()
            .find_map(|b| self.fastest(b))
            .ok_or_else(|| {
                Error::Config("the probe's sample holds no sequence to measure".into())
            })?;
        let update = update.unwrap_or(self.candidates[longest.0]);
        // The update strategy computes like the same product without ZeRO-1.
        let computes_like_update = |s: &Strategy| {
            Strategy { zero1: false, ..*s }
                == Strategy {
                    zero1: false,
                    ..update
                }
        };
        let update_index = self.candidates.iter().position(computes_like_update);
        let update_times: Vec<f64> = (0..self.edges.len())
            .map(|b| {
                update_index
                    .and_then(|u| self.seconds[b][u])
                    .unwrap_or(f64::INFINITY)
            })
            .collect();
        let worth_a_switch =
            SWITCH_MARGIN * update_times.iter().filter(|t| t.is_finite()).sum::<f64>();
        let edges = (0..self.edges.len())
            .map(|b| {
                let strategy = match self.fastest(b) {
                    Some((c, best)) => match update_times[b] - best > worth_a_switch {
                        true => self.candidates[c],
                        false => update,
                    },
                    None => update,
                };
                (self.edges[b], strategy)
            })
            .collect();
        Ok((BucketStrategies::new(edges)?, update))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(seconds: Vec<Vec<Option<f64>>>) -> ProbeTable {
        ProbeTable {
            edges: vec![32, 64, 128],
            sequences: vec![1; 3],
            tokens: vec![1; 3],
            candidates: ["dp2", "tp2", "pp2"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            seconds,
        }
    }

    #[test]
    fn each_bucket_takes_its_fastest_unless_that_saves_too_little_of_the_sample() {
        let t = table(vec![
            vec![Some(1.0), Some(2.0), Some(3.0)],
            vec![Some(1.0), Some(1.04), Some(3.0)],
            vec![Some(3.0), Some(1.0), Some(2.0)],
        ]);
        // tp2 wins the longest bucket; leaving it must save over 5% of its 4.04 s.
        let (buckets, update) = t.choose(None).unwrap();
        assert_eq!(update.to_string(), "tp2");
        assert_eq!(buckets.to_string(), "32:dp2,64:tp2,128:tp2");
        // A named update strategy (with ZeRO-1) wins the near tie instead.
        let dp2zero1: Strategy = "dp2zero1".parse().unwrap();
        let (buckets, update) = t.choose(Some(dp2zero1)).unwrap();
        assert_eq!(update, dp2zero1);
        assert_eq!(buckets.to_string(), "32:dp2zero1,64:dp2zero1,128:tp2");
    }

    #[test]
    fn buckets_without_a_sample_keep_the_update_strategy() {
        let t = table(vec![
            vec![None, None, None],
            vec![Some(1.0), Some(2.0), Some(3.0)],
            vec![None, None, None],
        ]);
        let (buckets, update) = t.choose(None).unwrap();
        assert_eq!(update.to_string(), "dp2");
        assert_eq!(buckets.to_string(), "32:dp2,64:dp2,128:dp2");
        assert!(table(vec![vec![None; 3]; 3]).choose(None).is_err());
    }

    #[test]
    fn candidates_are_the_products_that_fit_the_model() {
        let model = crate::parallel::conformance::model();
        let names: Vec<String> = candidate_strategies(&model, 4)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            names,
            ["dp4", "dp2cp2", "dp2tp2", "dp2pp2", "cp4", "cp2tp2", "tp4", "tp2pp2", "pp4"],
            "{names:?}"
        );
        let one_layer = ModelConfig {
            n_layers: 1,
            ..model
        };
        assert!(candidate_strategies(&one_layer, 2)
            .iter()
            .all(|s| s.pp == 1));
        // Context parallelism never comes with a pipeline (the runtime refuses it).
        assert!(candidate_strategies(&model, 8)
            .iter()
            .all(|s| s.cp == 1 || s.pp == 1));
    }
}
