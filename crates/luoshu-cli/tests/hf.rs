//! `luoshu export` and `luoshu import` end to end on a tiny run: the round trip gives a
//! byte-identical checkpoint that generates the same text and logits, and fine-tunes with
//! `luoshu train --resume`; misuse fails with a clear message.

mod common;

use common::luoshu_command;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luoshu-cli-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Small text files to train on.
fn write_corpus(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in 0..8usize {
        let text: String = (0..30 + 5 * f)
            .map(|i| format!("let x{} = y{} + {};\n", (f + i) % 9, (i * 3) % 7, i % 10))
            .collect();
        std::fs::write(data.join(format!("file{f}.rs")), text).unwrap();
    }
    data
}

/// Grouped-query attention and an untied head, trained for two steps.
fn write_config(dir: &Path, data: &Path) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
steps = 2
eval_every = 2
checkpoint_every = 2
seed = 3

[model]
vocab_size = 320
d_model = 32
n_layers = 2
n_heads = 4
n_kv_heads = 2
d_ff = 48
max_seq_len = 32
tie_embeddings = false

[data]
path = "{}"
val_fraction = 0.3
vocab_size = 300
max_len = 32
bucket_edges = [16, 32]
tokens_per_micro_batch = 64
global_batch_tokens = 96
"#,
        data.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn succeed(cwd: &Path, args: &[&str]) -> String {
    common::succeed(luoshu_command(cwd).args(args))
}

fn fail(cwd: &Path, args: &[&str]) -> String {
    common::fail(luoshu_command(cwd).args(args))
}

#[test]
fn export_import_round_trip_generates_the_same_and_fine_tunes() {
    let dir = temp_dir("round-trip");
    let data = write_corpus(&dir);
    let config = write_config(&dir, &data);
    succeed(&dir, &["train", "--config", config.to_str().unwrap()]);

    succeed(&dir, &["export", "--run", "runs/tiny", "--to", "hf"]);
    for file in [
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.join("hf").join(file).is_file(), "{file}");
    }
    let err = fail(&dir, &["export", "--run", "runs/tiny", "--to", "hf"]);
    assert!(err.contains("is not empty"), "{err}");
    let err = fail(
        &dir,
        &["export", "--run", "runs/tiny", "--step", "7", "--to", "x"],
    );
    assert!(err.contains("no checkpoint of step 7"), "{err}");

    succeed(&dir, &["import", "--from", "hf", "--name", "back"]);
    let original = std::fs::read(dir.join("runs/tiny/checkpoint/step-2/model.safetensors"));
    let imported = std::fs::read(dir.join("runs/back/checkpoint/step-0/model.safetensors"));
    assert!(
        original.unwrap() == imported.unwrap(),
        "the imported checkpoint must hold exactly the exported parameters"
    );
    let err = fail(&dir, &["import", "--from", "hf", "--name", "back"]);
    assert!(err.contains("already exists"), "{err}");

    let greedy = [
        "--prompt",
        "let x1",
        "--temperature",
        "0",
        "--max-new-tokens",
        "6",
    ];
    let text = |run: &str| {
        succeed(
            &dir,
            &[&["generate", "--run", run][..], &greedy[..]].concat(),
        )
    };
    assert_eq!(text("runs/back"), text("runs/tiny"));
    let logits = |run: &str| {
        let args = [
            "generate",
            "--run",
            run,
            "--prompt",
            "let x1 =",
            "--print-logits",
        ];
        succeed(&dir, &args)
    };
    let json: serde_json::Value = serde_json::from_str(&logits("runs/back")).unwrap();
    let (tokens, rows) = (
        json["tokens"].as_array().unwrap(),
        json["logits"].as_array(),
    );
    assert!(!tokens.is_empty());
    assert_eq!(rows.unwrap().len(), tokens.len());
    assert_eq!(rows.unwrap()[0].as_array().unwrap().len(), 320);
    assert_eq!(logits("runs/back"), logits("runs/tiny"));

    let data = data.to_str().unwrap();
    let tuned = ["train", "--name", "back", "--resume", "--steps", "1"];
    let out = succeed(
        &dir,
        &[&tuned[..], &["--data", data, "--strategy", "tp2"][..]].concat(),
    );
    assert!(
        out.contains("resuming from runs/back/checkpoint/step-0"),
        "{out}"
    );
    assert!(dir.join("runs/back/checkpoint/step-1").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn importing_a_directory_without_config_names_the_file() {
    let dir = temp_dir("no-config");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let err = fail(&dir, &["import", "--from", "empty", "--name", "x"]);
    assert!(err.contains("config.json"), "{err}");
    assert!(
        !dir.join("runs/x").exists(),
        "a failed import leaves no run behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
