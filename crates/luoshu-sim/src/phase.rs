//! One phase of a step: a set of micro-batches run under one layout. Micro-batches are
//! dealt to data-parallel replicas balanced by their cost, each replica runs its own 1F1B
//! pipeline micro-batch by micro-batch (every micro-batch at its own length), and the
//! gradients are reduced over data parallelism at the end. Also the optimizer update.

use crate::collective::{group_link, Collective};
use crate::layout::Layout;
use crate::memory::{activation_bytes_per_token, Memory};
use crate::micro_batch::{stage_seconds, StageSeconds};
use crate::ops::Work;
use crate::simulator::Simulator;
use crate::Result;
use luoshu_dist::pipeline::simulate_costed;
use luoshu_dist::{one_f_one_b, PipelineAction};

/// Time and memory of a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseCost {
    /// The slowest replica's pipeline plus the gradient reduction.
    pub seconds: f64,
    /// The slowest data-parallel replica's 1F1B pipeline over its micro-batches (on
    /// hardware with shared compute, at least the ranks' total work at the node's rate).
    pub pipeline_seconds: f64,
    /// The gradient all-reduce (ZeRO-1: reduce-scatter) over the data- and
    /// context-parallel replicas, plus the tied embedding's between the first and last
    /// stage.
    pub reduce_seconds: f64,
    /// The fullest rank.
    pub memory: Memory,
    /// Bytes of every rank together by kind (what ranks that are threads of one process
    /// hold).
    pub memory_all_ranks: Memory,
}

