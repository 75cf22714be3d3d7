//! The run configuration (`config.toml`): every field has a default, unknown keys are
//! rejected with the nearest valid name, impossible values with what to change.

use luoshu_model::ModelConfig;
use luoshu_train::{LrSchedule, TrainConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The model: a preset name, or a table of [`ModelConfig`] fields (missing ones taken from
/// the preset its `preset` key names, else from `tiny`).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    Preset(String),
    Inline(ModelConfig),
}

impl ModelChoice {
    pub fn resolve(&self) -> Result<ModelConfig, String> {
        match self {
            ModelChoice::Preset(name) => ModelConfig::preset(name).map_err(|e| e.to_string()),
            ModelChoice::Inline(config) => Ok(config.clone()),
        }
    }

    /// `--model`: a preset name, or a TOML file (`*.toml`) of model fields, e.g.
    /// `preset = "llama-7b"` and `n_layers = 48` (a `[model]` table in it works too).
    pub fn from_arg(arg: &str) -> Result<Self, String> {
        if !arg.ends_with(".toml") {
            return Ok(ModelChoice::Preset(arg.to_string()));
        }
        let text = std::fs::read_to_string(arg)
            .map_err(|e| format!("cannot read the model file {arg}: {e}"))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("{arg}: {e}"))?;
        let fields = match table.remove("model") {
            Some(toml::Value::Table(model)) if table.is_empty() => model,
            Some(_) => return Err(format!("{arg}: `model` must be the only table, of fields")),
            None => table,
        };
        let choice = ModelChoice::deserialize(toml::Value::Table(fields)).map_err(|e| {
            format!(
                "{arg}: {}",
                explain_unknown_key(e.message()).unwrap_or_else(|| e.message().to_string())
            )
        })?;
        choice
            .resolve()?
            .validate()
            .map_err(|e| format!("{arg}: {e}"))?;
        Ok(choice)
    }

    /// `--model-field FIELD=VALUE` overrides, in order (`n_layers=48`,
    /// `tie_embeddings=false`): each value is TOML, and the result is checked like a
    /// `[model]` table (unknown fields get "did you mean", bad shapes name the field).
    pub fn with_fields(&self, assignments: &[String]) -> Result<Self, String> {
        if assignments.is_empty() {
            return Ok(self.clone());
        }
        let mut fields = match toml::Value::try_from(self.resolve()?) {
            Ok(toml::Value::Table(fields)) => fields,
            other => return Err(format!("the model config is not a table: {other:?}")),
        };
        for assignment in assignments {
            let (key, value) = assignment.split_once('=').ok_or_else(|| {
                format!("--model-field takes FIELD=VALUE (e.g. n_layers=48), got `{assignment}`")
            })?;
            let parsed: toml::Table = toml::from_str(&format!("value = {}", value.trim()))
                .map_err(|e| {
                    format!(
                        "--model-field {assignment}: `{}` is not a TOML value ({})",
                        value.trim(),
                        e.message()
                    )
                })?;
            let value = parsed["value"].clone();
            fields.insert(key.trim().to_string(), value);
        }
        let choice = ModelChoice::deserialize(toml::Value::Table(fields)).map_err(|e| {
            format!(
                "--model-field: {}",
                explain_unknown_key(e.message()).unwrap_or_else(|| e.message().to_string())
            )
        })?;
        choice
            .resolve()?
            .validate()
            .map_err(|e| format!("--model-field: {e}"))?;
        Ok(choice)
    }
}

impl Serialize for ModelChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ModelChoice::Preset(name) => s.serialize_str(name),
            ModelChoice::Inline(config) => config.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(name) => Ok(ModelChoice::Preset(name)),
            toml::Value::Table(mut fields) => {
                let base = match fields.remove("preset") {
                    None => ModelConfig::default(),
                    Some(toml::Value::String(name)) => {
                        ModelConfig::preset(&name).map_err(D::Error::custom)?
                    }
                    Some(other) => {
                        return Err(D::Error::custom(format!(
                            "preset must be a preset name, got {other}"
                        )))
                    }
                };
                let mut merged = toml::Value::try_from(base).map_err(D::Error::custom)?;
                if let toml::Value::Table(base) = &mut merged {
                    base.extend(fields);
                }
                ModelConfig::deserialize(merged)
                    .map(ModelChoice::Inline)
                    .map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format!(
                "model must be a preset name or a table of model fields, got {other}"
            ))),
        }
    }
}

