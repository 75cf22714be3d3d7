//! `config.json` of a `LlamaForCausalLM` ↔ [`ModelConfig`]. Fields a `config.json` may leave
//! out take `transformers`' `LlamaConfig` defaults, so an imported model computes what
//! `transformers` computes from the same directory; the fields that fix the model's shape
//! must be present.

use super::{ARCHITECTURE, MODEL_TYPE};
use crate::{Error, Result};
use luoshu_model::{ModelConfig, INIT_STD};
use serde_json::{json, Map, Value};
use std::fmt::Display;
use std::path::Path;

/// `LlamaConfig` defaults.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_MAX_POSITIONS: usize = 2048;

/// The `config.json` of `model` with weights stored as `torch_dtype`; documents begin and
/// end with token `end_of_text`.
pub(super) fn config_json(model: &ModelConfig, torch_dtype: &str, end_of_text: u32) -> Value {
    json!({
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "vocab_size": model.vocab_size,
        "hidden_size": model.d_model,
        "intermediate_size": model.d_ff,
        "num_hidden_layers": model.n_layers,
        "num_attention_heads": model.n_heads,
        "num_key_value_heads": model.n_kv_heads,
        "head_dim": model.head_dim(),
        "max_position_embeddings": model.max_seq_len,
        "rms_norm_eps": model.norm_eps,
        "rope_theta": model.rope_theta,
        "rope_scaling": null,
        "hidden_act": "silu",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "tie_word_embeddings": model.tie_embeddings,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "pad_token_id": end_of_text,
        "torch_dtype": torch_dtype,
        "initializer_range": INIT_STD,
        "use_cache": true,
    })
}

/// The fields of one JSON object of `path`; `prefix` names the table in errors
/// (`rope_parameters.`).
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn error(&self, field: &str, message: impl Display) -> Error {
        Error::hf(
            self.path,
            format!("field `{}{field}` {message}", self.prefix),
        )
    }

    /// The value of `field`; `null` counts as absent, as in `transformers`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// The table `field`, if present.
    fn table(&self, field: &str) -> Result<Option<Fields<'a>>> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let map = value
            .as_object()
            .ok_or_else(|| self.error(field, format!("must be a table, got {value}")))?;
        Ok(Some(Fields {
            map,
            path: self.path,
            prefix: format!("{}{field}.", self.prefix),
        }))
    }

    fn positive(&self, field: &str, value: &Value) -> Result<usize> {
        value
            .as_u64()
            .filter(|&n| n > 0)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.error(field, format!("must be a positive integer, got {value}")))
    }

    /// A required positive integer.
    fn count(&self, field: &str) -> Result<usize> {
        let value = self
            .get(field)
            .ok_or_else(|| self.error(field, "is missing; a LLaMA config.json must give it"))?;
        self.positive(field, value)
    }

    fn count_or(&self, field: &str, default: usize) -> Result<usize> {
        self.get(field)
            .map_or(Ok(default), |value| self.positive(field, value))
    }

    fn number_or(&self, field: &str, default: f64) -> Result<f64> {
        self.get(field).map_or(Ok(default), |value| {
            value
                .as_f64()
                .ok_or_else(|| self.error(field, format!("must be a number, got {value}")))
        })
    }

    fn flag_or(&self, field: &str, default: bool) -> Result<bool> {
        self.get(field).map_or(Ok(default), |value| {
            value
                .as_bool()
                .ok_or_else(|| self.error(field, format!("must be true or false, got {value}")))
        })
    }

    fn text_or(&self, field: &str, default: &'a str) -> Result<&'a str> {
        self.get(field).map_or(Ok(default), |value| {
            value
                .as_str()
                .ok_or_else(|| self.error(field, format!("must be a string, got {value}")))
        })
    }
}

