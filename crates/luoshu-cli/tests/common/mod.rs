//! Helpers shared by the `luoshu train` end-to-end tests: a tiny corpus and configuration.

use std::path::{Path, PathBuf};

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

/// `luoshu train` run in `cwd`, its cache entries next to the test's files rather than in
/// the user's cache.
pub fn train_command(cwd: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_luoshu"));
    command
        .current_dir(cwd)
        .env("LUOSHU_CACHE_DIR", cwd.join("cache"))
        .arg("train");
    command
}
