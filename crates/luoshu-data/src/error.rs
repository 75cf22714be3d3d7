use std::path::PathBuf;

/// Errors of the data layer; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no training text found: {searched}. Pass a file, a directory or a glob with --data PATH"
    )]
    NoData { searched: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid data configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
