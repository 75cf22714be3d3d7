//! How much memory one rank of a run needs, estimated from the model, the strategy and the
//! largest micro-batch before anything is allocated, so a run that cannot fit is refused at
//! once (with what would make it fit) instead of being killed by the OS minutes later.

use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;

const F32: u64 = 4;

/// Bytes one rank needs, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// This rank's slice of the fp32 parameters.
    pub parameters: u64,
    /// Its fp32 gradients, one per parameter of the slice.
    pub gradients: u64,
    /// Its AdamW moments (two fp32 values per parameter, divided over `dp` under ZeRO-1).
    pub optimizer: u64,
    /// The activations its micro-batches keep for the backward pass.
    pub activations: u64,
}

impl MemoryEstimate {
    /// The sum of the four kinds, in bytes.
    pub fn total(&self) -> u64 {
        self.parameters + self.gradients + self.optimizer + self.activations
    }
}

/// Memory of one rank of `strategy` training `model` on micro-batches of
/// `micro_batch_tokens` padded tokens (the largest bucket's rows × length). Everything is
/// fp32:
/// - parameters and gradients: this rank's tensor-parallel slice of its pipeline stage,
///   `N / (tp · pp)` values each;
/// - AdamW moments: two values per parameter of the slice, divided by `dp` under ZeRO-1;
/// - activations: per token, each layer of the stage keeps about `11·d + 3·d_ff` values
///   (norm inputs and outputs, q, k, v, attention output, residuals, gate, up and their
///   product), plus logits and their gradient (`2·vocab`), all split over `tp`, for the
///   `1/cp` of the tokens a context-parallel rank holds. Attention is tiled, so no
///   `seq × seq` matrix is kept.
///
/// It is a floor, not a bound: plans, communication buffers and the allocator come on top.
pub fn estimate(
    model: &ModelConfig,
    strategy: Strategy,
    micro_batch_tokens: usize,
) -> MemoryEstimate {
    let model_parallel = (strategy.tp * strategy.pp) as u64;
    let slice = (model.num_parameters() as u64).div_ceil(model_parallel);
    let moment_shards = if strategy.zero1 {
        strategy.dp as u64
    } else {
        1
    };
    let layers = model.n_layers.div_ceil(strategy.pp) as u64;
    let per_token = (layers * layer_activation_values(model) + head_activation_values(model))
        .div_ceil(strategy.tp as u64);
    MemoryEstimate {
        parameters: slice * F32,
        gradients: slice * F32,
        optimizer: (2 * slice).div_ceil(moment_shards) * F32,
        activations: micro_batch_tokens.div_ceil(strategy.cp) as u64 * per_token * F32,
    }
}

/// Memory of one rank hot-switching over `strategies` (each once, the update strategy
/// among them) on micro-batches of `micro_batch_tokens`: every strategy's runtime keeps
/// the parameters in its own layout; at most two gradient accumulators are alive at once
/// (a phase's, and the previous phase's being switched into it); only the update
/// strategy keeps AdamW moments; activations are those of the strategy that needs most.
pub fn estimate_hot(
    model: &ModelConfig,
    strategies: &[Strategy],
    update: Strategy,
    micro_batch_tokens: usize,
) -> MemoryEstimate {
    let each: Vec<MemoryEstimate> = strategies
        .iter()
        .map(|&s| estimate(model, s, micro_batch_tokens))
        .collect();
    let mut gradients: Vec<u64> = each.iter().map(|e| e.gradients).collect();
    gradients.sort_unstable_by(|a, b| b.cmp(a));
    MemoryEstimate {
        parameters: each.iter().map(|e| e.parameters).sum(),
        gradients: gradients.iter().take(2).sum(),
        optimizer: estimate(model, update, micro_batch_tokens).optimizer,
        activations: each.iter().map(|e| e.activations).max().unwrap_or(0),
    }
}

