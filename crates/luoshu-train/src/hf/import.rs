//! A Hugging Face `LlamaForCausalLM` directory read into luoshu parameters.

use super::weights::WeightFiles;
use super::{config, layout, read_json, tokenizer};
use super::{CONFIG_FILE, TOKENIZER_FILE};
use crate::{Error, Result, TrainerState};
use luoshu_data::TextTokenizer;
use luoshu_model::{param_specs, ModelConfig, ParamStore};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashSet;
use std::path::Path;

/// What [`import`] reads: the model, its parameters as a fresh training state and the
/// tokenizer.
#[derive(Debug, Clone)]
pub struct ImportedModel {
    /// The model configuration read from `config.json`.
    pub model: ModelConfig,
    /// The parameters at step 0 with zero optimizer moments: a checkpoint to fine-tune.
    pub state: TrainerState,
    /// The directory's `tokenizer.json`, byte for byte.
    pub tokenizer_json: Vec<u8>,
}

/// Read the LLaMA model in the Hugging Face directory `dir` (`config.json`,
/// `model.safetensors` or its sharded index, `tokenizer.json`). Architectures, fields and
/// tensors luoshu's model does not have are errors naming them.
pub fn import(dir: &Path) -> Result<ImportedModel> {
    if !dir.is_dir() {
        return Err(Error::hf(
            dir,
            "is not a directory: give a Hugging Face model directory (config.json, \
             model.safetensors, tokenizer.json)",
        ));
    }
    let config_path = dir.join(CONFIG_FILE);
    let model = config::parse_config(&read_json(&config_path)?, &config_path)?;
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    let tokenizer_json =
        std::fs::read(&tokenizer_path).map_err(|e| Error::io(&tokenizer_path, e))?;
    let tokenizer = TextTokenizer::from_json(&tokenizer_json)
        .map_err(|e| Error::hf(&tokenizer_path, e.to_string()))?;
    tokenizer::check_imported(dir, &tokenizer, &tokenizer_path, &model)?;

    let weights = WeightFiles::open(dir)?;
    let mut params = ParamStore::new();
    let mut used = HashSet::new();
    for spec in param_specs(&model) {
        let name = layout::hf_name(&spec)?;
        let tensor = weights.read(&name)?.ok_or_else(|| {
            Error::hf(
                weights.origin(),
                format!("has no tensor `{name}`, which config.json's model needs"),
            )
        })?;
        let expected = layout::hf_shape(&spec);
        if tensor.shape != expected {
            return Err(Error::hf(
                weights.origin(),
                format!(
                    "tensor `{name}` has shape {:?}, but config.json implies {expected:?}",
                    tensor.shape
                ),
            ));
        }
        params.insert(&spec.name, layout::from_hf(&spec, tensor.values)?)?;
        used.insert(name);
    }
    let mut unexpected: Vec<&str> = weights
        .names()
        .filter(|name| !used.contains(*name) && !is_buffer(name, &model))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort_unstable();
        return Err(Error::hf(
            weights.origin(),
            format!(
                "holds tensors luoshu's LLaMA has no parameter for: {}; the weights do not \
                 match config.json (biases, another architecture?)",
                unexpected.join(", ")
            ),
        ));
    }
    Ok(ImportedModel {
        model,
        state: fresh_state(params)?,
        tokenizer_json,
    })
}

/// Tensors HF files may hold that are not parameters: the RoPE frequencies older
/// checkpoints saved, and the head of a tied model (`transformers` reads the embedding).
fn is_buffer(name: &str, model: &ModelConfig) -> bool {
    name.ends_with(".rotary_emb.inv_freq") || (model.tie_embeddings && name == "lm_head.weight")
}

/// `params` at step 0 with zero AdamW moments.
fn fresh_state(params: ParamStore) -> Result<TrainerState> {
    let zeros = || -> Result<ParamStore> {
        let mut store = ParamStore::new();
        for (name, t) in params.iter() {
            store.insert(name, Tensor::zeros(DType::F32, t.dims())?)?;
        }
        Ok(store)
    };
    Ok(TrainerState {
        step: 0,
        adam_m: zeros()?,
        adam_v: zeros()?,
        params,
    })
}
