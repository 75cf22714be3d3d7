//! Parameter roles decide where each parameter lives: every pipeline split of the layers and
//! every tensor-parallel degree places each parameter on the right stages, and the
//! tensor-parallel pieces tile it exactly.

use luoshu_model::{param_specs, ModelConfig, ModelShard, ParamRole};
use proptest::prelude::*;
use std::ops::Range;

/// Grouped-query attention (4 query heads, 2 kv heads), untied head unless `tied`.
fn config(n_layers: usize, tied: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: 12,
        d_model: 8,
        n_layers,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 12,
        max_seq_len: 8,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tie_embeddings: tied,
    }
}

/// Contiguous layer ranges of the given lengths, one per pipeline stage.
fn stage_ranges(lengths: &[usize]) -> Vec<Range<usize>> {
    let mut start = 0;
    lengths
        .iter()
        .map(|&len| {
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

#[test]
fn roles_and_layers_match_the_parameter_list() {
    let cfg = config(2, false);
    let specs = param_specs(&cfg);
    assert_eq!(specs[0].role, ParamRole::Embedding);
    assert_eq!(specs.last().unwrap().role, ParamRole::LmHead);
    for layer in 0..2 {
        let roles: Vec<ParamRole> = specs
            .iter()
            .filter(|s| s.layer == Some(layer))
            .map(|s| s.role)
            .collect();
        assert_eq!(roles.len(), 9, "layer {layer}: {roles:?}");
    }
    let tied = param_specs(&config(2, true));
    assert!(tied.iter().all(|s| s.role != ParamRole::LmHead));
    // Key and value projections are GQA-narrow: split along their output features.
    let wk = specs.iter().find(|s| s.role == ParamRole::Key).unwrap();
    assert_eq!(wk.shape, vec![8, 4]);
    assert_eq!(ParamRole::Key.tp_split_dim(), Some(1));
    assert_eq!(ParamRole::MlpDown.tp_split_dim(), Some(0));
    assert_eq!(ParamRole::FinalNorm.tp_split_dim(), None);
}

proptest! {
    #[test]
    fn every_parameter_is_held_by_its_stages_and_tiled_by_tensor_parallel_pieces(
        lengths in prop::collection::vec(1usize..3, 1..4),
        tp in prop::sample::select(vec![1usize, 2]),
        tied in any::<bool>(),
    ) {
        let stages = stage_ranges(&lengths);
        let n_layers = stages.last().unwrap().end;
        let cfg = config(n_layers, tied);
        let specs = param_specs(&cfg);
        for spec in &specs {
            let mut holders = Vec::new();
            for (stage, layers) in stages.iter().enumerate() {
                let mut elements = 0;
                let mut held = false;
                for tp_rank in 0..tp {
                    let shard =
                        ModelShard::new(&cfg, tp, tp_rank, stages.len(), stage, layers.clone())
                            .unwrap();
                    let Some(p) = shard.params(&cfg).into_iter().find(|p| p.full == *spec) else {
                        continue;
                    };
                    held = true;
                    match p.split {
                        Some(dim) => {
                            prop_assert_eq!(p.local.shape[dim] * tp, spec.shape[dim]);
                            elements += p.local.shape.iter().product::<usize>();
                        }
                        None => {
                            prop_assert_eq!(&p.local.shape, &spec.shape);
                            if tp_rank == 0 {
                                elements += p.local.shape.iter().product::<usize>();
                            }
                        }
                    }
                }
                if held {
                    holders.push(stage);
                    prop_assert_eq!(elements, spec.shape.iter().product::<usize>(), "{}", spec.name);
                }
            }
            let last = stages.len() - 1;
            let expected: Vec<usize> = match (spec.layer, spec.role) {
                (Some(layer), _) => vec![stages.iter().position(|r| r.contains(&layer)).unwrap()],
                (None, ParamRole::Embedding) if tied && last > 0 => vec![0, last],
                (None, ParamRole::Embedding) => vec![0],
                (None, _) => vec![last],
            };
            prop_assert_eq!(holders, expected, "{}", spec.name);
        }
    }
}
