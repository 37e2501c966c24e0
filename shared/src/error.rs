//! The library's error type. Variants say what happened and carry the path, key or job.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is wrong: `origin` is the file (or flag), `key` the key.
    #[error("{origin}: {key}: {message}")]
    Invalid { origin: String, key: String, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or object is not in the format expected.
    #[error("{path}: {message}")]
    Format { path: String, message: String },

    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),

    /// A storage operation on a named object failed.
    #[error("storage: {path}: {message}")]
    StorageAt { path: String, message: String },

    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    #[error("run {run}: {message}")]
    Run { run: String, message: String },

    /// An injected or transient failure while generating a job; the queue retries it.
    #[error("{0}")]
    Job(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn format(path: impl ToString, message: impl ToString) -> Self {
        Error::Format { path: path.to_string(), message: message.to_string() }
    }

    /// Whether retrying the same job could succeed. Configuration and format errors are
    /// fatal; storage, network and job errors are worth another attempt.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Invalid { .. } | Error::Format { .. })
    }
}
