//! Faults a training survives, end to end on a tiny model: a second training on the same
//! run directory, SIGTERM, SIGKILL at random moments, an unwritable checkpoint directory.
//! See docs/reliability.md.

mod common;

use common::{deterministic_metrics, temp_dir, train_command, write_config, write_corpus};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Start `luoshu train args` in `cwd` in the background.
fn spawn(cwd: &Path, args: &[&str]) -> Child {
    train_command(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    train_command(cwd).args(args).output().unwrap()
}

/// Rows of `metrics.csv` written so far (one per finished step).
fn steps_done(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.csv"))
        .map(|text| text.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Wait until `child` has finished `steps` steps (a guard against hangs, not a timing
/// assertion: a healthy tiny run takes well under a second per step).
fn wait_for_steps(child: &mut Child, run_dir: &Path, steps: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while steps_done(run_dir) < steps {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the training exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no progress on {}",
            run_dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_training_on_a_run_directory_is_refused_and_a_dead_ones_lock_taken_over() {
    let root = temp_dir("lock");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let run_dir = root.join("runs/tiny");

    let mut first = spawn(&root, &["--config", config, "--steps", "100000"]);
    wait_for_steps(&mut first, &run_dir, 1);
    let second = run(&root, &["--config", config, "--steps", "3"]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains(&format!(
            "runs/tiny is in use by another training (pid {}",
            first.id()
        )) && err.contains("--name"),
        "{err}"
    );

    first.kill().unwrap();
    let pid = first.id();
    first.wait().unwrap();
    let third = run(&root, &["--config", config, "--steps", "1", "--overwrite"]);
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{err}");
    assert!(
        err.contains("warning: taking over") && err.contains(&format!("names pid {pid}")),
        "{err}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn sigterm_finishes_the_step_writes_a_checkpoint_and_says_how_to_resume() {
    let root = temp_dir("sigterm");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let config = config.to_str().unwrap();
    let run_dir = root.join("runs/tiny");

    // Two ranks, so both must agree on the step to stop after.
    let mut child = spawn(
        &root,
        &["--config", config, "--steps", "100000", "--devices", "2"],
    );
    wait_for_steps(&mut child, &run_dir, 3);
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let (status, err) = stderr_of(child);
    assert_eq!(status.code(), Some(128 + 15), "{err}");
    let step = steps_done(&run_dir);
    assert!(
        err.contains(&format!("stopped by SIGTERM after step {step}"))
            && err.contains("Resume with `luoshu train --resume --name tiny`"),
        "{err}"
    );
    let latest = std::fs::read_to_string(run_dir.join("checkpoint/latest")).unwrap();
    assert_eq!(latest.trim(), format!("step-{step}"));

    let next = (step + 1).to_string();
    let resumed = run(&root, &["--resume", "--name", "tiny", "--steps", &next]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(steps_done(&run_dir), step + 1);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_checkpoint_that_cannot_be_written_leaves_the_previous_one_intact() {
    let root = temp_dir("disk-full");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let run_dir = root.join("runs/tiny");
    // Writes 1-4 are step 2's model, optimizer, state and `latest`; the 6th, step 4's
    // optimizer file, fails halfway as on a full disk.
    let out = train_command(&root)
        .args(["--config", config.to_str().unwrap()])
        .env("LUOSHU_FAULT_CHECKPOINT_WRITE", "6")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("could not write the checkpoint of step 4")
            && err.contains("no space left on device")
            && err.contains("the previous checkpoint, step-2, is intact")
            && err.contains("`luoshu train --resume --name tiny`"),
        "{err}"
    );
    let checkpoints = run_dir.join("checkpoint");
    let latest = std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    assert_eq!(latest.trim(), "step-2");
    assert!(!checkpoints.join(".tmp-step-4").exists() && !checkpoints.join("step-4").exists());

    let resumed = run(&root, &["--resume", "--name", "tiny"]);
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(out.contains("(step 2)"), "{out}");
    assert!(checkpoints.join("step-4").is_dir());
    std::fs::remove_dir_all(root).unwrap();
}

/// SplitMix64: the test's own seeded random numbers.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn sigkill_at_seeded_random_moments_then_resume_is_bit_identical_to_an_uninterrupted_run() {
    const STEPS: usize = 8;
    let root = temp_dir("sigkill");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    // A checkpoint every step, so many kills land in the middle of writing one.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("checkpoint_every = 2", "checkpoint_every = 1"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let steps = STEPS.to_string();
    let args = ["--config", config, "--steps", &steps];
    let (whole, killed) = (root.join("whole"), root.join("killed"));
    for dir in [&whole, &killed] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let out = run(&whole, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run_dir = killed.join("runs/tiny");
    let mut seed = 15u64;
    let (mut kills, mut restarts) = (0, 0);
    loop {
        // A kill that lands after the last checkpoint leaves a finished run: nothing to
        // resume (`--resume` would rightly refuse a run already at its last step).
        let latest = std::fs::read_to_string(run_dir.join("checkpoint/latest")).unwrap_or_default();
        if latest.trim() == format!("step-{STEPS}") {
            if kills >= 3 || restarts == 10 {
                break;
            }
            // On a fast machine the run can finish before three kills land: start over.
            std::fs::remove_dir_all(&run_dir).unwrap();
            (kills, restarts) = (0, restarts + 1);
            continue;
        }
        let resuming = run_dir.join("checkpoint/latest").exists();
        let mut command = args.to_vec();
        if resuming {
            command.push("--resume");
        }
        let mut child = spawn(&killed, &command);
        if kills < 5 {
            // Kill once 0-2 more steps are done, 0-30 ms later: during start-up, a step,
            // or a checkpoint.
            let target = (steps_done(&run_dir) + (next_random(&mut seed) % 3) as usize).min(STEPS);
            let deadline = Instant::now() + Duration::from_secs(300);
            while steps_done(&run_dir) < target && child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "no progress");
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 30));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let (status, err) = stderr_of(child);
        assert!(status.success(), "resumed run failed: {err}");
    }
    assert!(kills >= 3, "only {kills} kills landed");

    let whole_run = whole.join("runs/tiny");
    assert_eq!(
        deterministic_metrics(&whole_run),
        deterministic_metrics(&run_dir)
    );
    let last = format!("checkpoint/step-{STEPS}");
    for file in ["model.safetensors", "optimizer.safetensors", "state.toml"] {
        let a = std::fs::read(whole_run.join(&last).join(file)).unwrap();
        let b = std::fs::read(run_dir.join(&last).join(file)).unwrap();
        assert!(a == b, "{file} differs after the kills");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn damaged_run_files_are_detected_and_the_message_says_how_to_fix_them() {
    let root = temp_dir("damaged");
    let data = write_corpus(&root);
    let config = write_config(&root, &data, "run.toml", 32);
    let run_dir = root.join("runs/tiny");
    let out = run(
        &root,
        &["--config", config.to_str().unwrap(), "--steps", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resume = ["--resume", "--name", "tiny", "--steps", "3"];

    // Each file is damaged, the resume refused with the fix, then the file restored.
    let cases = [
        (
            "tokenizer.json",
            "restore",
            "--overwrite (which trains a new one)",
        ),
        ("config.toml", "line 1", "resume with --config FILE"),
        (
            "checkpoint/step-2/state.toml",
            "unreadable",
            "resume from an older checkpoint",
        ),
    ];
    for (file, what, fix) in cases {
        let path = run_dir.join(file);
        let original = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"{ version = \"from elsewhere\" \x01").unwrap();
        let out = run(&root, &resume);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: damage not detected");
        assert!(err.contains(what) && err.contains(fix), "{file}: {err}");
        std::fs::write(&path, original).unwrap();
    }

    // A token cache entry from another format version is rebuilt with a warning.
    let tokens = std::fs::read_dir(root.join("cache/tokens")).unwrap();
    let entry = tokens.map(|e| e.unwrap().path()).next().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[8] = 99; // the version follows the 8-byte magic
    std::fs::write(&entry, bytes).unwrap();
    let out = run(&root, &resume);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains("is unusable (format version 99, this luoshu reads")
            && log.contains("rebuilding the tokens"),
        "{log}"
    );
    std::fs::remove_dir_all(root).unwrap();
}