/// Where the text comes from and how it becomes batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A file, directory or glob; unset means the Rust sources of the cargo registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Read files until this many bytes are selected.
    pub max_bytes: u64,
    /// Fraction of files held out for validation.
    pub val_fraction: f64,
    /// Tokenizer vocabulary (at most the model's `vocab_size`).
    pub vocab_size: usize,
    /// Longest training sequence; longer documents are cut (at most the model's `max_seq_len`).
    pub max_len: usize,
    /// Sequence-length buckets, ascending, ending at `max_len`.
    pub bucket_edges: Vec<usize>,
    /// Padded tokens per micro-batch.
    pub tokens_per_micro_batch: usize,
    /// Target tokens per optimizer step.
    pub global_batch_tokens: usize,
    /// Pack several documents into each row of a bucket (attention and RoPE stay within a
    /// document), instead of one padded document per row.
    pub packing: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: None,
            max_bytes: 3 << 20,
            val_fraction: 0.03,
            vocab_size: 2048,
            max_len: 256,
            bucket_edges: vec![32, 64, 128, 256],
            tokens_per_micro_batch: 2048,
            global_batch_tokens: 4096,
            packing: true,
        }
    }
}

/// Everything `luoshu train` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Output goes to `runs/<name>/`.
    pub name: String,
    /// Optimizer steps to reach (a resumed run continues up to this step).
    pub steps: u64,
    /// Evaluate on the validation set every this many steps (and at the end).
    pub eval_every: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (older ones are deleted).
    pub keep_checkpoints: usize,
    /// Seeds the corpus split, data order and initialization.
    pub seed: u64,
    pub model: ModelChoice,
    /// Parallel strategy (`single`, `dp2`, `tp2`, `dp2tp2`, `dp2pp2`, `dp4zero1`, ...), or
    /// `auto`: hot switching on every core (or `--devices`), each bucket under the
    /// strategy the cost model calibrated on this machine predicts fastest at start-up,
    /// or `probe`: the one a measured probe finds fastest (either saved in
    /// `runs/<name>/strategy.toml` and reused).
    pub strategy: String,
    pub data: DataConfig,
    pub train: TrainConfig,
    /// Hot switching: each length bucket under its own strategy (absent: `strategy` for
    /// every bucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot_switch: Option<HotSwitchConfig>,
}

/// The `[hot_switch]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotSwitchConfig {
    /// `EDGE:STRATEGY,...` ascending, e.g. `"256:dp2,1024:tp2"`: buckets up to each edge
    /// run under its strategy; `auto` / `probe`: each of `data.bucket_edges` under the
    /// strategy the cost model predicts / the start-up probe finds fastest.
    pub buckets: String,
    /// The strategy that keeps the master weights and optimizer state and updates them
    /// (default: the longest bucket's).
    pub update_strategy: Option<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        let steps = 300;
        RunConfig {
            name: "default".into(),
            steps,
            eval_every: 50,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            seed: 0,
            model: ModelChoice::Preset("tiny".into()),
            strategy: AUTO.into(),
            data: DataConfig::default(),
            train: TrainConfig {
                schedule: LrSchedule {
                    total_steps: steps,
                    ..LrSchedule::default()
                },
                ..TrainConfig::default()
            },
            hot_switch: None,
        }
    }
}

/// The `strategy` (and `[hot_switch] buckets`) value that asks for each bucket's strategy
/// from the cost model calibrated on this machine.
pub const AUTO: &str = "auto";
/// The value that asks for the measured probe's choice instead.
pub const PROBE: &str = "probe";

/// How strategies chosen at start-up are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chooser {
    /// `auto`: predicted by the cost model (`luoshu-sim`) calibrated on this machine.
    CostModel,
    /// `probe`: measured by running each candidate on a sample of the data.
    Probe,
}

