//! `luoshu import`: a Hugging Face LLaMA directory as a luoshu run — `config.toml`,
//! `tokenizer.json` and a step-0 checkpoint with fresh optimizer state — so `luoshu
//! generate` runs it and `luoshu train --resume` fine-tunes it under any strategy.

use crate::train::config::{ModelChoice, RunConfig};
use crate::train::RUNS_DIR;
use luoshu_data::{fingerprint, LoaderPosition, TextTokenizer};
use luoshu_train::checkpoint::{self, CheckpointMeta};
use luoshu_train::hf::{self, ImportedModel};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A Hugging Face LLaMA model directory (config.json, model.safetensors or its sharded
    /// index, tokenizer.json).
    #[arg(long)]
    pub from: PathBuf,
    /// Run name: writes runs/NAME/.
    #[arg(long)]
    pub name: String,
}

/// The defaults of `luoshu train`, with the imported model and sequence lengths it holds.
fn run_config(name: &str, imported: &ImportedModel) -> Result<RunConfig, String> {
    let model = &imported.model;
    let tokenizer =
        TextTokenizer::from_json(&imported.tokenizer_json).map_err(|e| e.to_string())?;
    let mut config = RunConfig {
        name: name.to_string(),
        model: ModelChoice::Inline(model.clone()),
        ..RunConfig::default()
    };
    config.data.vocab_size = tokenizer.vocab_size();
    let max_len = config.data.max_len.min(model.max_seq_len);
    config.data.max_len = max_len;
    config.data.bucket_edges.retain(|&edge| edge < max_len);
    config.data.bucket_edges.push(max_len);
    config.validate()?;
    Ok(config)
}

pub fn run(args: &ImportArgs) -> Result<ExitCode, String> {
    let run_dir = Path::new(RUNS_DIR).join(&args.name);
    if run_dir.exists() {
        return Err(format!(
            "{} already exists: import under another --name, or delete it first",
            run_dir.display()
        ));
    }
    let imported = hf::import(&args.from).map_err(|e| e.to_string())?;
    let config = run_config(&args.name, &imported)?;
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        let path = run_dir.join(file);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("tokenizer.json", &imported.tokenizer_json)?;
    write("config.toml", config.to_toml()?.as_bytes())?;
    let meta = CheckpointMeta {
        model: &imported.model,
        data: LoaderPosition {
            epoch: 0,
            cursor: 0,
        },
        seed: config.seed,
        tokenizer_hash: &fingerprint(&imported.tokenizer_json),
    };
    let checkpoint_dir = checkpoint::save(
        &run_dir.join("checkpoint"),
        &imported.state,
        &meta,
        config.keep_checkpoints,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "imported {} ({} parameters) into {}; run it with `luoshu generate --run {}`, or \
         fine-tune it with `luoshu train --name {} --resume --steps N` (data and learning \
         rate in {})",
        args.from.display(),
        imported.model.num_parameters(),
        checkpoint_dir.display(),
        run_dir.display(),
        args.name,
        run_dir.join("config.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}
