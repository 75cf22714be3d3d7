//! What `scripts/hf_equivalence.py` compares with `transformers`: the tokens and logits
//! luoshu computes for a prompt, printed as JSON (`luoshu generate --print-logits`,
//! `--print-tokens`).

use luoshu_backend::Backend;
use luoshu_data::TextTokenizer;
use luoshu_model::generate::Decoder;
use luoshu_model::Precision;
use luoshu_train::checkpoint::Checkpoint;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// `{"tokens": [...], "logits": [[...], ...]}`: the prompt's tokens and, after each of
/// them, the f32 logits over the model's vocabulary.
pub fn print_logits(
    saved: &Checkpoint,
    tokenizer: &TextTokenizer,
    prompt: &str,
    backend: Arc<dyn Backend>,
) -> Result<ExitCode, String> {
    let tokens = tokenizer.encode(prompt).map_err(|e| e.to_string())?;
    if tokens.is_empty() {
        return Err("--print-logits needs a non-empty --prompt".into());
    }
    let mut decoder = Decoder::new(&saved.model, Precision::F32, &saved.state.params, backend)
        .map_err(|e| e.to_string())?;
    // One token per call, through the KV cache, gives the logits at every position.
    let logits = tokens
        .iter()
        .map(|&token| decoder.feed(&[token]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    println!("{}", json!({ "tokens": tokens, "logits": logits }));
    Ok(ExitCode::SUCCESS)
}

/// `[[...], ...]`: the tokens of each line of `prompt`.
pub fn print_tokens(tokenizer: &TextTokenizer, prompt: &str) -> Result<ExitCode, String> {
    let lines = prompt
        .lines()
        .map(|line| tokenizer.encode(line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    println!("{}", json!(lines));
    Ok(ExitCode::SUCCESS)
}
