//! The tokenizer side of a Hugging Face directory: `tokenizer_config.json` and
//! `generation_config.json` written from the run's tokenizer, and the check that an
//! imported `tokenizer.json` fits the model.
//!
//! luoshu's tokenizer is a standard `tokenizer.json`, loaded by `transformers` as a plain
//! `PreTrainedTokenizerFast`: it adds no special tokens when encoding (luoshu ends each
//! document with the end-of-text token and adds nothing at the start), and decoding must not
//! rewrite spaces.

use super::{read_json, TOKENIZER_CONFIG_FILE};
use crate::{Error, Result};
use luoshu_data::TextTokenizer;
use luoshu_model::ModelConfig;
use serde_json::{json, Value};
use std::path::Path;

/// The text of the end-of-text token of `tokenizer`.
fn end_of_text_token(tokenizer: &TextTokenizer, path: &Path) -> Result<String> {
    let id = tokenizer.end_of_text();
    tokenizer
        .token(id)
        .ok_or_else(|| Error::hf(path, format!("the end-of-text id {id} has no token text")))
}

/// `tokenizer_config.json`: the end-of-text token begins, ends and pads sequences.
pub(super) fn tokenizer_config_json(
    tokenizer: &TextTokenizer,
    model: &ModelConfig,
    path: &Path,
) -> Result<Value> {
    let end_of_text = end_of_text_token(tokenizer, path)?;
    Ok(json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": end_of_text,
        "eos_token": end_of_text,
        "pad_token": end_of_text,
        "model_max_length": model.max_seq_len,
        "clean_up_tokenization_spaces": false,
    }))
}

/// `generation_config.json`: generation stops at the end-of-text token.
pub(super) fn generation_config_json(end_of_text: u32) -> Value {
    json!({
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "pad_token_id": end_of_text,
    })
}

/// Check the imported `tokenizer` (of `dir`) against `model`, and against the `eos_token`
/// of `dir/tokenizer_config.json` when there is one.
pub(super) fn check_imported(
    dir: &Path,
    tokenizer: &TextTokenizer,
    tokenizer_path: &Path,
    model: &ModelConfig,
) -> Result<()> {
    if tokenizer.vocab_size() > model.vocab_size {
        return Err(Error::hf(
            tokenizer_path,
            format!(
                "has {} tokens but config.json's vocab_size is {}: they do not belong together",
                tokenizer.vocab_size(),
                model.vocab_size
            ),
        ));
    }
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    if !config_path.is_file() {
        return Ok(());
    }
    let config = read_json(&config_path)?;
    // `eos_token` is a string or an added-token table with its `content`.
    let eos = match config.get("eos_token") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(text)) => text.as_str(),
        Some(value) => value
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::hf(
                    &config_path,
                    format!("field `eos_token` must be a string or have a `content`, got {value}"),
                )
            })?,
    };
    let end_of_text = end_of_text_token(tokenizer, tokenizer_path)?;
    if eos != end_of_text {
        return Err(Error::hf(
            &config_path,
            format!(
                "field `eos_token` is `{eos}`, but luoshu ends documents with `{end_of_text}` \
                 (the first of <|endoftext|>, <|end_of_text|>, </s> in tokenizer.json); \
                 luoshu cannot train or generate with another end-of-text token"
            ),
        ));
    }
    Ok(())
}