/// Indices of `costs` dealt to `replicas` bins, longest first onto the least loaded bin.
fn deal(costs: &[f64], replicas: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut bins = vec![Vec::new(); replicas];
    let mut load = vec![0.0f64; replicas];
    for i in order {
        let (bin, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one replica");
        bins[bin].push(i);
        load[bin] += costs[i];
    }
    bins
}

/// The largest sum of `tokens` of the micro-batches stage `stage` holds between their
/// forward and backward under 1F1B.
fn peak_in_flight(stages: usize, stage: usize, tokens: &[f64]) -> f64 {
    let (mut live, mut peak) = (0.0f64, 0.0f64);
    for action in one_f_one_b(stages, stage, tokens.len()) {
        match action {
            PipelineAction::Forward(m) => {
                live += tokens[m];
                peak = peak.max(live);
            }
            PipelineAction::Backward(m) => live -= tokens[m],
        }
    }
    peak
}

/// The makespan of one replica's micro-batches (`costs[i]` per stage) under 1F1B.
fn pipeline_seconds(costs: &[&StageSeconds], stages: usize) -> Result<f64> {
    if stages == 1 {
        return Ok(costs.iter().map(|c| c.forward[0] + c.backward[0]).sum());
    }
    let orders: Vec<_> = (0..stages)
        .map(|stage| one_f_one_b(stages, stage, costs.len()))
        .collect();
    Ok(simulate_costed(
        &orders,
        costs.len(),
        &|stage, action| match action {
            PipelineAction::Forward(m) => costs[m].forward[stage],
            PipelineAction::Backward(m) => costs[m].backward[stage],
        },
    )?)
}

/// Runs `rows` (one micro-batch each) under `layout` while the update strategy's
/// optimizer state takes `optimizer_bytes` on every rank.
pub fn phase(
    sim: &Simulator,
    layout: &Layout,
    rows: &[Work],
    optimizer_bytes: f64,
) -> Result<PhaseCost> {
    let strategy = layout.strategy();
    let stages = layout.stages.len();
    let seconds: Vec<StageSeconds> = rows
        .iter()
        .map(|&w| stage_seconds(sim, layout, w))
        .collect::<Result<_>>()?;
    let totals: Vec<f64> = seconds
        .iter()
        .map(|s| s.forward.iter().chain(&s.backward).sum())
        .collect();
    let replicas = deal(&totals, strategy.dp);
    // Ranks sharing one processor: the phase's rank-seconds of work (every tensor- and
    // context-parallel rank of a stage busy for its `totals`) at the node's rate.
    let shared_work = match sim.hardware.shared_compute {
        true => {
            let ranks_per_stage = (strategy.tp * strategy.cp) as f64;
            totals.iter().sum::<f64>() * ranks_per_stage / strategy.devices() as f64
        }
        false => 0.0,
    };
    let mut pipeline = 0.0f64;
    let mut in_flight = vec![0.0f64; stages];
    let mut longest = 0.0f64;
    for replica in &replicas {
        let costs: Vec<&StageSeconds> = replica.iter().map(|&i| &seconds[i]).collect();
        pipeline = pipeline.max(pipeline_seconds(&costs, stages)?);
        // A context-parallel rank keeps its 1/cp of each micro-batch's tokens.
        let tokens: Vec<f64> = replica
            .iter()
            .map(|&i| rows[i].tokens / strategy.cp as f64)
            .collect();
        for (stage, peak) in in_flight.iter_mut().enumerate() {
            *peak = peak.max(peak_in_flight(stages, stage, &tokens));
        }
        longest = tokens.iter().copied().fold(longest, f64::max);
    }
    if sim.hardware.shared_compute {
        // No rank idles while another has work; the longest chain still runs at most
        // at the whole node's rate.
        pipeline = shared_work.max(pipeline / strategy.devices() as f64);
    }

    let bytes = sim.bytes;
    let mut reduce = 0.0f64;
    let mut memory = Memory::default();
    let mut memory_all_ranks = Memory::default();
    for (stage, &params) in layout.stage_params.iter().enumerate() {
        let params = params as f64;
        let kind = if strategy.zero1 {
            Collective::ReduceScatter
        } else {
            Collective::AllReduce
        };
        let link = group_link(&sim.topology, &layout.replica_group(stage));
        reduce = reduce.max(kind.seconds(strategy.replicas(), params * bytes.param, link));
        let (per_token, working) = activation_bytes_per_token(&sim.model, layout, stage, bytes);
        let here = Memory {
            parameters: params * (bytes.param + bytes.copy),
            gradients: params * bytes.param,
            optimizer: optimizer_bytes,
            activations: in_flight[stage] * per_token + longest * working,
        };
        memory_all_ranks += here * (strategy.replicas() * strategy.tp) as f64;
        if here.total() > memory.total() {
            memory = here;
        }
    }
    if sim.model.tie_embeddings && stages > 1 {
        // The tied embedding's gradient is summed between the first and last stage.
        let shared = (sim.model.vocab_size * sim.model.d_model) as f64 / strategy.tp as f64;
        let ends = [layout.rank(0, 0, 0), layout.rank(0, stages - 1, 0)];
        let link = group_link(&sim.topology, &ends);
        reduce += Collective::AllReduce.seconds(2, shared * bytes.param, link);
    }
    Ok(PhaseCost {
        seconds: pipeline + reduce,
        pipeline_seconds: pipeline,
        reduce_seconds: reduce,
        memory,
        memory_all_ranks,
    })
}

/// The optimizer step under the update layout: AdamW reads the gradient, the parameter and
/// both moments and writes the last three (7 values per parameter of the rank's share,
/// memory-bound), the compute copies are refreshed (read one, write one), and under
/// ZeRO-1 the updated shares are all-gathered over data parallelism.
pub fn update_seconds(sim: &Simulator, layout: &Layout) -> f64 {
    let strategy = layout.strategy();
    let bytes = sim.bytes;
    let bandwidth =
        sim.hardware.device.memory_bandwidth * sim.hardware.device.efficiency.memory_bound;
    let params = layout.max_stage_params() as f64;
    let share = if strategy.zero1 {
        params / strategy.dp as f64
    } else {
        params
    };
    let adamw = 7.0 * bytes.param * share / bandwidth;
    let copies = params * (bytes.param + bytes.copy) / bandwidth;
    let gather = if strategy.zero1 {
        (0..layout.stages.len())
            .map(|stage| {
                let link = group_link(&sim.topology, &layout.dp_group(stage));
                Collective::AllGather.seconds(strategy.dp, params * bytes.param, link)
            })
            .fold(0.0, f64::max)
    } else {
        0.0
    };
    adamw + copies + gather
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Hardware;
    use crate::layout::Candidate;
    use luoshu_model::{ModelConfig, Precision};

    #[test]
    fn zero1_reduction_and_update_by_hand() {
        let model = ModelConfig::preset("llama-7b").unwrap();
        let hardware = Hardware::preset("a800-node").unwrap();
        let sim = Simulator::new(model.clone(), hardware, 8, Precision::Bf16Mixed).unwrap();
        let candidate = Candidate {
            strategy: "dp8zero1".parse().unwrap(),
            recompute: false,
        };
        let layout = Layout::new(&model, candidate).unwrap();
        let n = model.num_parameters() as f64;
        // Reduce-scatter of the f32 gradients over 8 NVLink ranks.
        let scatter = 7.0 * 5e-6 + 7.0 / 8.0 * 4.0 * n / 200e9;
        let rows = [Work::packed(1024, &[1024]); 8];
        let cost = phase(&sim, &layout, &rows, 0.0).unwrap();
        assert!((cost.reduce_seconds - scatter).abs() < 1e-12);
        // AdamW on an eighth (7 f32 values each), the bf16 copies refreshed (read 4, write
        // 2 bytes), and the all-gather of the f32 parameters, at 80% of 2.039 TB/s.
        let bandwidth = 2.039e12 * 0.8;
        let expected = 7.0 * 4.0 * n / 8.0 / bandwidth + 6.0 * n / bandwidth + scatter;
        assert!((update_seconds(&sim, &layout) - expected).abs() < 1e-12);
        // Eight equal rows over eight replicas: one micro-batch each.
        let one = stage_seconds(&sim, &layout, rows[0]).unwrap();
        assert_eq!(cost.pipeline_seconds, one.forward[0] + one.backward[0]);
        assert_eq!(cost.memory.optimizer, 0.0);
        assert_eq!(cost.memory.gradients, 4.0 * n);
    }

    #[test]
    fn ranks_sharing_a_processor_fill_the_pipeline_bubbles() {
        let model = ModelConfig::preset("tiny").unwrap();
        let run = |shared: bool, strategy: &str, rows: &[Work]| {
            let mut hardware = Hardware::preset("a800-node").unwrap();
            hardware.shared_compute = shared;
            let sim = Simulator::new(model.clone(), hardware, 2, Precision::F32).unwrap();
            let candidate = Candidate {
                strategy: strategy.parse().unwrap(),
                recompute: false,
            };
            let layout = Layout::new(&model, candidate).unwrap();
            let per_row: Vec<StageSeconds> = rows
                .iter()
                .map(|&w| stage_seconds(&sim, &layout, w).unwrap())
                .collect();
            let cost = phase(&sim, &layout, rows, 0.0).unwrap();
            (cost.pipeline_seconds, per_row)
        };
        let rows = [Work::packed(64, &[64]), Work::packed(128, &[128])];
        // Two stages: the separate devices' makespan has bubbles; shared cores do the
        // stages' total work at twice one rank's rate.
        let (separate, _) = run(false, "pp2", &rows);
        let (shared, per_row) = run(true, "pp2", &rows);
        let work: f64 = per_row
            .iter()
            .map(|s| s.forward.iter().chain(&s.backward).sum::<f64>())
            .sum();
        assert_eq!(shared, work / 2.0);
        assert!(shared < separate);
        // One rank: nothing to share.
        assert_eq!(run(true, "single", &rows).0, run(false, "single", &rows).0);
    }

    #[test]
    fn dealing_balances_the_load() {
        let bins = deal(&[5.0, 4.0, 3.0, 3.0, 1.0], 2);
        assert_eq!(bins, vec![vec![0, 3], vec![1, 2, 4]]);
    }

    #[test]
    fn micro_batches_of_different_lengths_by_hand() {
        // Two stages, micro-batches costing 1 and 3 forward, 2 and 6 backward per stage.
        // Stage 0: F0 [0,1], F1 [1,4], B0 [4,6] (after stage 1's B0), B1 [13,19].
        // Stage 1: F0 [1,2], B0 [2,4], F1 [4,7], B1 [7,13].
        let short = StageSeconds {
            forward: vec![1.0, 1.0],
            backward: vec![2.0, 2.0],
        };
        let long = StageSeconds {
            forward: vec![3.0, 3.0],
            backward: vec![6.0, 6.0],
        };
        assert_eq!(pipeline_seconds(&[&short, &long], 2).unwrap(), 19.0);
        // One stage runs them back to back.
        assert_eq!(pipeline_seconds(&[&short, &long], 1).unwrap(), 12.0);
    }

    #[test]
    fn one_f_one_b_keeps_at_most_stages_minus_stage_in_flight() {
        let tokens = [1.0, 2.0, 4.0, 8.0, 16.0];
        // Stage 0 of 3: warm-up of 2, so 3 in flight at most (1+2+4, then 2+4+8, 4+8+16).
        assert_eq!(peak_in_flight(3, 0, &tokens), 28.0);
        assert_eq!(peak_in_flight(3, 2, &tokens), 16.0);
    }
}