/// [`estimate_hot`], or [`DoesNotFit`] when it exceeds `limit` bytes per rank.
pub fn check_hot_fits(
    model: &ModelConfig,
    strategies: &[Strategy],
    update: Strategy,
    micro_batch_tokens: usize,
    limit: u64,
    budget: &str,
) -> Result<MemoryEstimate, DoesNotFit> {
    let needed = estimate_hot(model, strategies, update, micro_batch_tokens);
    if needed.total() <= limit {
        return Ok(needed);
    }
    let names: Vec<String> = strategies.iter().map(Strategy::to_string).collect();
    let mut remedies = vec![format!(
        "hot switching over {} keeps the parameters once per strategy: name fewer strategies",
        names.join(", ")
    )];
    if estimate(model, update, micro_batch_tokens).total() <= limit {
        remedies.push(format!(
            "the update strategy alone fits (`--strategy {update}`)"
        ));
    }
    Err(DoesNotFit {
        estimate: needed,
        micro_batch_tokens,
        limit,
        budget: budget.to_string(),
        remedies,
    })
}

/// Values one transformer layer keeps per token for its backward pass, before any
/// tensor-parallel split: norm inputs and outputs, q, k, v, the attention output,
/// residuals, gate, up and their product (`11·d + 3·d_ff`; attention is tiled, so no
/// `seq × seq` matrix is kept).
pub fn layer_activation_values(model: &ModelConfig) -> u64 {
    11 * model.d_model as u64 + 3 * model.d_ff as u64
}

/// Values the LM head keeps per token: the logits and their gradient (`2·vocab`).
pub fn head_activation_values(model: &ModelConfig) -> u64 {
    2 * model.vocab_size as u64
}

/// A run that does not fit: the estimate, the budget and what would make it fit.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the model does not fit: one rank needs about {} ({} parameters, {} gradients, {} AdamW \
     moments, {} activations for micro-batches of {micro_batch_tokens} tokens) but {budget} \
     is {} per rank. To fit: {}",
    gib(estimate.total()),
    gib(estimate.parameters),
    gib(estimate.gradients),
    gib(estimate.optimizer),
    gib(estimate.activations),
    gib(*limit),
    remedies.join("; ")
)]
pub struct DoesNotFit {
    /// What one rank would need.
    pub estimate: MemoryEstimate,
    /// Padded tokens of the largest micro-batch the estimate assumed.
    pub micro_batch_tokens: usize,
    /// Bytes one rank may use.
    pub limit: u64,
    /// Where the limit comes from (`--memory-per-rank`, available memory).
    pub budget: String,
    /// Ways to make the run fit (or why an obvious one would not), one sentence each.
    pub remedies: Vec<String>,
}

/// `bytes` in the largest binary unit that keeps the number at least 1.
fn gib(bytes: u64) -> String {
    let (unit, shift) = [("GiB", 30), ("MiB", 20), ("KiB", 10)]
        .into_iter()
        .find(|&(_, shift)| bytes >= 1 << shift)
        .unwrap_or(("bytes", 0));
    format!("{:.2} {unit}", bytes as f64 / (1u64 << shift) as f64)
}