impl Chooser {
    pub fn name(self) -> &'static str {
        match self {
            Chooser::CostModel => "cost model",
            Chooser::Probe => "probe",
        }
    }
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Rewrite serde's "unknown field `x`, expected one of `a`, `b`" as "unknown key `x`, did
/// you mean `a`?" (the backquoted words are the unknown key, then the valid ones).
fn explain_unknown_key(message: &str) -> Option<String> {
    let start = message.find("unknown field `")?;
    let quoted: Vec<&str> = message[start..].split('`').skip(1).step_by(2).collect();
    let (unknown, valid) = quoted.split_first()?;
    let nearest = valid.iter().min_by_key(|v| edit_distance(unknown, v))?;
    Some(format!(
        "unknown key `{unknown}`, did you mean `{nearest}`? (valid keys here: {})",
        valid.join(", ")
    ))
}

impl RunConfig {
    /// Parse a TOML config; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message();
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            let detail = explain_unknown_key(message).unwrap_or_else(|| message.to_string());
            format!("{origin}{location}: {detail}")
        })
    }

    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| format!("cannot write the config as TOML: {e}"))
    }

    /// How the strategies are chosen at start-up, if they are: `[hot_switch] buckets =
    /// "auto"` or `"probe"`, or `strategy = "auto"` or `"probe"` without a `[hot_switch]`
    /// table naming the buckets.
    pub fn chooser(&self) -> Option<Chooser> {
        let value = match &self.hot_switch {
            Some(table) => &table.buckets,
            None => &self.strategy,
        };
        match value.as_str() {
            AUTO => Some(Chooser::CostModel),
            PROBE => Some(Chooser::Probe),
            _ => None,
        }
    }

    /// Whether the strategies are chosen at start-up (see [`RunConfig::chooser`]).
    pub fn is_auto(&self) -> bool {
        self.chooser().is_some()
    }

    /// The parsed [`RunConfig::strategy`], or a named hot-switching plan's update strategy.
    pub fn strategy(&self) -> Result<luoshu_dist::Strategy, String> {
        if self.is_auto() {
            return Err("the strategy is chosen at start-up (`auto` or `probe`)".into());
        }
        if let Some((_, update)) = self.hot_switch_plan()? {
            return Ok(update);
        }
        self.strategy
            .parse()
            .map_err(|e: luoshu_dist::Error| e.to_string())
    }

    /// The update strategy the `[hot_switch]` table names, if any.
    pub fn update_strategy(&self) -> Result<Option<luoshu_dist::Strategy>, String> {
        self.hot_switch
            .as_ref()
            .and_then(|h| h.update_strategy.as_deref())
            .map(|s| {
                s.parse()
                    .map_err(|e: luoshu_dist::Error| format!("update strategy: {e}"))
            })
            .transpose()
    }

    /// The buckets' strategies and the update strategy of a named hot-switching plan
    /// (`None` for a static strategy or `auto`).
    pub fn hot_switch_plan(
        &self,
    ) -> Result<Option<(luoshu_train::hot::BucketStrategies, luoshu_dist::Strategy)>, String> {
        if self.is_auto() {
            return Ok(None);
        }
        self.hot_switch
            .as_ref()
            .map(|h| parse_plan(&h.buckets, self.update_strategy()?))
            .transpose()
    }

    pub fn validate(&self) -> Result<ModelConfig, String> {
        let model = self.model.resolve()?;
        if self.is_auto() {
            self.update_strategy()?;
        } else {
            // A named plan's update strategy, else the static strategy, must parse.
            self.strategy()?;
            // Every bucket of the data needs a strategy: say which edge to add up front.
            if let Some((buckets, _)) = self.hot_switch_plan()? {
                for &edge in &self.data.bucket_edges {
                    buckets.strategy_for(edge).map_err(|e| e.to_string())?;
                }
            }
        }
        model.validate().map_err(|e| e.to_string())?;
        self.train.validate().map_err(|e| e.to_string())?;
        let invalid = |msg: String| Err(format!("invalid run configuration: {msg}"));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return invalid(format!(
                "name `{}` must be a plain directory name (it becomes runs/<name>)",
                self.name
            ));
        }
        for (key, value) in [
            ("steps", self.steps),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
            ("keep_checkpoints", self.keep_checkpoints as u64),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be at least 1"));
            }
        }
        let data = &self.data;
        if data.max_bytes == 0 {
            return invalid("data.max_bytes must be positive".into());
        }
        if !(0.0..1.0).contains(&data.val_fraction) || data.val_fraction == 0.0 {
            return invalid(format!(
                "data.val_fraction must be in (0, 1), got {}",
                data.val_fraction
            ));
        }
        if data.vocab_size > model.vocab_size {
            return invalid(format!(
                "data.vocab_size ({}) exceeds the model's vocab_size ({})",
                data.vocab_size, model.vocab_size
            ));
        }
        if data.max_len > model.max_seq_len {
            return invalid(format!(
                "data.max_len ({}) exceeds the model's max_seq_len ({})",
                data.max_len, model.max_seq_len
            ));
        }
        self.loader_config()
            .validate()
            .map_err(|e| format!("invalid run configuration: {e}"))?;
        Ok(model)
    }

    pub fn loader_config(&self) -> luoshu_data::LoaderConfig {
        luoshu_data::LoaderConfig {
            max_len: self.data.max_len,
            bucket_edges: self.data.bucket_edges.clone(),
            tokens_per_micro_batch: self.data.tokens_per_micro_batch,
            global_batch_tokens: self.data.global_batch_tokens,
            seed: self.seed,
            packing: self.data.packing,
        }
    }

    pub fn corpus_spec(&self) -> luoshu_data::CorpusSpec {
        luoshu_data::CorpusSpec {
            data: self.data.path.clone(),
            max_bytes: self.data.max_bytes,
            val_fraction: self.data.val_fraction,
            seed: self.seed,
            ..luoshu_data::CorpusSpec::default()
        }
    }
}

