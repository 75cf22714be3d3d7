//! Pipeline parallelism: the 1F1B schedule of one stage, a simulator that proves a set of
//! per-stage orders deadlock-free, and the balancing of layers over stages.

mod action;

use crate::{Error, OrderProblem, Result};
pub use action::PipelineAction;
use std::ops::Range;

/// The PipeDream-flush (Megatron non-interleaved) 1F1B order of `stage` among `stages`:
/// `min(stages - stage - 1, micro_batches)` warm-up forwards, then one forward and one
/// backward alternately, then the remaining backwards.
///
/// The warm-up keeps at most `stages - stage` activations alive on the stage, instead of
/// `micro_batches` under GPipe, while the last stage starts its backwards at once.
/// Returns an empty order when `stage >= stages`.
pub fn one_f_one_b(stages: usize, stage: usize, micro_batches: usize) -> Vec<PipelineAction> {
    if stage >= stages {
        return Vec::new();
    }
    let warm_up = (stages - stage - 1).min(micro_batches);
    let steady = micro_batches - warm_up;
    let mut order: Vec<PipelineAction> = (0..warm_up).map(PipelineAction::Forward).collect();
    for i in 0..steady {
        order.push(PipelineAction::Forward(warm_up + i));
        order.push(PipelineAction::Backward(i));
    }
    order.extend((steady..micro_batches).map(PipelineAction::Backward));
    order
}

/// [`simulate`] of the [`one_f_one_b`] orders of every stage.
pub fn simulate_schedule(
    stages: usize,
    micro_batches: usize,
    fwd_cost: f64,
    bwd_cost: f64,
) -> Result<f64> {
    let orders: Vec<_> = (0..stages)
        .map(|stage| one_f_one_b(stages, stage, micro_batches))
        .collect();
    simulate(&orders, micro_batches, fwd_cost, bwd_cost)
}

/// Executes per-stage orders (`orders[s]` is stage `s`'s) and returns the makespan, every
/// forward costing `fwd_cost` and every backward `bwd_cost` (see [`simulate_costed`]).
pub fn simulate(
    orders: &[Vec<PipelineAction>],
    micro_batches: usize,
    fwd_cost: f64,
    bwd_cost: f64,
) -> Result<f64> {
    simulate_costed(orders, micro_batches, &|_, action| match action {
        PipelineAction::Forward(_) => fwd_cost,
        PipelineAction::Backward(_) => bwd_cost,
    })
}

/// Executes per-stage orders (`orders[s]` is stage `s`'s) and returns the makespan.
///
/// Stage `s`'s `Forward(m)` receives `m`'s activation from stage `s - 1`'s `Forward(m)`
/// and its `Backward(m)` receives `m`'s gradient from stage `s + 1`'s `Backward(m)`;
/// a receive blocks until the matching step has finished, sends are buffered (as the
/// batched send/receive pairs of Megatron make them) and free. Step `action` of stage `s`
/// costs `cost(s, action)`, one step at a time, so micro-batches of different lengths
/// (and stages of different sizes) are simulated as they are.
///
/// Errors when an order does not run every micro-batch's forward exactly once and then
/// its backward exactly once, when a cost is negative or not finite, or when the stages
/// deadlock (every unfinished stage waits on a receive).
pub fn simulate_costed(
    orders: &[Vec<PipelineAction>],
    micro_batches: usize,
    cost: &dyn Fn(usize, PipelineAction) -> f64,
) -> Result<f64> {
    if orders.is_empty() {
        return Err(Error::NoPipelineStages);
    }
    for (stage, order) in orders.iter().enumerate() {
        check_order(stage, order, micro_batches)?;
    }
    let stages = orders.len();
    // finished[s][m] = (forward end, backward end) of micro-batch m on stage s.
    let mut finished = vec![vec![(None::<f64>, None::<f64>); micro_batches]; stages];
    let mut next = vec![0usize; stages];
    let mut clock = vec![0.0f64; stages];
    loop {
        let mut progressed = false;
        for stage in 0..stages {
            while let Some(&action) = orders[stage].get(next[stage]) {
                let ready = match action {
                    PipelineAction::Forward(_) if stage == 0 => Some(0.0),
                    PipelineAction::Forward(m) => finished[stage - 1][m].0,
                    PipelineAction::Backward(_) if stage + 1 == stages => Some(0.0),
                    PipelineAction::Backward(m) => finished[stage + 1][m].1,
                };
                let Some(ready) = ready else { break };
                let step = cost(stage, action);
                if !(step.is_finite() && step >= 0.0) {
                    return Err(Error::PipelineStepCost {
                        action,
                        stage,
                        cost: step,
                    });
                }
                let end = clock[stage].max(ready) + step;
                clock[stage] = end;
                match action {
                    PipelineAction::Forward(m) => finished[stage][m].0 = Some(end),
                    PipelineAction::Backward(m) => finished[stage][m].1 = Some(end),
                }
                next[stage] += 1;
                progressed = true;
            }
        }
        if next.iter().zip(orders).all(|(&n, order)| n == order.len()) {
            return Ok(clock.iter().copied().fold(0.0, f64::max));
        }
        if !progressed {
            let waiting: Vec<String> = next
                .iter()
                .zip(orders)
                .enumerate()
                .filter_map(|(stage, (&n, order))| {
                    order
                        .get(n)
                        .map(|action| format!("stage {stage} at {action:?}"))
                })
                .collect();
            return Err(Error::PipelineDeadlock { waiting });
        }
    }
}

