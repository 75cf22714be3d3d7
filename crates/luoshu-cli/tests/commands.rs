//! `luoshu ops`, `luoshu generate` and `luoshu bench` as a user runs them: the binary, its
//! output and its refusals (quick configurations only).
mod common;

use common::{
    fail, luoshu_command, succeed, temp_dir, train_command, write_config, write_corpus,
    ONE_STEP_BENCH_TRAIN,
};
use std::path::Path;

fn luoshu(cwd: &Path, args: &[&str]) -> String {
    succeed(luoshu_command(cwd).args(args))
}

fn refused(cwd: &Path, args: &[&str]) -> String {
    fail(luoshu_command(cwd).args(args))
}

/// The table row of `op` in `luoshu ops` output.
fn row<'a>(table: &'a str, op: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(op))
        .unwrap_or_else(|| panic!("no row for {op} in:\n{table}"))
}

#[test]
fn ops_checks_an_op_on_either_backend_and_refuses_unknown_names() {
    let dir = temp_dir("ops");
    for backend in ["cpu", "reference"] {
        let table = luoshu(
            &dir,
            &["ops", "--quick", "--op", "gather", "--backend", backend],
        );
        let gather = row(&table, "gather");
        assert!(
            gather.contains("primitive") && gather.contains("pass"),
            "{table}"
        );
        assert_eq!(table.lines().filter(|l| l.contains("primitive")).count(), 1);
    }
    let softmax = luoshu(&dir, &["ops", "--quick", "--op", "softmax"]);
    assert!(row(&softmax, "softmax").contains("composite"), "{softmax}");
    let e = refused(&dir, &["ops", "--op", "no_such_op"]);
    assert!(e.contains("no op is called `no_such_op`"), "{e}");
    let e = refused(&dir, &["ops", "--backend", "gpu"]);
    assert!(
        e.contains("unknown backend `gpu`; available: cpu, reference"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn generate_continues_a_prompt_reproducibly_on_either_backend() {
    let dir = temp_dir("generate");
    let data = write_corpus(&dir);
    let config = write_config(&dir, &data, "run.toml", 32);
    succeed(train_command(&dir).args(["--config", config.to_str().unwrap()]));
    // `luoshu generate` of the run with `options` after the prompt and 12 new tokens.
    let generate = |prompt: &str, options: &[&str]| {
        let fixed = ["generate", "--run", "runs/tiny", "--max-new-tokens", "12"];
        luoshu(
            &dir,
            &[&fixed[..], &["--prompt", prompt][..], options].concat(),
        )
    };
    let sampled = || generate("alpha beta", &["--seed", "3", "--backend", "cpu"]);
    let text = sampled();
    assert!(
        text.starts_with("alpha beta"),
        "the prompt is echoed first: {text:?}"
    );
    assert!(
        text.len() > "alpha beta".len(),
        "nothing was generated: {text:?}"
    );
    assert_eq!(sampled(), text, "the same seed gives the same text");
    let greedy = |backend: &str| generate("gamma", &["--temperature", "0", "--backend", backend]);
    assert_eq!(
        greedy("reference"),
        greedy("cpu"),
        "greedy decoding picks the same tokens on both backends"
    );
    let e = refused(
        &dir,
        &["generate", "--run", "runs/tiny", "--backend", "gpu"],
    );
    assert!(
        e.contains("unknown backend `gpu`; available: cpu, reference"),
        "{e}"
    );
    let e = refused(&dir, &["generate", "--run", "runs/missing"]);
    assert!(
        e.contains("no run directory at runs/missing") && e.contains("luoshu train"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_train_measures_a_step_on_the_chosen_backend() {
    let dir = temp_dir("bench");
    for backend in ["cpu", "reference"] {
        let out = luoshu(
            &dir,
            &[&ONE_STEP_BENCH_TRAIN[..], &["--backend", backend][..]].concat(),
        );
        assert!(out.contains(&format!("{backend} backend")), "{out}");
        let luoshu_row = out
            .lines()
            .find(|l| l.starts_with("luoshu "))
            .unwrap_or_else(|| panic!("no luoshu row in:\n{out}"));
        let tokens_per_second: f64 = luoshu_row
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(tokens_per_second > 0.0, "{luoshu_row}");
    }
    let e = refused(
        &dir,
        &[&ONE_STEP_BENCH_TRAIN[..], &["--backend", "gpu"][..]].concat(),
    );
    assert!(
        e.contains("unknown backend `gpu`; available: cpu, reference"),
        "{e}"
    );
    let e = refused(&dir, &["bench", "gemm", "--backend", "reference"]);
    assert!(
        e.contains("`bench gemm` times the cpu backend's own kernels"),
        "{e}"
    );
    let e = refused(&dir, &["bench", "nothing"]);
    assert!(
        e.contains("unknown benchmark `nothing`; available: gemm, attention, train, hot"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
