use std::path::PathBuf;

/// Errors of the data layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The corpus search found no usable text file.
    #[error(
        "no training text found: {searched}. Pass a file, a directory or a glob with --data PATH"
    )]
    NoData {
        /// Where it searched.
        searched: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Training, loading or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Corpus or loader settings that cannot work.
    #[error("invalid data configuration: {0}")]
    Config(String),
}

/// The data layer's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