/// The estimate, or [`DoesNotFit`] when it exceeds `limit` bytes per rank (`budget` says
/// where the limit comes from).
pub fn check_fits(
    model: &ModelConfig,
    strategy: Strategy,
    micro_batch_tokens: usize,
    limit: u64,
    budget: &str,
) -> Result<MemoryEstimate, DoesNotFit> {
    let needed = estimate(model, strategy, micro_batch_tokens);
    if needed.total() <= limit {
        return Ok(needed);
    }
    let fits = |s: Strategy, tokens: usize| estimate(model, s, tokens).total() <= limit;
    let mut remedies = Vec::new();
    if strategy.dp > 1 && !strategy.zero1 {
        let zero1 = Strategy {
            zero1: true,
            ..strategy
        };
        let verdict = if fits(zero1, micro_batch_tokens) {
            "fits"
        } else {
            "is not enough alone"
        };
        remedies.push(format!(
            "ZeRO-1 (`--strategy {zero1}`) shards the moments and {verdict}"
        ));
    }
    // Activations shrink with shorter sequences (fewer tokens per micro-batch).
    let shorter = (1..=10)
        .map(|halvings| micro_batch_tokens >> halvings)
        .take_while(|&tokens| tokens > 0)
        .find(|&tokens| fits(strategy, tokens));
    match shorter {
        Some(tokens) => remedies.push(format!(
            "a shorter context fits: data.tokens_per_micro_batch = {tokens} (with max_len at most that)"
        )),
        None => remedies.push("a shorter context alone is not enough".into()),
    }
    // More tensor/pipeline ranks split everything; each needs its own `limit`.
    let more_ranks = (1..=16).map(|p| 1usize << p).find(|&factor| {
        fits(
            Strategy {
                tp: strategy.tp * factor,
                ..strategy
            },
            micro_batch_tokens,
        )
    });
    match more_ranks {
        Some(factor) => remedies.push(format!(
            "{factor}× more tensor/pipeline-parallel ranks ({} in all, each with {} — \
             e.g. on several machines with --comm mpi)",
            strategy.devices() * factor,
            gib(limit)
        )),
        None => remedies.push("even 65536× more ranks would not be enough".into()),
    }
    Err(DoesNotFit {
        estimate: needed,
        micro_batch_tokens,
        limit,
        budget: budget.to_string(),
        remedies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(dp: usize, tp: usize, pp: usize, zero1: bool) -> Strategy {
        Strategy {
            dp,
            tp,
            pp,
            zero1,
            cp: 1,
        }
    }

    #[test]
    fn state_is_sixteen_bytes_per_parameter_split_as_the_strategy_says() {
        let model = ModelConfig::preset("tiny").unwrap();
        let n = model.num_parameters() as u64;
        let single = estimate(&model, Strategy::SINGLE, 0);
        assert_eq!(single.total(), 16 * n);
        let tp2 = estimate(&model, strategy(1, 2, 1, false), 0);
        assert_eq!(tp2.parameters, 4 * n.div_ceil(2));
        let zero = estimate(&model, strategy(4, 1, 1, true), 0);
        assert_eq!(
            (zero.parameters, zero.optimizer),
            (4 * n, (2 * n).div_ceil(4) * 4)
        );
        assert_eq!(
            estimate(&model, strategy(4, 1, 1, false), 0).optimizer,
            8 * n
        );
    }

    #[test]
    fn activations_grow_with_tokens_and_shrink_with_tensor_parallelism() {
        let model = ModelConfig::preset("tiny").unwrap();
        let per_token = model.n_layers as u64 * (11 * model.d_model as u64 + 3 * model.d_ff as u64)
            + 2 * model.vocab_size as u64;
        assert_eq!(
            estimate(&model, Strategy::SINGLE, 10).activations,
            40 * per_token
        );
        assert_eq!(
            estimate(&model, strategy(1, 2, 1, false), 10).activations,
            10 * per_token.div_ceil(2) * 4
        );
    }

    #[test]
    fn hot_switching_keeps_parameters_per_strategy_and_moments_once() {
        let model = ModelConfig::preset("tiny").unwrap();
        let n = model.num_parameters() as u64;
        let (dp2, tp2) = (strategy(2, 1, 1, false), strategy(1, 2, 1, false));
        let hot = estimate_hot(&model, &[tp2, dp2], tp2, 64);
        let half = 4 * n.div_ceil(2);
        assert_eq!(hot.parameters, 4 * n + half);
        assert_eq!(hot.gradients, 4 * n + half);
        assert_eq!(hot.optimizer, 2 * half);
        assert_eq!(hot.activations, estimate(&model, dp2, 64).activations);
        let err = check_hot_fits(&model, &[tp2, dp2], tp2, 64, 17 * n, "the test budget")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keeps the parameters once per strategy")
                && err.contains("the update strategy alone fits (`--strategy tp2`)"),
            "{err}"
        );
    }

    #[test]
    fn a_model_that_does_not_fit_is_refused_with_remedies() {
        let model = ModelConfig::preset("llama-32b").unwrap();
        let err = check_fits(
            &model,
            strategy(2, 1, 1, false),
            2048,
            64 << 30,
            "the test budget",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("the model does not fit"), "{message}");
        assert!(
            message.contains("the test budget is 64.00 GiB per rank"),
            "{message}"
        );
        assert!(
            message.contains("ZeRO-1 (`--strategy dp2zero1`)"),
            "{message}"
        );
        assert!(
            message.contains("a shorter context alone is not enough"),
            "{message}"
        );
        assert!(
            message.contains("16× more tensor/pipeline-parallel ranks"),
            "{message}"
        );
        let tiny = ModelConfig::preset("tiny").unwrap();
        assert!(check_fits(&tiny, Strategy::SINGLE, 2048, 64 << 30, "x").is_ok());
    }
}
