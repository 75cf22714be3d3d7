//! Text generation with a KV cache: the prompt is prefilled in one decode-graph run, then
//! each new token runs the graph on that token alone, reading earlier keys and values from
//! the cache instead of recomputing the prefix.

use crate::llama::{
    cache_k_name, cache_v_name, BATCH, CTX, POSITION, POSITIONS, ROPE_COS, ROPE_SIN, SEQ, TOKENS,
};
use crate::sampling::Sampler;
use crate::{build_decode_graph, param_specs, rope_tables, Error, ModelConfig, ParamStore};
use crate::{Precision, Result};
use luoshu_backend::{Backend, Ops};
use luoshu_data::TextTokenizer;
use luoshu_graph::passes::{run_pipeline, DEFAULT_PIPELINE};
use luoshu_graph::{evaluate, Bindings, Graph};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// What to generate and how to choose tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to generate after the prompt (fewer if the context fills up).
    pub max_new_tokens: usize,
    /// 0 is greedy decoding.
    pub temperature: f64,
    /// Sample only among the `k` most likely tokens (`None`: all of them).
    pub top_k: Option<usize>,
    /// Seeds the sampling draws: the same seed gives the same text.
    pub seed: u64,
}

impl GenerateOptions {
    fn sampler(&self) -> Sampler {
        Sampler {
            temperature: self.temperature,
            top_k: self.top_k,
            seed: self.seed,
        }
    }
}

/// One sequence being decoded: the model's decode graph, its parameters and the filled
/// key/value caches of the tokens fed so far.
pub struct Decoder {
    cfg: ModelConfig,
    /// The caches hold keys and values in the compute dtype.
    cache_dtype: DType,
    graph: Graph,
    backend: Arc<dyn Backend>,
    /// Parameters by name, plus the per-call inputs while a call runs.
    feeds: HashMap<String, Tensor>,
    /// Per layer k then v, `[1, kv_heads, len, head_dim]`; empty before the first feed.
    caches: Vec<Tensor>,
    len: usize,
}

impl Decoder {
    /// A decoder of `cfg` whose parameters `params` have `precision`'s parameter dtype.
    pub fn new(
        cfg: &ModelConfig,
        precision: Precision,
        params: &ParamStore,
        backend: Arc<dyn Backend>,
    ) -> Result<Self> {
        let graph = run_pipeline(&build_decode_graph(cfg, precision)?.graph, DEFAULT_PIPELINE)?.0;
        let mut feeds = HashMap::new();
        for spec in param_specs(cfg) {
            let t = params
                .get(&spec.name)
                .ok_or_else(|| Error::State(format!("the parameters lack `{}`", spec.name)))?;
            if t.dims() != spec.shape.as_slice() || t.dtype() != precision.param_dtype() {
                return Err(Error::State(format!(
                    "`{}` is {}{:?} but the model needs {}{:?}",
                    spec.name,
                    t.dtype(),
                    t.dims(),
                    precision.param_dtype(),
                    spec.shape
                )));
            }
            feeds.insert(spec.name, t.clone());
        }
        Ok(Decoder {
            cfg: cfg.clone(),
            cache_dtype: precision.compute_dtype(),
            graph,
            backend,
            feeds,
            caches: Vec::new(),
            len: 0,
        })
    }

