//! Planning a step: bucket edges and a strategy per bucket for hot switching, and the two
//! static baselines (padding every sequence to the context; packing documents into rows
//! of the context), all simulated the same way.
//!
//! Edges come from candidates (powers of two and quantiles of the batch's lengths, plus
//! the context). The last bucket's strategy is the update strategy (ZeRO-1 allowed, its
//! optimizer state on every rank for the whole step); for each possible start of the last
//! bucket and each update strategy not beaten in both time and optimizer memory
//! (`update_front`), an exact dynamic program over the remaining edges picks at most
//! [`MAX_BUCKETS`] − 1 earlier buckets minimizing their phase time. The
//! [`SWITCH_SHORTLIST`] fastest partitions, and the single bucket of the whole context
//! (which needs no switch, so hot switching is never slower than static packing), are
//! then assembled with their real switch plans and the fastest step, switches included,
//! wins.

use crate::evaluate::{fastest, fits, Candidates, Evaluated};
use crate::rows::{packed, padded};
use crate::simulator::Simulator;
use crate::step::{Bucket, Step};
use crate::switch_cost::Switches;
use crate::{Error, Result};
use std::collections::HashMap;

/// At most this many buckets (phases) per step.
pub const MAX_BUCKETS: usize = 4;
/// Partitions whose switches are planned (planning a 70B model's switch on 1024 devices
/// takes most of a second, so only the most promising are).
pub const SWITCH_SHORTLIST: usize = 3;
/// Quantiles of the batch's lengths offered as bucket edges.
pub const QUANTILES: [f64; 5] = [0.5, 0.75, 0.9, 0.95, 0.99];
/// Quantile edges are rounded up to a multiple of this (kernel tile sizes).
pub const EDGE_ALIGN: usize = 256;

/// A planned step and its two baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Hot switching: the fastest step over the chosen bucket edges, a strategy per bucket.
    pub hot: Step,
    /// Static baseline: one row of the context per document, padded, under the fastest
    /// fitting strategy. `None` when no strategy fits the padded rows.
    pub padded: Option<Step>,
    /// Static baseline: the documents packed into rows of the context, under the fastest
    /// fitting strategy.
    pub packed: Step,
    /// The edges the search chose from.
    pub edges: Vec<usize>,
}

/// Bucket edge candidates: powers of two from [`EDGE_ALIGN`] and the [`QUANTILES`] of
/// `lengths` (rounded up to [`EDGE_ALIGN`]), below `context`, then `context`.
pub fn candidate_edges(lengths: &[usize], context: usize) -> Vec<usize> {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    let mut edges: Vec<usize> = std::iter::successors(Some(EDGE_ALIGN), |e| e.checked_mul(2))
        .take_while(|&e| e < context)
        .collect();
    if let Some(last) = sorted.len().checked_sub(1) {
        for q in QUANTILES {
            let len = sorted[(q * last as f64).round() as usize];
            edges.push(len.div_ceil(EDGE_ALIGN) * EDGE_ALIGN);
        }
    }
    edges.retain(|&e| e > 0 && e < context);
    edges.push(context);
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// The hot-switching search over one global batch.
struct Search<'a> {
    sim: &'a Simulator,
    candidates: &'a Candidates,
    lengths: Vec<usize>,
    /// `bounds[0] = 0`, then the edges; bucket `(a, b)` holds lengths in
    /// `(bounds[a], bounds[b]]`.
    bounds: Vec<usize>,
    evaluated: HashMap<(usize, usize), Vec<Evaluated>>,
}

/// A bucket choice: bounds indices and the chosen candidate's index.
type Part = (usize, usize, usize);
/// Buckets covering a prefix of the bounds: their total seconds and the non-empty ones.
type Cover = (f64, Vec<Part>);

