//! `luoshu export`: a run's checkpoint as a Hugging Face model directory that
//! `transformers` loads without custom code.

use crate::generate::load_run;
use luoshu_train::hf::{self, HfDtype};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The run directory `luoshu train` or `luoshu import` wrote (runs/NAME).
    #[arg(long)]
    pub run: PathBuf,
    /// Export this step's checkpoint (default: the latest).
    #[arg(long)]
    pub step: Option<u64>,
    /// Write the model here (a new or empty directory).
    #[arg(long)]
    pub to: PathBuf,
    /// Dtype of the weights: f32 (exact) or bf16.
    #[arg(long, default_value_t = HfDtype::F32)]
    pub dtype: HfDtype,
}

pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
    let (saved, _, tokenizer_json) = load_run(&args.run, args.step)?;
    hf::export(
        &saved.model,
        &saved.state.params,
        &tokenizer_json,
        &args.to,
        args.dtype,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "exported {} (step {}, {} parameters, {}) to {}; load it with \
         transformers.AutoModelForCausalLM.from_pretrained(\"{}\")",
        saved.dir.display(),
        saved.state.step,
        saved.model.num_parameters(),
        args.dtype,
        args.to.display(),
        args.to.display()
    );
    Ok(ExitCode::SUCCESS)
}
