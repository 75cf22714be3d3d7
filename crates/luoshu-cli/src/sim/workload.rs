//! What `plan` and `simulate` share: the hardware, the length distribution and the draw
//! of a global batch from it.

use super::lengths::observed_lengths;
use luoshu_model::Precision;
use luoshu_sim::Hardware;

#[derive(clap::Args)]
pub struct WorkloadArgs {
    /// Hardware preset (a800-node, h100-node) or a hardware TOML file.
    #[arg(long, default_value = "a800-node")]
    pub hardware: String,
    /// Sequences per global batch (one optimizer step).
    #[arg(long, default_value_t = 512)]
    pub global_batch: usize,
    /// Length distribution: a file of lengths (one per line), a corpus path tokenized by
    /// our tokenizer, or `default` (the Rust sources under the cargo registry).
    #[arg(long, default_value = "default")]
    pub lengths: String,
    /// Seed of the draw of the global batch from the distribution.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number formats of training: `bf16-mixed` (bf16 compute, f32 master weights) or
    /// `f32` (what a `luoshu sim calibrate` file of this machine describes).
    #[arg(long, default_value = "bf16-mixed", value_parser = parse_precision)]
    pub precision: Precision,
}

fn parse_precision(text: &str) -> Result<Precision, String> {
    match text {
        "f32" | "bf16-mixed" => toml::Value::String(text.into())
            .try_into()
            .map_err(|e| e.to_string()),
        _ => Err(format!("`{text}`: expected `bf16-mixed` or `f32`")),
    }
}

/// The hardware, the observed lengths and where they came from.
pub fn load(args: &WorkloadArgs) -> Result<(Hardware, Vec<usize>, String), String> {
    let hardware = Hardware::load(&args.hardware).map_err(|e| e.to_string())?;
    let (observed, source) = observed_lengths(&args.lengths)?;
    Ok((hardware, observed, source))
}
