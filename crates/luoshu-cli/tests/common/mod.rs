//! Helpers shared by the end-to-end tests of the `luoshu` binary: a tiny corpus and
//! configuration, running the binary, and comparing runs.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `bench train` for one step of the tiny model without the PyTorch baseline: the quickest
/// real training step the binary runs.
pub const ONE_STEP_BENCH_TRAIN: [&str; 11] = [
    "bench",
    "train",
    "--config",
    "tiny",
    "--batch",
    "1",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--no-baseline",
];

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luoshu-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory of small text files with some repeated structure to learn.
pub fn write_corpus(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    for f in 0..12usize {
        let text: String = (0..20 + 7 * f)
            .map(|i| {
                format!(
                    "{} {} = {};\n",
                    words[(f + i) % 8],
                    words[(i * 3) % 8],
                    i % 10
                )
            })
            .collect();
        std::fs::write(data.join(format!("file{f}.txt")), text).unwrap();
    }
    data
}

/// A tiny run configuration reading `data`, with an extra `model` table line.
pub fn write_config(dir: &Path, data: &Path, file: &str, d_model: usize) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
steps = 4
eval_every = 2
checkpoint_every = 2
keep_checkpoints = 3
seed = 7
strategy = "single"

[model]
vocab_size = 320
d_model = {d_model}
n_layers = 1
n_heads = 2
n_kv_heads = 2
d_ff = 48
max_seq_len = 32

[data]
path = "{}"
val_fraction = 0.3
vocab_size = 300
max_len = 32
bucket_edges = [16, 32]
tokens_per_micro_batch = 64
global_batch_tokens = 96

[train.schedule]
peak_lr = 0.01
min_lr = 0.001
warmup_steps = 1
total_steps = 4
"#,
        data.display()
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// `luoshu` run in `cwd`, its cache entries next to the test's files rather than in the
/// user's cache.
pub fn luoshu_command(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_luoshu"));
    command
        .current_dir(cwd)
        .env("LUOSHU_CACHE_DIR", cwd.join("cache"));
    command
}

/// `luoshu train` run in `cwd` (see [`luoshu_command`]).
pub fn train_command(cwd: &Path) -> Command {
    let mut command = luoshu_command(cwd);
    command.arg("train");
    command
}

/// Runs `command`, which must succeed; its standard output.
pub fn succeed(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `command`, which must fail; its standard error.
pub fn fail(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "{command:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `metrics.csv` without the columns that depend on timing (tokens/s, seconds, phases).
pub fn deterministic_metrics(run_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            format!("{},{},{},{},{}", f[0], f[1], f[2], f[3], f[5])
        })
        .collect()
}
