//! `LUOSHU_LOG`: diagnostics on stderr only when asked for.
mod common;

use common::{luoshu_command, temp_dir, ONE_STEP_BENCH_TRAIN};
use std::process::Command;

/// The standard error of a one-step `bench train` on the tiny model, which must succeed.
fn stderr_of(command: &mut Command) -> String {
    let out = command.args(ONE_STEP_BENCH_TRAIN).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{command:?} failed:\n{stderr}");
    stderr
}

#[test]
fn luoshu_log_debug_shows_pass_statistics_and_the_default_does_not() {
    let dir = temp_dir("logging");
    let debug = stderr_of(luoshu_command(&dir).env("LUOSHU_LOG", "debug"));
    let pass_line = debug
        .lines()
        .find(|l| l.contains("pass statistics"))
        .unwrap_or_else(|| panic!("no pass statistics line in:\n{debug}"));
    assert!(
        pass_line.starts_with("debug luoshu_graph::passes: ")
            && pass_line.contains("pass=\"fold\"")
            && pass_line.contains("nodes_before=")
            && pass_line.contains("nodes_after="),
        "{pass_line}"
    );
    assert!(debug.contains("compiled plan"), "{debug}");
    assert!(debug.contains("arena_bytes="), "{debug}");
    assert!(debug.contains("training step"), "{debug}");

    let quiet = stderr_of(luoshu_command(&dir).env_remove("LUOSHU_LOG"));
    assert!(
        !quiet.contains("pass statistics") && !quiet.contains("debug "),
        "without LUOSHU_LOG no debug event is shown:\n{quiet}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