/// [`RunConfig::to_toml`] with a note on the one field TOML cannot show when unset.
pub fn annotated_toml(config: &RunConfig) -> Result<String, String> {
    let text = config.to_toml()?;
    if config.data.path.is_some() {
        return Ok(text);
    }
    Ok(text.replacen(
        "[data]\n",
        "[data]\n# path = \"DIR, FILE or GLOB\"  (unset: the Rust sources under the cargo registry)\n",
        1,
    ))
}

/// Buckets and strategies from the `[hot_switch]` table.
fn parse_plan(
    buckets: &str,
    update: Option<luoshu_dist::Strategy>,
) -> Result<(luoshu_train::hot::BucketStrategies, luoshu_dist::Strategy), String> {
    let buckets: luoshu_train::hot::BucketStrategies = buckets
        .parse()
        .map_err(|e: luoshu_train::Error| e.to_string())?;
    let update = update.unwrap_or_else(|| buckets.longest());
    Ok((buckets, update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_data::fuzz::mutate;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Mutated configs parse or are rejected naming the file; whatever parses is
        /// validated without a panic, and a rejection says why.
        #[test]
        fn mutated_configs_never_panic_and_every_rejection_names_the_file(
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
        ) {
            let seed = RunConfig::default().to_toml().unwrap();
            let text = String::from_utf8_lossy(&mutate(seed.as_bytes(), &edits)).into_owned();
            match RunConfig::from_toml(&text, "fuzz.toml") {
                Ok(config) => {
                    if let Err(message) = config.validate() {
                        prop_assert!(!message.is_empty());
                    }
                }
                Err(message) => prop_assert!(
                    message.starts_with("fuzz.toml") && message.len() > "fuzz.toml: ".len(),
                    "{}", message
                ),
            }
        }
    }

    #[test]
    fn default_config_round_trips_through_toml() {
        let config = RunConfig::default();
        let text = config.to_toml().unwrap();
        assert_eq!(RunConfig::from_toml(&text, "x").unwrap(), config);
        config.validate().unwrap();
    }

    #[test]
    fn packing_is_on_by_default_and_reaches_the_loader() {
        let mut config = RunConfig::default();
        assert!(config.loader_config().packing);
        config.data.packing = false;
        assert!(!config.loader_config().packing);
        let config = RunConfig::from_toml("[data]\npacking = false", "cfg").unwrap();
        assert!(!config.data.packing);
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_name() {
        let err = RunConfig::from_toml("stpes = 3", "cfg").unwrap_err();
        assert!(
            err.contains("unknown key `stpes`, did you mean `steps`?"),
            "{err}"
        );
        let err = RunConfig::from_toml("[data]\nmax_lne = 3", "cfg").unwrap_err();
        assert!(err.contains("did you mean `max_len`?"), "{err}");
        let err = RunConfig::from_toml("[model]\nd_modle = 64", "cfg").unwrap_err();
        assert!(err.contains("did you mean `d_model`?"), "{err}");
    }

    #[test]
    fn a_model_table_overrides_the_preset_it_names() {
        let config =
            RunConfig::from_toml("[model]\npreset = \"llama-7b\"\nn_layers = 2", "cfg").unwrap();
        let model = config.model.resolve().unwrap();
        let llama = ModelConfig::preset("llama-7b").unwrap();
        assert_eq!(
            model,
            ModelConfig {
                n_layers: 2,
                ..llama
            }
        );
        let err = RunConfig::from_toml("[model]\npreset = \"llama-8b\"", "cfg").unwrap_err();
        assert!(err.contains("unknown model preset `llama-8b`"), "{err}");
        let err = RunConfig::from_toml("[model]\npreset = 7", "cfg").unwrap_err();
        assert!(err.contains("preset must be a preset name"), "{err}");
    }

    #[test]
    fn model_files_override_a_preset_and_bad_shapes_are_refused() {
        let dir = std::env::temp_dir().join(format!("luoshu-model-arg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        let deep = write("deep.toml", "preset = \"llama-7b\"\nn_layers = 48\n");
        let model = ModelChoice::from_arg(&deep).unwrap().resolve().unwrap();
        assert_eq!((model.n_layers, model.d_model), (48, 4096));
        let table = write("table.toml", "[model]\npreset = \"tiny\"\nd_model = 64\n");
        assert_eq!(
            ModelChoice::from_arg(&table)
                .unwrap()
                .resolve()
                .unwrap()
                .d_model,
            64
        );
        let bad = write("bad.toml", "preset = \"tiny\"\nn_heads = 3\n");
        let err = ModelChoice::from_arg(&bad).unwrap_err();
        assert!(err.starts_with(&bad) && err.contains("n_heads"), "{err}");
        let typo = write("typo.toml", "n_layer = 3\n");
        let err = ModelChoice::from_arg(&typo).unwrap_err();
        assert!(err.contains("did you mean `n_layers`"), "{err}");
        assert!(ModelChoice::from_arg("missing.toml")
            .unwrap_err()
            .contains("cannot read"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn model_fields_override_any_field_and_bad_ones_are_refused() {
        let base = ModelChoice::Preset("llama-7b".into());
        let fields = |f: &[&str]| -> Vec<String> { f.iter().map(|s| s.to_string()).collect() };
        let model = base
            .with_fields(&fields(&[
                "n_layers=48",
                " tie_embeddings = true",
                "n_layers=40",
            ]))
            .unwrap()
            .resolve()
            .unwrap();
        // Later assignments win; untouched fields keep the preset's values.
        assert_eq!((model.n_layers, model.d_model), (40, 4096));
        assert!(model.tie_embeddings);
        assert_eq!(base.with_fields(&[]).unwrap(), base);
        let err = base.with_fields(&fields(&["n_layer=3"])).unwrap_err();
        assert!(err.contains("did you mean `n_layers`"), "{err}");
        let err = base.with_fields(&fields(&["n_heads=3"])).unwrap_err();
        assert!(err.contains("n_heads"), "{err}");
        let err = base.with_fields(&fields(&["n_layers"])).unwrap_err();
        assert!(err.contains("FIELD=VALUE"), "{err}");
        let err = base.with_fields(&fields(&["n_layers=four"])).unwrap_err();
        assert!(err.contains("not a TOML value"), "{err}");
    }

    #[test]
    fn inline_model_fills_missing_fields_from_tiny() {
        let config = RunConfig::from_toml("[model]\nd_model = 64\nn_heads = 2", "cfg").unwrap();
        let model = config.model.resolve().unwrap();
        assert_eq!((model.d_model, model.n_heads), (64, 2));
        assert_eq!(model.n_layers, ModelConfig::default().n_layers);
    }
}
