//! `luoshu switch` as a user tries it: a plan report for a large model without allocating
//! it, an executed switch on threads ranks, and clear errors for strategies that do not
//! fit the model or the devices.

use std::process::{Command, Output};

fn luoshu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luoshu"))
        .args(args)
        .output()
        .expect("the luoshu binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plans_a_large_model_and_reports_the_lower_bound() {
    let out = luoshu(&[
        "switch",
        "--model",
        "llama-7b",
        "--devices",
        "8",
        "--ranks-per-node",
        "4",
        "--from",
        "dp2tp2pp2",
        "--to",
        "dp8",
        "--dtype",
        "bf16",
        "--what",
        "params+grads",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for expected in [
        "planner",
        "naive",
        "lower bound",
        "bytes other node",
        "max send",
    ] {
        assert!(stdout.contains(expected), "missing {expected}: {stdout}");
    }
    let row = |name: &str| -> Vec<String> {
        let line = stdout.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split("  ")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
            .collect()
    };
    // The plan receives exactly what ranks lack.
    assert_eq!(row("received"), row("lower bound"));
}

#[test]
fn executes_a_switch_on_threads_ranks_and_checks_it() {
    let out = luoshu(&[
        "switch",
        "--model",
        "tiny",
        "--devices",
        "4",
        "--from",
        "tp2pp2",
        "--to",
        "dp2tp2",
        "--what",
        "params+grads",
        "--execute",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("every destination piece checked"),
        "{stdout}"
    );
    assert!(stdout.contains("memcpy"), "{stdout}");
}

#[test]
fn strategies_that_do_not_fit_say_why() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--devices", "8", "--from", "tp4", "--to", "dp8"],
            "ranks but 8 devices",
        ),
        (
            &["--devices", "3", "--from", "tp3", "--to", "dp3"],
            "must divide",
        ),
        (
            &["--devices", "4", "--from", "dp2tp2", "--to", "dq4"],
            "unknown parallelism",
        ),
        (
            &[
                "--devices",
                "4",
                "--from",
                "dp4",
                "--to",
                "tp2pp2",
                "--what",
                "all",
            ],
            "params+grads",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["switch", "--model", "tiny"];
        all.extend_from_slice(args);
        let out = luoshu(&all);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
