//! The CLI's errors. The failures a user meets around a run directory are typed, with
//! their context as fields; the rest of the CLI still words its failures as text
//! ([`Error::Message`], built with [`crate::error_text::text`] or `format!`).

use std::path::PathBuf;

/// Why a command failed; the message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another live training holds the run directory's lock.
    #[error(
        "{} is in use by another training (pid {pid}{}); wait for it to finish or stop it, \
         or pass --name to train into another directory",
        .run_dir.display(),
        .command.as_deref().map(|c| format!(", running `{c}`")).unwrap_or_default()
    )]
    RunInUse {
        /// The run directory.
        run_dir: PathBuf,
        /// The PID the lock file names.
        pid: String,
        /// That process's command line, when the system shows it.
        command: Option<String>,
    },
    /// `--resume` of a run that has not written its first checkpoint.
    #[error(
        "the run `{run}` has no checkpoint yet (it stopped before its first one; they are \
         written every {checkpoint_every} steps), so there is nothing to resume; start it \
         fresh by running the same command without --resume{}",
        .saved_config
            .as_ref()
            .map(|c| format!(" and with `--config {}`", c.display()))
            .unwrap_or_default()
    )]
    NothingToResume {
        /// The run's name.
        run: String,
        /// Steps between checkpoints.
        checkpoint_every: u64,
        /// The run's saved config, when the command gave none and it exists.
        saved_config: Option<PathBuf>,
    },
    /// `--resume` of a run whose directory (its saved config) does not exist.
    #[error(
        "there is no run `{run}` to resume ({} does not exist); start it with \
         `luoshu train --name {run}` (without --resume)",
        .saved_config.display()
    )]
    NoRunToResume {
        /// The run's name.
        run: String,
        /// Where its saved config would be.
        saved_config: PathBuf,
    },
    /// A `--config` file (or a run's saved config) that cannot be read.
    #[error("cannot read the config {}: {source}", .path.display())]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `--devices` that differs from the ranks the strategy needs.
    #[error("--devices {devices} does not match strategy {strategy}, which needs {needs} ranks")]
    DevicesMismatch {
        /// The `--devices` given.
        devices: usize,
        /// The strategy.
        strategy: String,
        /// Ranks it needs.
        needs: usize,
    },
    /// A file or directory of the run could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Any other failure, already worded for the user.
    #[error("{0}")]
    Message(String),
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Message(message)
    }
}