impl Search<'_> {
    fn documents(&self, a: usize, b: usize) -> Vec<usize> {
        let (low, high) = (self.bounds[a], self.bounds[b]);
        self.lengths
            .iter()
            .copied()
            .filter(|&l| l > low && l <= high)
            .collect()
    }

    fn evaluate(&mut self, a: usize, b: usize) -> Result<&Vec<Evaluated>> {
        if !self.evaluated.contains_key(&(a, b)) {
            let rows = packed(&self.documents(a, b), self.bounds[b]);
            let evaluated = self.candidates.evaluate(self.sim, &rows)?;
            self.evaluated.insert((a, b), evaluated);
        }
        Ok(&self.evaluated[&(a, b)])
    }

    /// The fastest buckets covering `(0, bounds[end]]`, at most `max` of them, beside an
    /// update strategy holding `optimizer` bytes: total seconds and the non-empty parts.
    fn prefix(&mut self, end: usize, max: usize, optimizer: f64) -> Result<Option<Cover>> {
        let capacity = self.sim.memory_capacity();
        // best[k][j]: covering (0, bounds[j]] with k buckets.
        let mut best: Vec<Vec<Option<Cover>>> = vec![vec![None; end + 1]; max + 1];
        best[0][0] = Some((0.0, Vec::new()));
        for k in 1..=max {
            for j in 1..=end {
                for i in 0..j {
                    let Some((before, parts)) = best[k - 1][i].clone() else {
                        continue;
                    };
                    let (seconds, part) = if self.documents(i, j).is_empty() {
                        (0.0, None)
                    } else {
                        let evaluated = self.evaluate(i, j)?;
                        match fastest(evaluated, Some(optimizer), capacity) {
                            Some(c) => (evaluated[c].cost.seconds, Some((i, j, c))),
                            None => continue,
                        }
                    };
                    let total = before + seconds;
                    if best[k][j].as_ref().is_none_or(|(t, _)| total < *t) {
                        let mut parts = parts;
                        parts.extend(part);
                        best[k][j] = Some((total, parts));
                    }
                }
            }
        }
        Ok((0..=max)
            .filter_map(|k| best[k][end].clone())
            .min_by(|a, b| a.0.total_cmp(&b.0)))
    }

    /// Partitions, each with its phase seconds (switches not yet counted).
    fn partitions(&mut self) -> Result<Vec<Cover>> {
        let n = self.bounds.len() - 1;
        let capacity = self.sim.memory_capacity();
        let mut options = Vec::new();
        for a in 0..n {
            if self.documents(a, n).is_empty() {
                continue;
            }
            for (u, last, optimizer) in update_front(self.evaluate(a, n)?, capacity) {
                if let Some((seconds, mut parts)) = self.prefix(a, MAX_BUCKETS - 1, optimizer)? {
                    parts.push((a, n, u));
                    options.push((seconds + last, parts));
                }
            }
        }
        options.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(options)
    }

    fn bucket(&mut self, (a, b, choice): Part, update_optimizer: Option<f64>) -> Result<Bucket> {
        let documents = self.documents(a, b);
        let evaluated = self.evaluate(a, b)?.clone();
        Ok(Bucket {
            low: self.bounds[a],
            high: self.bounds[b],
            documents: documents.len(),
            tokens: documents.iter().sum(),
            rows: packed(&documents, self.bounds[b]),
            evaluated,
            update_optimizer,
            choice,
        })
    }
}

/// The update strategies worth trying for the last bucket: `(candidate, seconds, optimizer
/// bytes)` of each one that fits and keeps less optimizer state than every faster one.
/// The earlier buckets only see the update strategy through its optimizer state (less
/// of it leaves them more memory), so a slower update strategy with as much state or more
/// can never give a faster step.
fn update_front(evaluated: &[Evaluated], capacity: f64) -> Vec<(usize, f64, f64)> {
    let mut fitting: Vec<usize> = (0..evaluated.len())
        .filter(|&c| fits(&evaluated[c], None, capacity))
        .collect();
    fitting.sort_by(|&x, &y| {
        evaluated[x]
            .cost
            .seconds
            .total_cmp(&evaluated[y].cost.seconds)
    });
    let mut least = f64::INFINITY;
    let mut front = Vec::new();
    for c in fitting {
        let optimizer = evaluated[c].own_optimizer;
        if optimizer < least {
            least = optimizer;
            front.push((c, evaluated[c].cost.seconds, optimizer));
        }
    }
    front
}

/// Plans hot switching for the global batch `lengths` (each at most `context`) and
/// simulates the two static baselines beside it.
pub fn plan(sim: &Simulator, lengths: &[usize], context: usize) -> Result<Plan> {
    if let Some(&long) = lengths.iter().find(|&&l| l == 0 || l > context) {
        return Err(Error::Input(format!(
            "sequence length {long} is outside 1..={context} (the context)"
        )));
    }
    if lengths.is_empty() {
        return Err(Error::Input("the global batch is empty".into()));
    }
    let candidates = Candidates::new(sim)?;
    let mut switches = Switches::new(
        &sim.model,
        &sim.topology,
        sim.precision.param_dtype().size_in_bytes(),
    );
    let whole = (0, context, lengths);
    let no_fit = || {
        Error::Input(format!(
            "no strategy fits {} on {} × {} at context {context}: use more devices or a \
             shorter context",
            model_name(sim),
            sim.devices,
            sim.hardware.device.model
        ))
    };
    let packed_step = Step::single(
        sim,
        &candidates,
        &mut switches,
        whole,
        packed(lengths, context),
    )?
    .ok_or_else(no_fit)?;
    let padded_step = Step::single(
        sim,
        &candidates,
        &mut switches,
        whole,
        padded(lengths, context),
    )?;
    let edges = candidate_edges(lengths, context);
    let mut search = Search {
        sim,
        candidates: &candidates,
        lengths: lengths.to_vec(),
        bounds: std::iter::once(0).chain(edges.iter().copied()).collect(),
        evaluated: HashMap::new(),
    };
    let mut best: Option<Step> = None;
    let partitions = search.partitions()?;
    let single = partitions.iter().position(|(_, parts)| parts.len() == 1);
    let shortlist = partitions
        .iter()
        .enumerate()
        .filter(|&(i, _)| i < SWITCH_SHORTLIST || Some(i) == single)
        .map(|(_, p)| p.1.clone());
    for parts in shortlist {
        let (&last, earlier) = parts.split_last().expect("a partition has a last bucket");
        let mut buckets = Vec::with_capacity(parts.len());
        let update = search.bucket(last, None)?;
        let optimizer = update.chosen().own_optimizer;
        for &part in earlier {
            buckets.push(search.bucket(part, Some(optimizer))?);
        }
        buckets.push(update);
        let step = Step::assemble(sim, &candidates, &mut switches, buckets)?;
        if best.as_ref().is_none_or(|b| step.seconds() < b.seconds()) {
            best = Some(step);
        }
    }
    Ok(Plan {
        hot: best.ok_or_else(no_fit)?,
        padded: padded_step,
        packed: packed_step,
        edges,
    })
}

