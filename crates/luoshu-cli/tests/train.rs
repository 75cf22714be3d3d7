//! `luoshu train` end to end on a tiny model: the run directory is complete, a resumed run
//! is bit-identical to an uninterrupted one, and bad input fails with a clear message.

mod common;

use common::{deterministic_metrics, temp_dir, train_command, write_config, write_corpus};
use std::path::Path;

fn succeed(cwd: &Path, args: &[&str]) -> String {
    common::succeed(train_command(cwd).args(args))
}

fn fail(cwd: &Path, args: &[&str]) -> String {
    common::fail(train_command(cwd).args(args))
}

#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let root = temp_dir("resume");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let (whole, split) = (root.join("whole"), root.join("split"));
    std::fs::create_dir_all(&whole).unwrap();
    std::fs::create_dir_all(&split).unwrap();

    let summary = succeed(&whole, &["--config", config]);
    assert!(summary.contains("train loss"), "{summary}");
    let whole_run = whole.join("runs/tiny");
    for file in ["config.toml", "tokenizer.json", "metrics.csv", "loss.png"] {
        assert!(whole_run.join(file).is_file(), "{file} missing");
    }

    succeed(&split, &["--config", config, "--steps", "2"]);
    let split_run = split.join("runs/tiny");
    let err = fail(&split, &["--config", config]);
    assert!(err.contains("--resume"), "{err}");
    succeed(&split, &["--resume", "--steps", "4", "--name", "tiny"]);

    assert_eq!(
        deterministic_metrics(&whole_run),
        deterministic_metrics(&split_run)
    );
    assert_eq!(
        deterministic_metrics(&whole_run).len(),
        5,
        "header and 4 steps"
    );
    for file in ["model.safetensors", "optimizer.safetensors", "state.toml"] {
        let a = std::fs::read(whole_run.join("checkpoint/step-4").join(file)).unwrap();
        let b = std::fs::read(split_run.join("checkpoint/step-4").join(file)).unwrap();
        assert!(a == b, "{file} differs after resuming");
    }

    // A checkpoint written for another model is refused, naming both shapes.
    let other = write_config(&root, &data, "other.toml", 64);
    let err = fail(
        &split,
        &[
            "--resume",
            "--steps",
            "6",
            "--config",
            other.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("d_model: 32") && err.contains("d_model: 64"),
        "{err}"
    );

    // A damaged latest checkpoint is reported; the older one is still there and loads.
    let damaged = split_run.join("checkpoint/step-4/optimizer.safetensors");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() - 9]).unwrap();
    let err = fail(&split, &["--resume", "--steps", "6", "--name", "tiny"]);
    assert!(
        err.contains("corrupt or truncated") && err.contains("step-2"),
        "{err}"
    );
    std::fs::remove_dir_all(split_run.join("checkpoint/step-4")).unwrap();
    std::fs::write(split_run.join("checkpoint/latest"), "step-2\n").unwrap();
    let resumed = succeed(&split, &["--resume", "--steps", "3", "--name", "tiny"]);
    assert!(resumed.contains("step 2"), "{resumed}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn missing_or_empty_data_is_a_clear_error() {
    let root = temp_dir("nodata");
    let err = fail(&root, &["--data", "/nonexistent/luoshu-corpus"]);
    assert!(
        err.contains("does not exist") && err.contains("--data"),
        "{err}"
    );
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = fail(&root, &["--data", empty.to_str().unwrap()]);
    assert!(err.contains("no training text found"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn config_typos_and_impossible_values_are_rejected() {
    let root = temp_dir("badconfig");
    let typo = root.join("typo.toml");
    std::fs::write(&typo, "stpes = 3\n").unwrap();
    let err = fail(&root, &["--config", typo.to_str().unwrap()]);
    assert!(
        err.contains("unknown key `stpes`, did you mean `steps`?"),
        "{err}"
    );

    let heads = root.join("heads.toml");
    std::fs::write(
        &heads,
        "[model]\nd_model = 100\nn_heads = 3\nn_kv_heads = 3\n",
    )
    .unwrap();
    let err = fail(&root, &["--config", heads.to_str().unwrap()]);
    assert!(
        err.contains("n_heads (3) must divide d_model (100)"),
        "{err}"
    );

    let edges = root.join("edges.toml");
    std::fs::write(&edges, "[data]\nmax_len = 128\nbucket_edges = [64, 256]\n").unwrap();
    let err = fail(&root, &["--config", edges.to_str().unwrap()]);
    assert!(err.contains("last bucket edge must equal max_len"), "{err}");

    let err = fail(&root, &["--model", "llama-99b"]);
    assert!(err.contains("unknown model preset `llama-99b`"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn printed_default_config_is_complete_and_loads_back() {
    let root = temp_dir("print");
    let printed = succeed(&root, &["--print-config"]);
    for key in [
        "steps",
        "eval_every",
        "[data]",
        "global_batch_tokens",
        "[train.schedule]",
    ] {
        assert!(printed.contains(key), "{key} missing from:\n{printed}");
    }
    let path = root.join("printed.toml");
    std::fs::write(&path, &printed).unwrap();
    let again = succeed(
        &root,
        &["--config", path.to_str().unwrap(), "--print-config"],
    );
    assert_eq!(printed, again);
    std::fs::remove_dir_all(root).unwrap();
}

/// The training losses of `metrics.csv`.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_data_parallel_run_resumes_under_tensor_parallelism() {
    let root = temp_dir("strategies");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let (whole, switched) = (root.join("whole"), root.join("switched"));
    std::fs::create_dir_all(&whole).unwrap();
    std::fs::create_dir_all(&switched).unwrap();

    let summary = succeed(&whole, &["--config", config, "--devices", "2"]);
    assert!(summary.contains("on 2 devices (dp2"), "{summary}");
    succeed(
        &switched,
        &["--config", config, "--strategy", "dp2", "--steps", "2"],
    );
    let resumed = succeed(
        &switched,
        &[
            "--resume",
            "--steps",
            "4",
            "--name",
            "tiny",
            "--strategy",
            "tp2",
        ],
    );
    assert!(resumed.contains("under tp2"), "{resumed}");
    let (a, b) = (
        losses(&whole.join("runs/tiny")),
        losses(&switched.join("runs/tiny")),
    );
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "losses {a:?} vs {b:?}");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn impossible_strategies_are_rejected() {
    let root = temp_dir("bad-strategy");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let err = fail(&root, &["--config", config, "--strategy", "dp2tq2"]);
    assert!(err.contains("unknown parallelism `tq`"), "{err}");
    let err = fail(
        &root,
        &["--config", config, "--strategy", "dp2", "--devices", "4"],
    );
    assert!(err.contains("needs 2 ranks"), "{err}");
    let err = fail(&root, &["--config", config, "--strategy", "tp3"]);
    assert!(err.contains("must divide n_heads"), "{err}");
    let err = fail(&root, &["--config", config, "--strategy", "pp2"]);
    assert!(err.contains("2 pipeline stages for 1 layers"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_single_file_holds_out_its_tail_for_validation() {
    let root = temp_dir("one-file");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let files: Vec<String> = (0..12)
        .map(|f| std::fs::read_to_string(data.join(format!("file{f}.txt"))).unwrap())
        .collect();

    let book = root.join("book.txt");
    std::fs::write(&book, files.concat()).unwrap();
    let out = succeed(
        &root,
        &[
            "--config",
            config,
            "--data",
            book.to_str().unwrap(),
            "--steps",
            "2",
        ],
    );
    assert!(
        out.contains("a single file and one long document: validation is its last"),
        "{out}"
    );
    assert!(out.contains("validation loss"), "{out}");

    let stories = root.join("stories.txt");
    std::fs::write(&stories, files.join("<|endoftext|>\n")).unwrap();
    let out = succeed(
        &root,
        &[
            "--config",
            config,
            "--data",
            stories.to_str().unwrap(),
            "--steps",
            "2",
            "--name",
            "stories",
        ],
    );
    assert!(
        out.contains("a single file: validation is its last 4 of 12 documents"),
        "{out}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn resuming_a_run_without_a_checkpoint_says_how_to_start_it() {
    let root = temp_dir("no-checkpoint");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);

    let err = fail(&root, &["--resume", "--name", "never"]);
    assert!(
        err.contains("there is no run `never` to resume")
            && err.contains("luoshu train --name never` (without --resume)")
            && !err.contains("os error"),
        "{err}"
    );

    // A run killed before its first checkpoint: its config is there, its checkpoint not.
    succeed(
        &root,
        &["--config", config.to_str().unwrap(), "--steps", "1"],
    );
    std::fs::remove_dir_all(root.join("runs/tiny/checkpoint")).unwrap();
    let err = fail(&root, &["--resume", "--name", "tiny"]);
    assert!(
        err.contains("the run `tiny` has no checkpoint yet")
            && err.contains("without --resume and with `--config runs/tiny/config.toml`")
            && !err.contains("os error"),
        "{err}"
    );
    succeed(
        &root,
        &["--config", "runs/tiny/config.toml", "--steps", "1"],
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_model_that_cannot_fit_is_refused_before_anything_is_allocated() {
    let root = temp_dir("too-big");
    let data = write_corpus(&root);
    let err = fail(
        &root,
        &["--model", "llama-32b", "--data", data.to_str().unwrap()],
    );
    assert!(
        err.contains("the model does not fit: one rank needs about")
            && err.contains("AdamW moments")
            && err.contains("available memory")
            && err.contains("To fit:")
            && err.contains("more tensor/pipeline-parallel ranks"),
        "{err}"
    );
    assert!(
        !root.join("runs").exists() && !root.join("cache").exists(),
        "refused before the run directory, the tokenizer or the cache were touched"
    );

    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let err = fail(
        &root,
        &[
            "--config",
            config,
            "--strategy",
            "dp2",
            "--memory-per-rank",
            "64K",
        ],
    );
    assert!(
        err.contains("--memory-per-rank is 64.00 KiB per rank")
            && err.contains("ZeRO-1 (`--strategy dp2zero1`)"),
        "{err}"
    );
    succeed(
        &root,
        &[
            "--config",
            config,
            "--steps",
            "1",
            "--memory-per-rank",
            "1G",
        ],
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn hot_switching_resumes_bit_identically_and_under_a_static_strategy() {
    let root = temp_dir("hot");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let (whole, split, static_resume) = (root.join("whole"), root.join("split"), root.join("st"));
    for dir in [&whole, &split, &static_resume] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let hot = ["--config", config, "--hot-switch", "16:dp2,32:tp2"];

    let summary = succeed(&whole, &hot);
    assert!(summary.contains("time.png"), "{summary}");
    let whole_run = whole.join("runs/tiny");
    let metrics = std::fs::read_to_string(whole_run.join("metrics.csv")).unwrap();
    assert!(
        metrics.lines().next().unwrap().ends_with("phases"),
        "{metrics}"
    );
    assert!(metrics.contains("tp2 "), "phases are logged: {metrics}");
    assert!(whole_run.join("time.png").is_file());
    let saved = std::fs::read_to_string(whole_run.join("config.toml")).unwrap();
    assert!(saved.contains("[hot_switch]"), "{saved}");

    // Two steps, then resume (the saved config keeps hot switching): bit-identical.
    succeed(&split, &[&hot[..], &["--steps", "2"]].concat());
    succeed(&split, &["--resume", "--steps", "4", "--name", "tiny"]);
    let split_run = split.join("runs/tiny");
    assert_eq!(
        deterministic_metrics(&whole_run),
        deterministic_metrics(&split_run)
    );
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let a = std::fs::read(whole_run.join("checkpoint/step-4").join(file)).unwrap();
        let b = std::fs::read(split_run.join("checkpoint/step-4").join(file)).unwrap();
        assert!(a == b, "{file} differs after resuming a hot-switching run");
    }

    // The canonical checkpoint resumes under a static strategy too.
    succeed(&static_resume, &[&hot[..], &["--steps", "2"]].concat());
    let resumed = succeed(
        &static_resume,
        &[
            "--resume",
            "--steps",
            "3",
            "--name",
            "tiny",
            "--strategy",
            "dp2",
        ],
    );
    assert!(resumed.contains("under dp2"), "{resumed}");

    // A bucket longer than the last edge says which edge to add.
    let err = fail(
        &root,
        &["--config", config, "--hot-switch", "16:dp2", "--name", "x"],
    );
    assert!(err.contains("32:dp2"), "{err}");
}

#[test]
fn auto_predicts_each_bucket_saves_the_choice_and_reuses_it_and_probe_measures() {
    let root = temp_dir("auto");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let auto = ["--config", config, "--hot-switch", "auto", "--devices", "2"];

    let first = succeed(&root, &[&auto[..], &["--steps", "2"]].concat());
    // No saved calibration in this directory: the ranks calibrate at start-up.
    assert!(
        first.contains("cost model: calibrating this machine for 2 ranks"),
        "{first}"
    );
    // The one-layer model cannot be split into two pipeline stages; context parallelism
    // is a candidate.
    assert!(
        first.contains("predicting dp2, cp2, tp2 on 2 ranks with the cost model"),
        "{first}"
    );
    // The table: one line per bucket edge of the data, with the choice.
    for bucket in ["≤16", "≤32"] {
        assert!(first.contains(bucket), "{first}");
    }
    let run = root.join("runs/tiny");
    let saved = std::fs::read_to_string(run.join("strategy.toml")).unwrap();
    for key in [
        "buckets = ",
        "update_strategy = ",
        "chosen_by = \"cost model\"",
        "[[timings]]",
        "devices = 2",
    ] {
        assert!(saved.contains(key), "{saved}");
    }
    // The saved config keeps asking for the automatic choice.
    let config_saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config_saved.contains("buckets = \"auto\""),
        "{config_saved}"
    );

    // Resuming reuses the choice instead of predicting again.
    let resumed = succeed(&root, &["--resume", "--steps", "3", "--name", "tiny"]);
    assert!(!resumed.contains("predicting"), "{resumed}");
    assert!(
        resumed.contains("chosen earlier by the cost model"),
        "{resumed}"
    );

    // The measured probe chooses from real runs of each bucket, on one rank too.
    let probed = succeed(
        &root,
        &[
            "--config",
            config,
            "--hot-switch",
            "probe",
            "--devices",
            "1",
            "--steps",
            "1",
            "--name",
            "one",
        ],
    );
    assert!(probed.contains("probing single on 1 rank "), "{probed}");
    assert!(
        probed.contains("single is the fastest for every bucket"),
        "{probed}"
    );
    let saved = std::fs::read_to_string(root.join("runs/one/strategy.toml")).unwrap();
    assert!(saved.contains("chosen_by = \"probe\""), "{saved}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn the_reference_backend_trains_the_same_model_and_unknown_backends_are_named() {
    let root = temp_dir("backend");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let steps = ["--config", config, "--steps", "2"];
    let cpu = succeed(&root, &[&steps[..], &["--name", "cpu"]].concat());
    assert!(cpu.contains("cpu backend"), "{cpu}");
    let reference = succeed(
        &root,
        &[&steps[..], &["--name", "ref", "--backend", "reference"]].concat(),
    );
    assert!(reference.contains("reference backend"), "{reference}");
    // Same losses to the printed precision: the kernels compute the same model.
    let loss = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("done:"))
            .and_then(|l| l.split("train loss ").nth(1))
            .map(|s| s.split(',').next().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(!loss(&cpu).is_empty());
    assert_eq!(loss(&cpu), loss(&reference));
    let err = fail(&root, &[&steps[..], &["--backend", "gpu"]].concat());
    assert!(
        err.contains("unknown backend `gpu`") && err.contains("reference"),
        "{err}"
    );
    std::fs::remove_dir_all(root).unwrap();
}