/// Checks that `order` runs each of `micro_batches` forward once, then backward once.
fn check_order(stage: usize, order: &[PipelineAction], micro_batches: usize) -> Result<()> {
    let mut seen = vec![(false, false); micro_batches];
    let fail = |problem| {
        Err(Error::PipelineOrder {
            stage,
            order: order.to_vec(),
            problem,
        })
    };
    for &action in order {
        let (PipelineAction::Forward(m) | PipelineAction::Backward(m)) = action;
        let Some(done) = seen.get_mut(m) else {
            return fail(OrderProblem::OutOfRange {
                micro_batch: m,
                micro_batches,
            });
        };
        match action {
            PipelineAction::Forward(_) if done.0 => return fail(OrderProblem::ForwardTwice(m)),
            PipelineAction::Forward(_) => done.0 = true,
            PipelineAction::Backward(_) if !done.0 => {
                return fail(OrderProblem::BackwardBeforeForward(m))
            }
            PipelineAction::Backward(_) if done.1 => return fail(OrderProblem::BackwardTwice(m)),
            PipelineAction::Backward(_) => done.1 = true,
        }
    }
    match seen.iter().position(|&(f, b)| !(f && b)) {
        Some(m) => fail(OrderProblem::Incomplete(m)),
        None => Ok(()),
    }
}

/// Cuts `layer_costs` into `stages` contiguous non-empty ranges of layers, in order,
/// minimizing the largest stage cost (exact, by dynamic programming over prefixes).
///
/// Errors when `stages` is 0 or exceeds the number of layers, or a cost is negative or
/// not finite.
pub fn balance_stages(layer_costs: &[f64], stages: usize) -> Result<Vec<Range<usize>>> {
    let layers = layer_costs.len();
    if stages == 0 || stages > layers {
        return Err(Error::StageCount { layers, stages });
    }
    if let Some((i, c)) = layer_costs
        .iter()
        .enumerate()
        .find(|(_, c)| !(c.is_finite() && **c >= 0.0))
    {
        return Err(Error::LayerCost { layer: i, cost: *c });
    }
    let mut prefix = vec![0.0; layers + 1];
    for (i, &c) in layer_costs.iter().enumerate() {
        prefix[i + 1] = prefix[i] + c;
    }
    // best[k][n]: the least max cost of the first n layers over k stages; cut[k][n]: where
    // the last of those k stages starts.
    let mut best = vec![vec![f64::INFINITY; layers + 1]; stages + 1];
    let mut cut = vec![vec![0usize; layers + 1]; stages + 1];
    best[0][0] = 0.0;
    for k in 1..=stages {
        for n in k..=layers - (stages - k) {
            for start in (k - 1)..n {
                let cost = best[k - 1][start].max(prefix[n] - prefix[start]);
                if cost < best[k][n] {
                    best[k][n] = cost;
                    cut[k][n] = start;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(stages);
    let mut end = layers;
    for k in (1..=stages).rev() {
        let start = cut[k][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    Ok(ranges)
}