fn model_name(sim: &Simulator) -> String {
    format!(
        "a {:.1}B-parameter model",
        sim.model.num_parameters() as f64 / 1e9
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Hardware;
    use luoshu_model::{ModelConfig, Precision};
    use proptest::prelude::*;

    #[test]
    fn edges_are_powers_of_two_quantiles_and_the_context() {
        let lengths: Vec<usize> = (1..=100).map(|i| i * 10).collect();
        let edges = candidate_edges(&lengths, 2048);
        // Powers of two 256, 512, 1024; quantiles 500→512, 750→768, 900→1024, 950→1024,
        // 990→1024; the context.
        assert_eq!(edges, vec![256, 512, 768, 1024, 2048]);
    }

    fn tiny_sim(devices: usize, memory_bytes: u64) -> Simulator {
        let mut hardware = Hardware::preset("a800-node").unwrap();
        hardware.device.memory_bytes = memory_bytes;
        let model = ModelConfig::preset("tiny").unwrap();
        Simulator::new(model, hardware, devices, Precision::Bf16Mixed).unwrap()
    }

    /// The least phase time over every partition of the bounds into at most
    /// [`MAX_BUCKETS`] buckets (the last non-empty) and every choice of update strategy
    /// for the last bucket; given the update strategy, each earlier bucket's best choice
    /// is independent of the others, so taking each one's minimum is exhaustive.
    fn brute_force(search: &mut Search) -> Option<f64> {
        let n = search.bounds.len() - 1;
        let capacity = search.sim.memory_capacity();
        let mut best: Option<f64> = None;
        for mask in 0u32..(1 << (n - 1)) {
            let mut cuts = vec![0];
            cuts.extend((1..n).filter(|i| mask & (1 << (i - 1)) != 0));
            cuts.push(n);
            if cuts.len() - 1 > MAX_BUCKETS {
                continue;
            }
            let buckets: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            let &(a, b) = buckets.last().unwrap();
            if search.documents(a, b).is_empty() {
                continue;
            }
            let last = search.evaluate(a, b).unwrap().clone();
            for update in last.iter().filter(|e| fits(e, None, capacity)) {
                let mut total = Some(update.cost.seconds);
                for &(i, j) in &buckets[..buckets.len() - 1] {
                    if search.documents(i, j).is_empty() {
                        continue;
                    }
                    let evaluated = search.evaluate(i, j).unwrap();
                    let cheapest = evaluated
                        .iter()
                        .filter(|e| fits(e, Some(update.own_optimizer), capacity))
                        .map(|e| e.cost.seconds)
                        .min_by(f64::total_cmp);
                    total = total.zip(cheapest).map(|(t, c)| t + c);
                }
                if let Some(t) = total {
                    best = Some(best.map_or(t, |b: f64| b.min(t)));
                }
            }
        }
        best
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn the_search_matches_brute_force_and_never_loses_to_packing(
            lengths in prop::collection::vec(1usize..=1024, 1..24),
            devices in prop::sample::select(vec![1usize, 2, 4]),
            memory_mib in 4u64..64,
        ) {
            let sim = tiny_sim(devices, memory_mib << 20);
            let candidates = Candidates::new(&sim).unwrap();
            let edges = candidate_edges(&lengths, 1024);
            let mut search = Search {
                sim: &sim,
                candidates: &candidates,
                lengths: lengths.clone(),
                bounds: std::iter::once(0).chain(edges.iter().copied()).collect(),
                evaluated: HashMap::new(),
            };
            let searched = search.partitions().unwrap().first().map(|p| p.0);
            let brute = brute_force(&mut search);
            match (searched, brute) {
                (Some(s), Some(b)) => prop_assert!((s - b).abs() <= 1e-9 * b, "{} vs {}", s, b),
                (s, b) => prop_assert_eq!(s, b),
            }
            if let Ok(planned) = plan(&sim, &lengths, 1024) {
                prop_assert!(planned.hot.seconds() <= planned.packed.seconds() * (1.0 + 1e-9));
            }
        }
    }
}
