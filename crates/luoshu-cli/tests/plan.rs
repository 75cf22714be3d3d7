//! `luoshu plan` and `luoshu simulate` as a user runs them: a plan from a file of lengths
//! with candidates, choice and baselines; clear errors for misspelt hardware, bad length
//! files and partial nodes; a sweep writing its CSV and plot.

mod common;

use common::{fail, luoshu_command, succeed, temp_dir, write_corpus};
use std::path::Path;

/// A long-tailed file of lengths: many short documents, a few long ones.
fn write_lengths(dir: &Path) -> std::path::PathBuf {
    let lengths: Vec<String> = (1..=200usize)
        .map(|i| match i % 20 {
            0 => 30_000,
            1 => 9_000,
            _ => 100 + 37 * i,
        })
        .map(|l| l.to_string())
        .collect();
    let path = dir.join("lengths.txt");
    std::fs::write(&path, lengths.join("\n")).unwrap();
    path
}

/// The step seconds of a row of the final table.
fn seconds(stdout: &str, system: &str) -> f64 {
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with(system))
        .unwrap_or_else(|| panic!("no `{system}` row in {stdout}"));
    line[system.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn plans_buckets_against_the_static_baselines() {
    let dir = temp_dir("plan");
    let lengths = write_lengths(&dir);
    let stdout = succeed(luoshu_command(&dir).args([
        "plan",
        "--model",
        "llama-7b",
        "--hardware",
        "a800-node",
        "--devices",
        "8",
        "--context",
        "32768",
        "--global-batch",
        "128",
        "--lengths",
        lengths.to_str().unwrap(),
    ]));
    for expected in ["bucket (", "← chosen", "fits", "phases", "plan time"] {
        assert!(stdout.contains(expected), "missing {expected}: {stdout}");
    }
    let hot = seconds(&stdout, "hot switching");
    let packed = seconds(&stdout, "static packed");
    let padded = seconds(&stdout, "static padded");
    assert!(hot > 0.0 && hot <= packed * (1.0 + 1e-3), "{stdout}");
    // Padding 30 000 tokens of work onto every short document costs far more.
    assert!(padded > 2.0 * packed, "{stdout}");
}

#[test]
fn a_corpus_directory_is_tokenized_into_lengths() {
    let dir = temp_dir("plan-corpus");
    let corpus = write_corpus(&dir);
    let stdout = succeed(luoshu_command(&dir).args([
        "plan",
        "--model",
        "llama-7b",
        "--context",
        "4096",
        "--global-batch",
        "32",
        "--lengths",
        corpus.to_str().unwrap(),
    ]));
    // The 12 files of the test corpus, each one document.
    assert!(
        stdout.contains("12 documents, our BPE tokenizer"),
        "{stdout}"
    );
    assert!(stdout.contains("← chosen"), "{stdout}");
}

#[test]
fn bad_inputs_say_what_to_fix() {
    let dir = temp_dir("plan-errors");
    let lengths = write_lengths(&dir);
    let lengths = lengths.to_str().unwrap();
    let err = fail(luoshu_command(&dir).args(["plan", "--hardware", "a800", "--lengths", lengths]));
    assert!(err.contains("did you mean `a800-node`"), "{err}");
    let err = fail(luoshu_command(&dir).args(["plan", "--devices", "12", "--lengths", lengths]));
    assert!(err.contains("whole nodes"), "{err}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\ndevices_per_node = 8\n").unwrap();
    let err = fail(luoshu_command(&dir).args([
        "plan",
        "--hardware",
        bad.to_str().unwrap(),
        "--lengths",
        lengths,
    ]));
    assert!(err.contains("missing field `device`"), "{err}");
    let err = fail(luoshu_command(&dir).args(["plan", "--lengths", "no/such/file"]));
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn simulate_writes_a_csv_and_a_plot() {
    let dir = temp_dir("simulate");
    let lengths = write_lengths(&dir);
    succeed(luoshu_command(&dir).args([
        "simulate",
        "--models",
        "llama-7b",
        "--devices",
        "8,16",
        "--contexts",
        "8192",
        "--global-batch",
        "64",
        "--lengths",
        lengths.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]));
    let csv = std::fs::read_to_string(dir.join("out/simulate.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "model,devices,context,system,seconds,strategy");
    // Two configurations × three systems.
    assert_eq!(lines.len(), 1 + 2 * 3, "{csv}");
    assert!(
        lines[1].starts_with("llama-7b,8,8192,hot switching,"),
        "{csv}"
    );
    assert!(
        std::fs::metadata(dir.join("out/simulate.png"))
            .unwrap()
            .len()
            > 0
    );
}

#[test]
fn calibrate_writes_a_hardware_file_that_plans_with_it_and_refuses_bad_budgets() {
    let dir = temp_dir("calibrate");
    let out = dir.join("hardware/local.toml");
    let stdout = succeed(luoshu_command(&dir).args([
        "sim",
        "calibrate",
        "--devices",
        "2",
        "--seconds",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("GEMM mix"), "{stdout}");
    let text = std::fs::read_to_string(&out).unwrap();
    for key in [
        "devices_per_node = 2",
        "shared_compute = true",
        "[intra_node]",
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
    // The file is a hardware description `plan` reads (a path, not a preset name).
    let lengths = write_lengths(&dir);
    let plan = succeed(luoshu_command(&dir).args([
        "plan",
        "--model",
        "tiny",
        "--hardware",
        out.to_str().unwrap(),
        "--devices",
        "2",
        "--context",
        "256",
        "--global-batch",
        "16",
        "--lengths",
        lengths.to_str().unwrap(),
        "--precision",
        "f32",
    ]));
    assert!(plan.contains("hot switching"), "{plan}");
    let err = fail(luoshu_command(&dir).args(["sim", "calibrate", "--seconds", "0"]));
    assert!(err.contains("--seconds must be a positive number"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
