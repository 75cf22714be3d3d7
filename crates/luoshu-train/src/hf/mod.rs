//! Hugging Face interoperability: a luoshu model written as a `transformers` LLaMA
//! directory (`config.json`, `model.safetensors`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json`) that `AutoModelForCausalLM` and
//! `AutoTokenizer` load without custom code, and such a directory read back into luoshu
//! parameters.
//!
//! - `config`: `config.json` ↔ [`luoshu_model::ModelConfig`]; unsupported architectures and
//!   fields are errors naming the field.
//! - `layout`: which HF tensor each parameter is (from its role and layer) and how its
//!   layout differs.
//! - `weights`: reading (single file or sharded) and writing safetensors.
//! - `tokenizer`: `tokenizer_config.json` and `generation_config.json` from the run's
//!   tokenizer, and the check of an imported tokenizer.
//! - `export` and `import`: the two directions.

mod config;
mod dtype;
mod export;
mod import;
mod layout;
mod tokenizer;
mod weights;

pub use dtype::HfDtype;
pub use export::export;
pub use import::{import, ImportedModel};

/// Files of a Hugging Face model directory.
const CONFIG_FILE: &str = "config.json";
const GENERATION_CONFIG_FILE: &str = "generation_config.json";
const WEIGHTS_FILE: &str = "model.safetensors";
const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The only architecture luoshu reads and writes.
const ARCHITECTURE: &str = "LlamaForCausalLM";
const MODEL_TYPE: &str = "llama";

use crate::{Error, Result};
use std::path::Path;

/// The JSON document in `path`.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::hf(path, format!("not valid JSON: {e}")))
}

/// `value` as indented JSON (what `save_pretrained` writes).
fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::hf(path, format!("cannot encode JSON: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
