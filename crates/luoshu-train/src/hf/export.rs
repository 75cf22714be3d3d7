//! A luoshu model as a Hugging Face `LlamaForCausalLM` directory.

use super::weights::{self, HfTensor};
use super::{config, layout, tokenizer, write_json, HfDtype};
use super::{
    CONFIG_FILE, GENERATION_CONFIG_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
use crate::{Error, Result};
use luoshu_data::TextTokenizer;
use luoshu_model::{param_specs, ModelConfig, ParamStore};
use luoshu_tensor::DType;
use std::path::Path;

/// Write `model` with f32 `params` and the run's `tokenizer.json` (`tokenizer_json`, copied
/// byte for byte) into `dir`, which must be new or empty, as a directory
/// `transformers.AutoModelForCausalLM` and `AutoTokenizer` load.
pub fn export(
    model: &ModelConfig,
    params: &ParamStore,
    tokenizer_json: &[u8],
    dir: &Path,
    dtype: HfDtype,
) -> Result<()> {
    model.validate()?;
    let tokenizer = TextTokenizer::from_json(tokenizer_json)?;
    if tokenizer.vocab_size() > model.vocab_size {
        return Err(Error::State(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            model.vocab_size
        )));
    }
    let tensors = param_specs(model)
        .iter()
        .map(|spec| {
            let t = params
                .get(&spec.name)
                .ok_or_else(|| Error::State(format!("the parameters lack `{}`", spec.name)))?;
            if t.dims() != spec.shape.as_slice() || t.dtype() != DType::F32 {
                return Err(Error::State(format!(
                    "`{}` is {}{:?} but the model needs f32{:?}",
                    spec.name,
                    t.dtype(),
                    t.dims(),
                    spec.shape
                )));
            }
            Ok(HfTensor {
                name: layout::hf_name(spec)?,
                shape: layout::hf_shape(spec),
                values: layout::to_hf(spec, t)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    create_empty_dir(dir)?;
    weights::write(&dir.join(WEIGHTS_FILE), &tensors, dtype)?;
    let end_of_text = tokenizer.end_of_text();
    write_json(
        &dir.join(CONFIG_FILE),
        &config::config_json(model, dtype.torch_name(), end_of_text),
    )?;
    write_json(
        &dir.join(GENERATION_CONFIG_FILE),
        &tokenizer::generation_config_json(end_of_text),
    )?;
    let tokenizer_config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let tokenizer_config =
        tokenizer::tokenizer_config_json(&tokenizer, model, &tokenizer_config_path)?;
    write_json(&tokenizer_config_path, &tokenizer_config)?;
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    std::fs::write(&tokenizer_path, tokenizer_json).map_err(|e| Error::io(&tokenizer_path, e))
}

/// Create `dir`, or accept it if it exists and is empty (an export never mixes with other
/// files).
fn create_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        if entries.next().is_some() {
            return Err(Error::hf(
                dir,
                "is not empty: export into a new or empty directory",
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}
