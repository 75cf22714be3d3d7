//! `luoshu generate`: continue a prompt with the latest checkpoint of a training run,
//! printing the text as it is decoded.

use crate::probe;
use luoshu_data::fingerprint;
use luoshu_data::TextTokenizer;
use luoshu_model::generate::{generate, GenerateOptions};
use luoshu_train::checkpoint::{self, Checkpoint};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The run directory `luoshu train` wrote (runs/NAME).
    #[arg(long)]
    pub run: PathBuf,
    /// Text to continue (empty: start a new document).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Stop after this many new tokens (earlier at end of text or a full context).
    #[arg(long, default_value_t = 200)]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 always picks the most likely token.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the k most likely tokens only (default: all).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampling draws: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend to run the model on (cpu, reference).
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Print the prompt's tokens and the logits after each of them as JSON instead of
    /// generating (for scripts/hf_equivalence.py).
    #[arg(long, hide = true)]
    pub print_logits: bool,
    /// Print the tokens of each line of the prompt as JSON instead of generating (for
    /// scripts/hf_equivalence.py).
    #[arg(long, hide = true, conflicts_with = "print_logits")]
    pub print_tokens: bool,
}

/// The checkpoint of run `dir` at `step` (default: the latest), the tokenizer it was trained
/// with and that tokenizer's `tokenizer.json`.
pub(crate) fn load_run(
    dir: &Path,
    step: Option<u64>,
) -> Result<(Checkpoint, TextTokenizer, Vec<u8>), String> {
    let name = dir
        .file_name()
        .map_or("<name>".into(), |n| n.to_string_lossy());
    let train_first = format!("train a model first with `luoshu train --name {name}`");
    if !dir.is_dir() {
        return Err(format!(
            "no run directory at {}: {train_first}",
            dir.display()
        ));
    }
    let checkpoint_dir = dir.join("checkpoint");
    if !checkpoint_dir.is_dir() {
        return Err(format!(
            "no checkpoint in {}: {train_first} (checkpoints are written while it trains)",
            checkpoint_dir.display()
        ));
    }
    let saved = match step {
        None => checkpoint::load_latest(&checkpoint_dir),
        Some(step) => {
            let steps = checkpoint::list_steps(&checkpoint_dir).map_err(|e| e.to_string())?;
            if !steps.contains(&step) {
                return Err(format!(
                    "{} has no checkpoint of step {step}; it has steps {steps:?}",
                    checkpoint_dir.display()
                ));
            }
            checkpoint::load(&checkpoint_dir.join(format!("step-{step}")))
        }
    }
    .map_err(|e| e.to_string())?;
    let tokenizer_path = dir.join("tokenizer.json");
    let bytes = std::fs::read(&tokenizer_path)
        .map_err(|e| format!("{}: {e}; {train_first}", tokenizer_path.display()))?;
    saved
        .check_tokenizer(&fingerprint(&bytes))
        .map_err(|e| e.to_string())?;
    let tokenizer = TextTokenizer::from_json(&bytes)
        .map_err(|e| format!("{}: {e}", tokenizer_path.display()))?;
    Ok((saved, tokenizer, bytes))
}

pub fn run(args: &GenerateArgs) -> Result<ExitCode, String> {
    let (saved, tokenizer, _) = load_run(&args.run, None)?;
    if args.print_tokens {
        return probe::print_tokens(&tokenizer, &args.prompt);
    }
    let backend = luoshu_backend::backend_by_name(&args.backend).map_err(|e| e.to_string())?;
    if args.print_logits {
        return probe::print_logits(&saved, &tokenizer, &args.prompt, backend);
    }
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let mut stdout = std::io::stdout().lock();
    // The prompt is echoed with the first text, so a refused prompt prints nothing; the
    // first failed write (e.g. a closed pipe) is reported once decoding stops.
    let mut prompt = Some(args.prompt.as_str());
    let mut write_error = None;
    let mut emit = |text: &str| {
        if write_error.is_none() {
            let prompt = prompt.take().unwrap_or_default();
            write_error = write!(stdout, "{prompt}{text}")
                .and_then(|_| stdout.flush())
                .err();
        }
    };
    let start = Instant::now();
    let text = generate(
        &saved.model,
        &saved.state.params,
        &tokenizer,
        &args.prompt,
        &options,
        backend,
        &mut emit,
    )
    .map_err(|e| e.to_string())?;
    emit("\n");
    if let Some(e) = write_error {
        return Err(format!("writing to stdout: {e}"));
    }
    eprintln!(
        "[{} characters in {:.2} s from {} (step {})]",
        text.chars().count(),
        start.elapsed().as_secs_f64(),
        saved.dir.display(),
        saved.state.step
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_for(dir: &Path) -> String {
        load_run(dir, None).err().expect("loading must fail")
    }

    #[test]
    fn a_run_without_checkpoint_says_to_train_first() {
        let root = std::env::temp_dir().join(format!("luoshu-generate-{}", std::process::id()));
        let run = root.join("demo");
        let err = error_for(&run);
        assert!(err.contains(&run.display().to_string()), "{err}");
        assert!(err.contains("luoshu train --name demo"), "{err}");
        std::fs::create_dir_all(&run).unwrap();
        let err = error_for(&run);
        assert!(
            err.contains(&run.join("checkpoint").display().to_string()),
            "{err}"
        );
        assert!(err.contains("luoshu train --name demo"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
