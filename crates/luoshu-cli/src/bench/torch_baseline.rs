//! The PyTorch CPU eager baseline of `luoshu bench train`: runs `bench/train_torch.py` on
//! the same model, tokens and thread count and parses its `key value` report.

use super::measurement::TrainMeasurement;
use luoshu_model::ModelConfig;
use luoshu_train::TrainConfig;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// The PyTorch baseline script, at the repository root.
const TORCH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/train_torch.py");

const INSTALL_HINT: &str = "install Python 3 and PyTorch (`pip install torch`)";

/// What both systems run.
#[derive(Debug, Clone)]
pub struct TrainWorkload {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub warmup: usize,
    pub threads: usize,
    pub seed: u64,
}

impl TrainWorkload {
    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.seq
    }

    /// The script's command line: the model shape, run and optimizer settings.
    fn script_args(&self) -> Vec<String> {
        let (m, t) = (&self.model, &self.train);
        let o = &t.optimizer;
        let mut args: Vec<String> = [
            ("vocab-size", m.vocab_size.to_string()),
            ("d-model", m.d_model.to_string()),
            ("n-layers", m.n_layers.to_string()),
            ("n-heads", m.n_heads.to_string()),
            ("n-kv-heads", m.n_kv_heads.to_string()),
            ("d-ff", m.d_ff.to_string()),
            ("rope-theta", m.rope_theta.to_string()),
            ("norm-eps", m.norm_eps.to_string()),
            ("batch", self.batch.to_string()),
            ("seq", self.seq.to_string()),
            ("steps", self.steps.to_string()),
            ("warmup", self.warmup.to_string()),
            ("threads", self.threads.to_string()),
            ("seed", self.seed.to_string()),
            ("lr", t.schedule.peak_lr.to_string()),
            ("beta1", o.beta1.to_string()),
            ("beta2", o.beta2.to_string()),
            ("eps", o.eps.to_string()),
            ("weight-decay", o.weight_decay.to_string()),
            ("grad-clip", t.grad_clip.to_string()),
        ]
        .into_iter()
        .flat_map(|(name, value)| [format!("--{name}"), value])
        .collect();
        if m.tie_embeddings {
            args.push("--tie-embeddings".into());
        }
        args
    }
}

/// Run the script on `tokens` (`[batch, seq + 1]`, fed on stdin) and parse its report, or
/// say why there is no baseline (and how to install it).
pub fn measure(work: &TrainWorkload, tokens: &[i64]) -> Result<TrainMeasurement, String> {
    let threads = work.threads.to_string();
    let mut child = Command::new("python3")
        .arg(TORCH_SCRIPT)
        .args(work.script_args())
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run python3 ({e}); {INSTALL_HINT}"))?;
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    // Dropping the pipe after writing closes it, so the script sees the end of its input.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(&bytes));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{TORCH_SCRIPT}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if output.status.code() == Some(2) {
            ""
        } else {
            " (if PyTorch is missing, `pip install torch`)"
        };
        return Err(format!("{TORCH_SCRIPT} failed{hint}: {}", stderr.trim()));
    }
    if let Some(Err(e)) = written {
        return Err(format!("could not send the tokens to {TORCH_SCRIPT}: {e}"));
    }
    parse_report(&String::from_utf8_lossy(&output.stdout))
}

/// The measurement in the script's `key value` lines.
fn parse_report(stdout: &str) -> Result<TrainMeasurement, String> {
    let fields: HashMap<&str, &str> = stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let text = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("the PyTorch script's report lacks `{key}`: {stdout:?}"))
    };
    let number = |key: &str| -> Result<f64, String> {
        let value = text(key)?;
        value
            .trim()
            .parse()
            .map_err(|e| format!("bad `{key}` {value:?} from the PyTorch script: {e}"))
    };
    Ok(TrainMeasurement {
        system: format!("PyTorch {} eager", text("torch_version")?.trim()),
        step_seconds: number("step_ms")? / 1e3,
        best_step_seconds: number("best_step_ms")? / 1e3,
        tokens_per_second: number("tokens_per_s")?,
        peak_rss_mib: Some(number("peak_rss_mib")?),
        startup_rss_mib: Some(number("import_rss_mib")?),
        first_loss: number("first_loss")?,
        last_loss: number("last_loss")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_parses_and_a_missing_key_is_named() {
        let report = "torch_version 2.5.1\nthreads 2\nstep_ms 600.5\nbest_step_ms 550.0\ntokens_per_s 3410.2\n\
                      peak_rss_mib 812.0\nimport_rss_mib 400.5\nfirst_loss 8.3\nlast_loss 7.9\n";
        let m = parse_report(report).unwrap();
        assert_eq!(m.system, "PyTorch 2.5.1 eager");
        assert_eq!(m.step_seconds, 0.6005);
        assert_eq!(m.tokens_per_second, 3410.2);
        assert_eq!(m.peak_rss_mib, Some(812.0));
        assert_eq!(m.startup_rss_mib, Some(400.5));
        let err = parse_report("torch_version 2.5.1\n").unwrap_err();
        assert!(err.contains("step_ms"), "{err}");
    }

    #[test]
    fn script_args_carry_the_model_shape() {
        let work = TrainWorkload {
            model: ModelConfig::preset("bench-5m").unwrap(),
            train: TrainConfig::default(),
            batch: 8,
            seq: 256,
            steps: 10,
            warmup: 2,
            threads: 2,
            seed: 0,
        };
        let args = work.script_args().join(" ");
        for expected in [
            "--d-model 256",
            "--n-layers 4",
            "--vocab-size 4096",
            "--seq 256",
        ] {
            assert!(args.contains(expected), "{expected} missing from {args}");
        }
        assert!(
            !args.contains("--tie-embeddings"),
            "bench-5m has an untied head"
        );
    }
}
