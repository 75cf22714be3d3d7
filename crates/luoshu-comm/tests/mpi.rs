//! The MPI backend under `mpirun`: runs the `mpi_check` example (which `cargo test` builds
//! next to this test) on several process counts and checks every rank's verdict.
//!
//! The test harness runs tests on threads, and MPI programs need their own processes, so
//! the checks themselves live in `examples/mpi_check.rs`; this file only launches them.
//! Needs `mpirun` on `PATH` (feature `mpi` cannot build without an MPI installation).
#![cfg(feature = "mpi")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// mpirun jobs run one at a time: several at once on a small machine make the
/// timeout-based checks slow for no benefit.
static MPIRUN: Mutex<()> = Mutex::new(());

/// `target/<profile>/examples/mpi_check`, next to this test's `deps/` directory.
fn mpi_check_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let binary = profile_dir.join("examples").join("mpi_check");
    assert!(
        binary.exists(),
        "{} is missing; build it with `cargo test -p luoshu-comm --features mpi` \
         (which builds examples)",
        binary.display()
    );
    binary
}

/// Runs `mpi_check args` on `ranks` processes and returns every rank's stdout line,
/// sorted; panics with the whole output if mpirun fails.
fn mpirun(ranks: usize, args: &[&str]) -> Vec<String> {
    let (status, lines, stderr) = mpirun_with(ranks, &[], args);
    assert!(
        status.success(),
        "mpirun -n {ranks} mpi_check {args:?} failed ({status}):\n{}\n{stderr}",
        lines.join("\n")
    );
    lines
}

/// Runs `mpirun -n ranks options mpi_check args`; returns its status, the ranks' stdout
/// lines (sorted) and its stderr.
fn mpirun_with(
    ranks: usize,
    options: &[&str],
    args: &[&str],
) -> (std::process::ExitStatus, Vec<String>, String) {
    let _one_at_a_time = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::new("mpirun")
        .args(["-n", &ranks.to_string()])
        .args(options)
        .arg(mpi_check_binary())
        .args(args)
        // Containers run as root on few cores, often without ssh: allow root, more ranks
        // than cores, and launch on this node only.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_plm", "isolated")
        .output()
        .expect("mpirun must be on PATH to test the mpi feature (apt-get install openmpi-bin)");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("mpi_check:"))
        .map(str::to_string)
        .collect();
    lines.sort();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, lines, stderr)
}

#[test]
fn conformance_suite_passes_on_one_to_four_processes() {
    for ranks in 1..=4 {
        let lines = mpirun(ranks, &["--timeout-secs", "2"]);
        let expected: Vec<String> = (0..ranks)
            .map(|r| format!("mpi_check: all 5 checks passed on rank {r} of {ranks}"))
            .collect();
        assert_eq!(lines, expected, "on {ranks} processes");
    }
}

#[test]
fn every_other_rank_names_the_rank_that_skipped_a_collective() {
    let lines = mpirun(4, &["--timeout-secs", "1", "--missing-rank", "2"]);
    let expected = [
        "mpi_check: all 2 checks passed (timeout named [2]) on rank 0 of 4",
        "mpi_check: all 2 checks passed (timeout named [2]) on rank 1 of 4",
        "mpi_check: all 2 checks passed (timeout named [2]) on rank 3 of 4",
        "mpi_check: skipped the all_reduce as asked on rank 2 of 4",
    ];
    assert_eq!(lines, expected);
}

/// Rank 1 crashes (SIGABRT, no MPI_Finalize) after three all_reduces; every survivor's next
/// all_reduce times out naming it. `--enable-recovery` keeps OpenMPI's mpirun from killing
/// the survivors when the rank dies; mpirun then exits 0 whatever the ranks did, so the
/// verdict is the survivors' lines (the dead rank prints none).
#[test]
fn every_other_rank_names_a_rank_that_died_mid_run() {
    let (_, lines, stderr) = mpirun_with(
        4,
        &["--enable-recovery"],
        &["--timeout-secs", "1", "--dying-rank", "1"],
    );
    let expected: Vec<String> = [0, 2, 3]
        .iter()
        .map(|r| {
            format!(
                "mpi_check: all 2 checks passed (timeout named [1]) after 3 all_reduces \
                 on rank {r} of 4"
            )
        })
        .collect();
    assert_eq!(lines, expected, "{stderr}");
}
