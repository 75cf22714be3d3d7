//! How many kernels a micro-batch launches on a pipeline stage, counted in the graphs the
//! trainer compiles: the kernels of the memory plan's schedule (views and fed leaves launch
//! nothing; collectives are priced by the α-β models instead). Every layer builds the same
//! nodes, so a stage's count is `layers · per_layer` plus what its position adds (the
//! embedding on the first stage, the head and loss on the last, the received hidden rows
//! and their gradient in between); both are read off graphs of one, two and three layers
//! of the same model, cheap to build even for a 70B configuration (no tensor is allocated).
//! The counts do not depend on rows or sequence length.

use crate::Result;
use luoshu_graph::memory::{plan_memory, StepKind};
use luoshu_graph::passes::{run_pipeline, DEFAULT_PIPELINE};
use luoshu_graph::schedule::schedule;
use luoshu_graph::Graph;
use luoshu_model::llama::{build_stage_forward_graph, build_stage_train_graph, RowLayout};
use luoshu_model::{ModelConfig, ModelShard, Precision};
use luoshu_train::parallel::{context_bindings, pad_multiple};

/// Kernels of a micro-batch's forward pass and of its backward pass (the training graph's
/// kernels beyond the forward graph's: on stages that recompute, the recomputed forward
/// is charged separately, as the forward graph's count again).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Launches {
    /// Kernels of the forward graph.
    pub forward: f64,
    /// Kernels the training graph launches beyond the forward graph's.
    pub backward: f64,
}

impl Launches {
    fn minus(self, other: Launches) -> Launches {
        Launches {
            forward: self.forward - other.forward,
            backward: self.backward - other.backward,
        }
    }

    fn plus(self, other: Launches) -> Launches {
        Launches {
            forward: self.forward + other.forward,
            backward: self.backward + other.backward,
        }
    }

    fn times(self, n: f64) -> Launches {
        Launches {
            forward: self.forward * n,
            backward: self.backward * n,
        }
    }
}

/// A stage's position in the pipeline, which decides what it builds beside its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The only stage: embedding, layers, head and loss.
    Whole,
    /// The first of several stages: embedding and layers, sending hidden rows on.
    First,
    /// Between the first and the last: layers only, receiving and sending hidden rows.
    Middle,
    /// The last of several stages: layers, head and loss, receiving hidden rows.
    Last,
}

impl Position {
    /// The position of stage `stage` of a pipeline of `stages` stages.
    pub fn of(stage: usize, stages: usize) -> Position {
        match (stage == 0, stage + 1 == stages) {
            (true, true) => Position::Whole,
            (true, false) => Position::First,
            (false, true) => Position::Last,
            (false, false) => Position::Middle,
        }
    }
}

/// Kernel counts of one model under one tensor- and context-parallel degree.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelCounts {
    per_layer: Launches,
    whole: Launches,
    first: Launches,
    middle: Launches,
    last: Launches,
}

impl KernelCounts {
    /// Counts `model`'s graphs under `tp`-way tensor and `cp`-way context parallelism.
    pub fn of(model: &ModelConfig, precision: Precision, tp: usize, cp: usize) -> Result<Self> {
        let with_layers = |n: usize| ModelConfig {
            n_layers: n,
            ..model.clone()
        };
        let count = |layers: usize, stages: usize, stage: usize| -> Result<Launches> {
            let cfg = with_layers(layers);
            let per_stage = layers / stages;
            let range = stage * per_stage..(stage + 1) * per_stage;
            let shard =
                ModelShard::new(&cfg, tp, 0, stages, stage, range)?.with_context_parallel(cp, 0)?;
            stage_launches(&cfg, precision, &shard, tp, cp)
        };
        let (one, two) = (count(1, 1, 0)?, count(2, 1, 0)?);
        let per_layer = two.minus(one);
        // A stage of one layer at each position; middle stages need three.
        let beside = |layers: Launches| layers.minus(per_layer);
        let (first, last) = if cp == 1 {
            (beside(count(2, 2, 0)?), beside(count(2, 2, 1)?))
        } else {
            // Context parallelism runs without pipeline stages: only `Whole` is reachable.
            (Launches::default(), Launches::default())
        };
        let middle = match cp {
            1 => beside(count(3, 3, 1)?),
            _ => Launches::default(),
        };
        Ok(KernelCounts {
            per_layer,
            whole: beside(one),
            first,
            middle,
            last,
        })
    }