    /// The model being decoded.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Tokens fed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `tokens` to the sequence in one graph run; returns the logits (over the
    /// model's vocabulary) that predict the token after the last of them.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (start, new) = (self.len, tokens.len());
        let end = start + new;
        if new == 0 {
            return Err(Error::Generate("no tokens to feed the decoder".into()));
        }
        if end > cfg.max_seq_len {
            return Err(Error::Generate(format!(
                "{end} tokens exceed the model's context of {} tokens (max_seq_len)",
                cfg.max_seq_len
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::Generate(format!(
                "token id {bad} is outside the model's vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let positions: Vec<i64> = (start as i64..end as i64).collect();
        let (cos, sin) = rope_tables(cfg.head_dim(), cfg.rope_theta, start, new)?;
        self.feeds.insert(
            TOKENS.into(),
            Tensor::from_slice(&ids, [1, new].as_slice())?,
        );
        self.feeds.insert(
            POSITIONS.into(),
            Tensor::from_slice(&positions, [new].as_slice())?,
        );
        self.feeds.insert(
            POSITION.into(),
            Tensor::from_slice(&[new as i64 - 1], [1].as_slice())?,
        );
        self.feeds.insert(ROPE_COS.into(), cos);
        self.feeds.insert(ROPE_SIN.into(), sin);
        // The graph adds the new keys and values into zero slots after the cached ones.
        let ops = Ops::new(self.backend.as_ref());
        let (kv_heads, head_dim) = (cfg.n_kv_heads, cfg.head_dim());
        for l in 0..cfg.n_layers {
            for (i, name) in [cache_k_name(l), cache_v_name(l)].into_iter().enumerate() {
                let zeros =
                    Tensor::zeros(self.cache_dtype, [1, kv_heads, new, head_dim].as_slice())?;
                let cache = match self.caches.get(2 * l + i) {
                    Some(past) => ops.concat(&[past, &zeros], 2)?,
                    None => zeros,
                };
                self.feeds.insert(name, cache);
            }
        }
        let bindings: Bindings = [
            (BATCH.to_string(), 1),
            (SEQ.to_string(), new),
            (CTX.to_string(), end),
        ]
        .into();
        let mut outputs =
            evaluate(&self.graph, &bindings, &self.feeds, self.backend.as_ref())?.into_iter();
        let logits = outputs
            .next()
            .ok_or_else(|| Error::State("the decode graph returned no logits".into()))?;
        self.caches = outputs.collect();
        self.len = end;
        Ok(logits.to_f64_vec().into_iter().map(|v| v as f32).collect())
    }
}

/// Continue `decoder`'s sequence after `prompt`: prefill the prompt in one run, then decode
/// one token per run until `max_new_tokens`, the `stop` token (not returned) or a full
/// context. Tokens are chosen among ids below `vocab`; `on_token` sees each as it is
/// decoded. Returns the new tokens.
pub fn generate_tokens(
    decoder: &mut Decoder,
    prompt: &[u32],
    options: &GenerateOptions,
    vocab: usize,
    stop: Option<u32>,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    let sampler = options.sampler();
    sampler.validate()?;
    let context = decoder.config().max_seq_len;
    if decoder.len() + prompt.len() > context {
        return Err(Error::Generate(format!(
            "the prompt is {} tokens but the model's context holds at most {context} tokens \
             (max_seq_len); shorten the prompt",
            decoder.len() + prompt.len()
        )));
    }
    let vocab = vocab.min(decoder.config().vocab_size);
    let mut generated = Vec::new();
    if options.max_new_tokens == 0 {
        return Ok(generated);
    }
    let mut logits = decoder.feed(prompt)?;
    loop {
        let token = sampler.sample(&logits[..vocab], generated.len() as u64)?;
        if Some(token) == stop {
            break;
        }
        generated.push(token);
        on_token(token)?;
        if generated.len() == options.max_new_tokens || decoder.len() == context {
            break;
        }
        logits = decoder.feed(&[token])?;
    }
    Ok(generated)
}

/// The text `cfg` with f32 `params` writes after `prompt`, until end of text or
/// `max_new_tokens`. `on_text` receives the text as it is decoded (pieces end on whole
/// characters); the whole continuation is returned.
pub fn generate(
    cfg: &ModelConfig,
    params: &ParamStore,
    tokenizer: &TextTokenizer,
    prompt: &str,
    options: &GenerateOptions,
    backend: Arc<dyn Backend>,
    mut on_text: impl FnMut(&str),
) -> Result<String> {
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(Error::Generate(format!(
            "the tokenizer has {} tokens but the model's vocabulary has {}: they do not belong \
             together",
            tokenizer.vocab_size(),
            cfg.vocab_size
        )));
    }
    let end_of_text = tokenizer.end_of_text();
    let mut prompt_ids = tokenizer.encode(prompt)?;
    if prompt_ids.is_empty() {
        // Documents are separated by end of text, so it starts a fresh document.
        prompt_ids.push(end_of_text);
    }
    let mut decoder = Decoder::new(cfg, Precision::F32, params, backend)?;
    let mut generated = Vec::new();
    let mut emitted = String::new();
    generate_tokens(
        &mut decoder,
        &prompt_ids,
        options,
        tokenizer.vocab_size(),
        Some(end_of_text),
        |token| {
            generated.push(token);
            let text = tokenizer.decode(&generated)?;
            // A trailing U+FFFD is a character whose bytes have not all been decoded yet.
            if !text.ends_with('\u{FFFD}') {
                if let Some(new) = text.strip_prefix(emitted.as_str()) {
                    on_text(new);
                    emitted = text;
                }
            }
            Ok(())
        },
    )?;
    let text = tokenizer.decode(&generated)?;
    match text.strip_prefix(emitted.as_str()) {
        Some(rest) if !rest.is_empty() => on_text(rest),
        _ => {}
    }
    Ok(text)
}
