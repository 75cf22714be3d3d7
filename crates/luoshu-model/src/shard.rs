//! What part of the model one rank holds: a pipeline stage (a contiguous range of layers,
//! with the embedding on the first stage and the head on the last) and a tensor-parallel
//! slice of it (Megatron column/row-parallel projections, vocabulary-parallel embedding and
//! head, replicated norms), and which chunks of every sequence it computes under context
//! parallelism.

use crate::spec::{param_specs, ParamRole, ParamSpec};
use crate::{Error, ModelConfig, Result};
use std::ops::Range;

/// The slice of the model one rank builds and trains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShard {
    /// Tensor-parallel degree and this rank's index in its tensor-parallel group.
    pub tp: usize,
    /// This rank's index in its tensor-parallel group.
    pub tp_rank: usize,
    /// Pipeline stages and this rank's stage.
    pub stages: usize,
    /// This rank's pipeline stage.
    pub stage: usize,
    /// The layers of this stage.
    pub layers: Range<usize>,
    /// Context-parallel degree and this rank's index in its context-parallel group: every
    /// sequence is cut into `2 · cp` equal chunks and this rank computes chunks `cp_rank`
    /// and `2 · cp − 1 − cp_rank` (see [`context_chunks`]).
    pub cp: usize,
    /// This rank's index in its context-parallel group.
    pub cp_rank: usize,
}

impl ModelShard {
    /// The whole model on one device.
    pub fn whole(cfg: &ModelConfig) -> Self {
        ModelShard {
            tp: 1,
            tp_rank: 0,
            stages: 1,
            stage: 0,
            layers: 0..cfg.n_layers,
            cp: 1,
            cp_rank: 0,
        }
    }

    /// Stage `stage` of `stages` holding `layers`, tensor-parallel slice `tp_rank` of `tp`.
    /// Checks that `tp` divides every sharded dimension.
    pub fn new(
        cfg: &ModelConfig,
        tp: usize,
        tp_rank: usize,
        stages: usize,
        stage: usize,
        layers: Range<usize>,
    ) -> Result<Self> {
        let divisible = [
            ("n_heads", cfg.n_heads),
            ("n_kv_heads", cfg.n_kv_heads),
            ("d_ff", cfg.d_ff),
            ("vocab_size", cfg.vocab_size),
        ];
        for (name, value) in divisible {
            if tp == 0 || !value.is_multiple_of(tp) {
                return Err(Error::ModelConfig(format!(
                    "tensor parallelism {tp} must divide {name} ({value})"
                )));
            }
        }
        if tp_rank >= tp || stage >= stages || layers.end > cfg.n_layers {
            return Err(Error::ModelConfig(format!(
                "shard tp rank {tp_rank}/{tp}, stage {stage}/{stages}, layers {layers:?} of {} \
                 is out of range",
                cfg.n_layers
            )));
        }
        Ok(ModelShard {
            tp,
            tp_rank,
            stages,
            stage,
            layers,
            cp: 1,
            cp_rank: 0,
        })
    }

    /// This shard computing the chunks of context-parallel rank `cp_rank` of `cp`. Context
    /// parallelism runs whole models only (no pipeline stages).
    pub fn with_context_parallel(self, cp: usize, cp_rank: usize) -> Result<Self> {
        if cp == 0 || cp_rank >= cp {
            return Err(Error::ModelConfig(format!(
                "context-parallel rank {cp_rank} of {cp} is out of range"
            )));
        }
        if cp > 1 && self.stages > 1 {
            return Err(Error::ModelConfig(format!(
                "context parallelism ({cp}) does not run with pipeline stages ({}): use cp \
                 with dp and tp only",
                self.stages
            )));
        }
        Ok(ModelShard {
            cp,
            cp_rank,
            ..self
        })
    }

    /// The sequence chunks this rank computes, in the order its rows hold them.
    pub fn chunks(&self) -> [usize; 2] {
        context_chunks(self.cp, self.cp_rank)
    }

    /// Whether this stage holds the embedding (and reads tokens).
    pub fn is_first_stage(&self) -> bool {
        self.stage == 0
    }

    /// Whether this stage holds the head (and computes the loss).
    pub fn is_last_stage(&self) -> bool {
        self.stage + 1 == self.stages
    }

    /// Whether this shard holds the parameter `spec`: a layer's parameters live on the
    /// stage of that layer, the embedding on the first stage (and on the last as well when
    /// it is tied, since it is the head there), the final norm and the head on the last.
    pub fn holds(&self, cfg: &ModelConfig, spec: &ParamSpec) -> bool {
        match (spec.layer, spec.role) {
            (Some(layer), _) => self.layers.contains(&layer),
            (None, ParamRole::Embedding) => {
                self.is_first_stage() || (cfg.tie_embeddings && self.is_last_stage())
            }
            (None, _) => self.is_last_stage(),
        }
    }

    /// This shard's parameters: the full spec, the dim split over the tensor-parallel group
    /// (`None`: replicated), and the local spec.
    pub fn params(&self, cfg: &ModelConfig) -> Vec<ShardedParam> {
        param_specs(cfg)
            .into_iter()
            .filter(|s| self.holds(cfg, s))
            .map(|full| {
                let split = (self.tp > 1).then(|| full.role.tp_split_dim()).flatten();
                let mut local = full.clone();
                if let Some(dim) = split {
                    local.shape[dim] /= self.tp;
                }
                ShardedParam { full, local, split }
            })
            .collect()
    }

    /// The range of dim `split` of a parameter of length `len` this rank holds.
    pub fn tp_range(&self, len: usize) -> Range<usize> {
        let piece = len / self.tp;
        self.tp_rank * piece..(self.tp_rank + 1) * piece
    }
}

/// A parameter as one rank holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedParam {
    /// The whole parameter.
    pub full: ParamSpec,
    /// The piece this rank holds (same name, its local shape).
    pub local: ParamSpec,
    /// The dim cut into `tp` equal pieces, or `None` when every tensor-parallel rank holds
    /// the whole parameter.
    pub split: Option<usize>,
}

/// The two of the `2 · cp` equal chunks of a sequence that context-parallel rank `rank`
/// computes: `rank` and `2 · cp − 1 − rank`. Under a causal mask chunk `c` attends to
/// `c + 1` chunks of keys, so every rank's pair costs `2 · cp + 1` chunk blocks: the work
/// is equal on every rank. With `cp = 1` the pair is the whole sequence's two halves.
pub fn context_chunks(cp: usize, rank: usize) -> [usize; 2] {
    [rank, 2 * cp - 1 - rank]
}

/// The positions of a sequence of `len` tokens (a multiple of `2 · cp`) that
/// context-parallel rank `rank` holds, in order: its two chunks one after the other (every
/// position when `cp = 1`).
pub fn context_positions(len: usize, cp: usize, rank: usize) -> Vec<usize> {
    if cp == 1 {
        return (0..len).collect();
    }
    let chunk = len / (2 * cp);
    context_chunks(cp, rank)
        .into_iter()
        .flat_map(|c| c * chunk..(c + 1) * chunk)
        .collect()
}