    /// Kernels of one micro-batch on a stage of `layers` layers at `position`.
    pub fn stage(&self, layers: usize, position: Position) -> Launches {
        let beside = match position {
            Position::Whole => self.whole,
            Position::First => self.first,
            Position::Middle => self.middle,
            Position::Last => self.last,
        };
        self.per_layer.times(layers as f64).plus(beside)
    }

    /// Forward kernels of one layer (what a recomputing stage launches again per layer).
    pub fn layer_forward(&self) -> f64 {
        self.per_layer.forward
    }
}

/// The forward and backward kernels of `shard`'s graphs, compiled as the trainer compiles
/// them (the default pass pipeline, a small shape: counts do not depend on it).
fn stage_launches(
    cfg: &ModelConfig,
    precision: Precision,
    shard: &ModelShard,
    tp: usize,
    cp: usize,
) -> Result<Launches> {
    let layout = RowLayout::OneDocument;
    let train = build_stage_train_graph(cfg, precision, shard, layout)?.graph;
    let forward = build_stage_forward_graph(cfg, precision, shard, layout)?;
    let seq = 2 * pad_multiple(tp, cp);
    let count = |graph: &Graph| -> Result<f64> {
        let graph = run_pipeline(graph, DEFAULT_PIPELINE)?.0;
        launched(&graph, &context_bindings(1, seq, tp, cp))
    };
    let (train, forward) = (count(&train)?, count(&forward)?);
    Ok(Launches {
        forward,
        backward: train - forward,
    })
}

/// Kernels `graph`'s plan launches for `bindings`, collectives excluded.
pub fn launched(graph: &Graph, bindings: &luoshu_graph::Bindings) -> Result<f64> {
    let order = schedule(graph, bindings)?;
    let memory = plan_memory(graph, &order, bindings)?;
    Ok(memory
        .schedule
        .iter()
        .zip(&memory.kinds)
        .filter(|(id, kind)| {
            matches!(kind, StepKind::Compute) && !graph.node(**id).op.is_collective()
        })
        .count() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_dist::Strategy;
    use luoshu_train::placement::stage_layers;

    /// The counts of every stage of `strategy` on the real model, graph by graph.
    fn counted_stages(model: &ModelConfig, strategy: Strategy) -> Vec<Launches> {
        let stages = stage_layers(model, strategy.pp).unwrap();
        stages
            .iter()
            .enumerate()
            .map(|(stage, layers)| {
                let shard =
                    ModelShard::new(model, strategy.tp, 0, strategy.pp, stage, layers.clone())
                        .unwrap()
                        .with_context_parallel(strategy.cp, 0)
                        .unwrap();
                stage_launches(model, Precision::F32, &shard, strategy.tp, strategy.cp).unwrap()
            })
            .collect()
    }

    #[test]
    fn per_layer_decomposition_reproduces_every_stage_of_the_whole_model() {
        // `tiny` (tied, full heads, 4 layers) and `bench-5m` (untied, grouped KV heads).
        for preset in ["tiny", "bench-5m"] {
            let model = ModelConfig::preset(preset).unwrap();
            for strategy in ["single", "tp2", "pp2", "pp4", "cp2", "tp2pp2"] {
                let strategy: Strategy = strategy.parse().unwrap();
                if strategy.pp > model.n_layers {
                    continue;
                }
                let counts =
                    KernelCounts::of(&model, Precision::F32, strategy.tp, strategy.cp).unwrap();
                let stages = stage_layers(&model, strategy.pp).unwrap();
                let counted = counted_stages(&model, strategy);
                for (stage, layers) in stages.iter().enumerate() {
                    let position = Position::of(stage, stages.len());
                    assert_eq!(
                        counts.stage(layers.len(), position),
                        counted[stage],
                        "{preset} {strategy} stage {stage}"
                    );
                }
                assert!(counted[0].forward > 0.0 && counted[0].backward > counted[0].forward);
            }
        }
    }

    #[test]
    fn positions_by_hand() {
        assert_eq!(Position::of(0, 1), Position::Whole);
        assert_eq!(Position::of(0, 3), Position::First);
        assert_eq!(Position::of(1, 3), Position::Middle);
        assert_eq!(Position::of(2, 3), Position::Last);
    }
}
