//! One training per run directory. `runs/<name>/lock` holds the PID of the training that
//! uses the directory, under an exclusive OS file lock: the OS releases the lock when that
//! process ends, however it ends, so a PID left in an unlocked file is from a dead run.

use crate::error::Error;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

const LOCK_FILE: &str = "lock";

/// Holds the run directory until dropped (then the file is emptied and unlocked).
pub struct RunLock {
    file: File,
}

/// The command line of process `pid`, when the system shows it.
fn command_line(pid: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

impl RunLock {
    /// Lock `run_dir` (creating it) for this process, or explain which training holds it.
    /// A PID left by a training that died is taken over with a warning through `warn`.
    pub fn acquire(run_dir: &Path, warn: &mut dyn FnMut(String)) -> Result<RunLock, Error> {
        std::fs::create_dir_all(run_dir).map_err(|source| Error::Io {
            path: run_dir.to_path_buf(),
            source,
        })?;
        let path = run_dir.join(LOCK_FILE);
        let io_error = |source: std::io::Error| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let mut holder = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                file.read_to_string(&mut holder).map_err(io_error)?;
                let pid = holder.trim();
                return Err(Error::RunInUse {
                    run_dir: run_dir.to_path_buf(),
                    pid: pid.to_string(),
                    command: command_line(pid),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.read_to_string(&mut holder).map_err(io_error)?;
        if !holder.trim().is_empty() {
            warn(format!(
                "taking over {}: it names pid {}, a training that ended without \
                 releasing it (killed or crashed)",
                path.display(),
                holder.trim()
            ));
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        writeln!(file, "{}", std::process::id()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // An empty file tells the next training this one ended cleanly; closing the file
        // releases the OS lock. Failing to empty it only costs the next run a warning.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_dead_holder_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("luoshu-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut warnings = Vec::new();
        let first = RunLock::acquire(&dir, &mut |w| warnings.push(w)).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap().trim(),
            pid
        );
        // A second open file description conflicts even within one process.
        let err = RunLock::acquire(&dir, &mut |w| warnings.push(w))
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::RunInUse { pid: holder, .. } if *holder == pid),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("in use by another training (pid {pid}")),
            "{err}"
        );
        drop(first);
        assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), "");
        let again = RunLock::acquire(&dir, &mut |w| warnings.push(w)).unwrap();
        assert!(
            warnings.is_empty(),
            "a clean release leaves no warning: {warnings:?}"
        );
        drop(again);

        std::fs::write(dir.join(LOCK_FILE), "4242424\n").unwrap();
        let _taken = RunLock::acquire(&dir, &mut |w| warnings.push(w)).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("names pid 4242424"), "{warnings:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
