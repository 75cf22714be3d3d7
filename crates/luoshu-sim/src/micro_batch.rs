//! What one micro-batch costs on each pipeline stage of a layout: compute from the
//! roofline of its ops, tensor-parallel collectives per layer, and the point-to-point
//! sends between stages.

use crate::collective::{group_link, Collective};
use crate::kernels::Position;
use crate::layout::Layout;
use crate::ops::{backward, embedding_forward, head_forward, layer_forward, OpCost, Work};
use crate::simulator::Simulator;
use crate::Result;

/// Seconds of one micro-batch's forward and backward on each stage, sends included.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSeconds {
    /// Forward seconds, indexed by stage.
    pub forward: Vec<f64>,
    /// Backward seconds (recomputation included), indexed by stage.
    pub backward: Vec<f64>,
}

fn backward_of(ops: &[OpCost]) -> Vec<OpCost> {
    ops.iter().map(backward).collect()
}

/// The micro-batch `work` under `layout`.
///
/// Per layer, sequence-parallel tensor parallelism all-gathers the activations before
/// the attention and MLP blocks and reduce-scatters after them (2 + 2 collectives of
/// `tokens·d` values forward, the conjugates backward; recomputation repeats the
/// forward's). The head all-gathers its input and the embedding reduce-scatters its
/// output. Each stage but the last sends `tokens·d/tp` values to the next one forward
/// and each stage but the first sends the gradient back. Context parallelism gives each of
/// its `cp` ranks `1/cp` of the tokens and (balanced chunks) of the attention pairs, and
/// per layer passes the keys and the values of each rank's chunks (`tokens·kv/(cp·tp)`
/// values each) `cp − 1` places around the ring forward, one shift per message to the
/// next rank (links are full duplex: a shift costs one message), and their gradients
/// back the other way backward. Every kernel the stage's graphs launch adds the
/// hardware's kernel overhead (none when the hardware leaves it at 0).
pub fn stage_seconds(sim: &Simulator, layout: &Layout, work: Work) -> Result<StageSeconds> {
    let (model, e) = (&sim.model, sim.bytes.compute);
    let strategy = layout.strategy();
    let (tp, cp) = (strategy.tp, strategy.cp);
    let block = work.tokens * model.kv_dim() as f64 / (cp * tp) as f64 * e;
    let work = Work {
        tokens: work.tokens / cp as f64,
        pairs: work.pairs / cp as f64,
    };
    let roofline = &sim.roofline;
    let layer = layer_forward(model, work, tp, e);
    let head = head_forward(model, work, tp, e);
    let embedding = embedding_forward(model, work, tp, e);
    let layer_fwd = roofline.total(&layer);
    let layer_bwd = roofline.total(&backward_of(&layer));
    let (head_fwd, head_bwd) = (roofline.total(&head), roofline.total(&backward_of(&head)));
    let (embed_fwd, embed_bwd) = (
        roofline.total(&embedding),
        roofline.total(&backward_of(&embedding)),
    );

    let activation = work.tokens * model.d_model as f64 * e;
    let tp_link = group_link(&sim.topology, &layout.tp_group());
    let gather = Collective::AllGather.seconds(tp, activation, tp_link);
    let scatter = Collective::ReduceScatter.seconds(tp, activation, tp_link);
    let cp_link = group_link(&sim.topology, &layout.cp_group());
    // Keys and values: two shifts per ring step, cp − 1 steps, each way.
    let cp_ring = 2.0 * (cp - 1) as f64 * Collective::PointToPoint.seconds(2, block, cp_link);
    let layer_comm_fwd = 2.0 * gather + 2.0 * scatter + cp_ring;
    let layer_comm_bwd = 2.0 * gather + 2.0 * scatter + cp_ring;
    let recompute = if layout.candidate.recompute {
        layer_fwd + layer_comm_fwd
    } else {
        0.0
    };

    let overhead = sim.hardware.device.kernel_overhead;
    let kernels = match overhead > 0.0 {
        true => Some(sim.kernel_counts(tp, cp)?),
        false => None,
    };

    let stages = layout.stages.len();
    let send = |from: usize, to: usize| {
        let link = sim.topology.cost(
            sim.topology
                .link(layout.rank(0, from, 0), layout.rank(0, to, 0)),
        );
        Collective::PointToPoint.seconds(2, activation / tp as f64, link)
    };
    let mut forward = Vec::with_capacity(stages);
    let mut backward = Vec::with_capacity(stages);
    for (stage, layers) in layout.stages.iter().enumerate() {
        let n = layers.len() as f64;
        let mut f = n * (layer_fwd + layer_comm_fwd);
        let mut b = n * (layer_bwd + layer_comm_bwd + recompute);
        if stage == 0 {
            f += embed_fwd + scatter;
            b += embed_bwd + gather;
        }
        if stage + 1 == stages {
            f += head_fwd + gather;
            b += head_bwd + scatter;
        } else {
            f += send(stage, stage + 1);
        }
        if stage > 0 {
            b += send(stage, stage - 1);
        }
        if let Some(kernels) = &kernels {
            let launches = kernels.stage(layers.len(), Position::of(stage, stages));
            f += overhead * launches.forward;
            b += overhead * launches.backward;
            if layout.candidate.recompute {
                b += overhead * layers.len() as f64 * kernels.layer_forward();
            }
        }
        forward.push(f);
        backward.push(b);
    }
    Ok(StageSeconds { forward, backward })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Hardware;
    use crate::layout::Candidate;
    use luoshu_model::{ModelConfig, Precision};

    fn sim(devices: usize) -> Simulator {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let hw = Hardware::preset("a800-node").unwrap();
        Simulator::new(model, hw, devices, Precision::Bf16Mixed).unwrap()
    }

    fn layout(sim: &Simulator, s: &str, recompute: bool) -> Layout {
        let candidate = Candidate {
            strategy: s.parse().unwrap(),
            recompute,
        };
        Layout::new(&sim.model, candidate).unwrap()
    }

    #[test]
    fn one_device_is_the_sum_of_its_ops() {
        let sim = sim(1);
        let work = Work::packed(4096, &[4096]);
        let single = stage_seconds(&sim, &layout(&sim, "single", false), work).unwrap();
        let r = &sim.roofline;
        let (m, e) = (&sim.model, 2.0);
        let layer = layer_forward(m, work, 1, e);
        let head = head_forward(m, work, 1, e);
        let embedding = embedding_forward(m, work, 1, e);
        let expected = 32.0 * r.total(&layer) + r.total(&head) + r.total(&embedding);
        assert!((single.forward[0] - expected).abs() < 1e-12 * expected);
        // The backward of matmuls is twice their forward, so backward ≈ 2× forward.
        let ratio = single.backward[0] / single.forward[0];
        assert!(ratio > 1.9 && ratio < 2.6, "{ratio}");
        let recompute = stage_seconds(&sim, &layout(&sim, "single", true), work).unwrap();
        assert_eq!(recompute.forward, single.forward);
        assert!(recompute.backward[0] > single.backward[0]);
    }

    #[test]
    fn tensor_parallelism_pays_its_collectives() {
        let sim = sim(8);
        let work = Work::packed(4096, &[4096]);
        let tp8 = stage_seconds(&sim, &layout(&sim, "tp8", false), work).unwrap();
        // Per layer: 2 all-gathers and 2 reduce-scatters of 4096·4096·2 bytes over 8
        // NVLink ranks: 4·(7·5 µs + 7/8 · 33554432 / 200e9 s).
        let n = 4096.0 * 4096.0 * 2.0;
        let per_layer = 4.0 * (7.0 * 5e-6 + 7.0 / 8.0 * n / 200e9);
        let r = &sim.roofline;
        let layer = r.total(&layer_forward(&sim.model, work, 8, 2.0));
        let head = r.total(&head_forward(&sim.model, work, 8, 2.0));
        let embed = r.total(&embedding_forward(&sim.model, work, 8, 2.0));
        let gather = 7.0 * 5e-6 + 7.0 / 8.0 * n / 200e9;
        let expected = 32.0 * (layer + per_layer) + head + embed + 2.0 * gather;
        assert!((tp8.forward[0] - expected).abs() < 1e-9 * expected);
    }

    #[test]
    fn context_parallelism_splits_the_work_and_passes_keys_and_values_around_the_ring() {
        let sim = sim(2);
        let work = Work::packed(8192, &[8192]);
        let cp2 = stage_seconds(&sim, &layout(&sim, "cp2", false), work).unwrap();
        let half = Work {
            tokens: 4096.0,
            pairs: work.pairs / 2.0,
        };
        // Per layer: one ring step (cp − 1 = 1) shifts this rank's keys and its values
        // (4096·4096 values each: llama-7b has 32 KV heads of 128; bf16) to the other
        // NVLink rank, one message each: 2·(5 µs + n / 200e9).
        let n = 4096.0 * 4096.0 * 2.0;
        let gather = 2.0 * (5e-6 + n / 200e9);
        let r = &sim.roofline;
        let layer = r.total(&layer_forward(&sim.model, half, 1, 2.0));
        let head = r.total(&head_forward(&sim.model, half, 1, 2.0));
        let embed = r.total(&embedding_forward(&sim.model, half, 1, 2.0));
        let expected = 32.0 * (layer + gather) + head + embed;
        assert!((cp2.forward[0] - expected).abs() < 1e-9 * expected);
    }

    #[test]
    fn every_kernel_of_the_stage_graphs_adds_the_kernel_overhead() {
        let model = ModelConfig::preset("tiny").unwrap();
        let hardware = Hardware::preset("a800-node").unwrap();
        let mut slow = hardware.clone();
        slow.device.kernel_overhead = 1e-3;
        let without = Simulator::new(model.clone(), hardware, 2, Precision::F32).unwrap();
        let with = Simulator::new(model, slow, 2, Precision::F32).unwrap();
        let work = Work::packed(64, &[64]);
        for (strategy, recompute) in [("tp2", false), ("pp2", true)] {
            let layout = layout(&with, strategy, recompute);
            let base = stage_seconds(&without, &layout, work).unwrap();
            let slowed = stage_seconds(&with, &layout, work).unwrap();
            let s: luoshu_dist::Strategy = strategy.parse().unwrap();
            let counts = with.kernel_counts(s.tp, s.cp).unwrap();
            for (stage, layers) in layout.stages.iter().enumerate() {
                let position = crate::kernels::Position::of(stage, layout.stages.len());
                let launches = counts.stage(layers.len(), position);
                let recomputed = match recompute {
                    true => layers.len() as f64 * counts.layer_forward(),
                    false => 0.0,
                };
                let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
                assert!(close(
                    slowed.forward[stage] - base.forward[stage],
                    1e-3 * launches.forward
                ));
                assert!(close(
                    slowed.backward[stage] - base.backward[stage],
                    1e-3 * (launches.backward + recomputed)
                ));
            }
        }
    }

    #[test]
    fn pipeline_stages_send_their_activations() {
        let sim = sim(16);
        let work = Work::packed(2048, &[2048]);
        let layout = layout(&sim, "tp8pp2", false);
        let pp2 = stage_seconds(&sim, &layout, work).unwrap();
        // Stage 0 is ranks 0..8, stage 1 ranks 8..16: one message of 2048·4096·2 / 8
        // bytes over the network, forward from stage 0 and backward from stage 1.
        let send = 10e-6 + 2048.0 * 4096.0 * 2.0 / 8.0 / 12.5e9;
        let n = 2048.0 * 4096.0 * 2.0;
        let collective = 7.0 * 5e-6 + 7.0 / 8.0 * n / 200e9;
        let r = &sim.roofline;
        let layer = r.total(&layer_forward(&sim.model, work, 8, 2.0)) + 4.0 * collective;
        let embed = r.total(&embedding_forward(&sim.model, work, 8, 2.0)) + collective;
        let layers = layout.stages[0].len() as f64;
        let expected = layers * layer + embed + send;
        assert!((pp2.forward[0] - expected).abs() < 1e-9 * expected);
        let no_send: f64 = layout.stages[1].len() as f64
            * (r.total(&backward_of(&layer_forward(&sim.model, work, 8, 2.0))) + 4.0 * collective)
            + r.total(&backward_of(&head_forward(&sim.model, work, 8, 2.0)))
            + collective;
        assert!((pp2.backward[1] - no_send - send).abs() < 1e-9 * no_send);
    }
}