/// The luoshu model a `config.json` (read from `path`) describes.
pub(super) fn parse_config(json: &Value, path: &Path) -> Result<ModelConfig> {
    let map = json
        .as_object()
        .ok_or_else(|| Error::hf(path, "must be a JSON object of model fields"))?;
    let fields = Fields {
        map,
        path,
        prefix: String::new(),
    };
    check_architecture(&fields)?;
    check_supported(&fields)?;
    let d_model = fields.count("hidden_size")?;
    let n_heads = fields.count("num_attention_heads")?;
    let n_kv_heads = fields.count_or("num_key_value_heads", n_heads)?;
    if !d_model.is_multiple_of(n_heads) {
        return Err(fields.error(
            "num_attention_heads",
            format!("({n_heads}) must divide hidden_size ({d_model})"),
        ));
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(fields.error(
            "num_key_value_heads",
            format!("({n_kv_heads}) must divide num_attention_heads ({n_heads})"),
        ));
    }
    let head_dim = d_model / n_heads;
    if let Some(value) = fields.get("head_dim") {
        let given = fields.positive("head_dim", value)?;
        if given != head_dim {
            return Err(fields.error(
                "head_dim",
                format!(
                    "is {given}, but luoshu's heads are hidden_size / num_attention_heads = \
                     {head_dim} wide; models with a separate head_dim do not import"
                ),
            ));
        }
    }
    if !head_dim.is_multiple_of(2) {
        return Err(fields.error(
            "num_attention_heads",
            format!(
                "gives heads hidden_size / num_attention_heads = {head_dim} wide; rotary \
                 embeddings need an even width"
            ),
        ));
    }
    let model = ModelConfig {
        vocab_size: fields.count("vocab_size")?,
        d_model,
        n_layers: fields.count("num_hidden_layers")?,
        n_heads,
        n_kv_heads,
        d_ff: fields.count("intermediate_size")?,
        max_seq_len: fields.count_or("max_position_embeddings", DEFAULT_MAX_POSITIONS)?,
        rope_theta: rope_theta(&fields)?,
        norm_eps: fields.number_or("rms_norm_eps", DEFAULT_RMS_NORM_EPS)?,
        tie_embeddings: fields.flag_or("tie_word_embeddings", false)?,
    };
    if !(model.rope_theta.is_finite() && model.rope_theta > 1.0) {
        let theta = model.rope_theta;
        return Err(fields.error("rope_theta", format!("must be above 1, got {theta}")));
    }
    if !(model.norm_eps.is_finite() && model.norm_eps > 0.0) {
        let eps = model.norm_eps;
        return Err(fields.error("rms_norm_eps", format!("must be positive, got {eps}")));
    }
    model
        .validate()
        .map_err(|e| Error::hf(path, format!("describes a model luoshu cannot build: {e}")))?;
    Ok(model)
}

fn check_architecture(fields: &Fields) -> Result<()> {
    let wanted = format!("luoshu imports `{MODEL_TYPE}` models ({ARCHITECTURE})");
    match fields.get("model_type") {
        None => return Err(fields.error("model_type", format!("is missing; {wanted}"))),
        Some(Value::String(t)) if t == MODEL_TYPE => {}
        Some(other) => return Err(fields.error("model_type", format!("is {other}; {wanted}"))),
    }
    match fields.get("architectures") {
        Some(archs) if archs != &json!([ARCHITECTURE]) => {
            Err(fields.error("architectures", format!("is {archs}; {wanted}")))
        }
        _ => Ok(()),
    }
}

/// Errors for the LLaMA variants luoshu's model does not compute.
fn check_supported(fields: &Fields) -> Result<()> {
    let act = fields.text_or("hidden_act", "silu")?;
    if act != "silu" {
        return Err(fields.error(
            "hidden_act",
            format!("is `{act}`; luoshu's MLP is SwiGLU, which needs `silu`"),
        ));
    }
    for field in ["attention_bias", "mlp_bias"] {
        if fields.flag_or(field, false)? {
            return Err(fields.error(field, "is true; luoshu's projections have no bias"));
        }
    }
    let dropout = fields.number_or("attention_dropout", 0.0)?;
    if dropout != 0.0 {
        return Err(fields.error(
            "attention_dropout",
            format!("is {dropout}; luoshu trains without dropout, set it to 0.0"),
        ));
    }
    if let Some(scaling) = fields.table("rope_scaling")? {
        check_plain_rope(&scaling)?;
    }
    Ok(())
}

/// Error unless a RoPE table (`rope_scaling`, or `rope_parameters` of newer
/// `transformers`) asks for plain RoPE.
fn check_plain_rope(table: &Fields) -> Result<()> {
    for field in ["rope_type", "type"] {
        let kind = table.text_or(field, "default")?;
        if kind != "default" {
            return Err(table.error(
                field,
                format!("is `{kind}`; luoshu implements plain RoPE (`default`) only"),
            ));
        }
    }
    Ok(())
}

/// The RoPE base: `rope_parameters.rope_theta` (newer `transformers`), else `rope_theta`.
fn rope_theta(fields: &Fields) -> Result<f64> {
    let top = fields.number_or("rope_theta", DEFAULT_ROPE_THETA)?;
    match fields.table("rope_parameters")? {
        Some(params) => {
            check_plain_rope(&params)?;
            params.number_or("rope_theta", top)
        }
        None => Ok(top),
    }
}
