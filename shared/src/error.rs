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

    /// A storage operation on a named object failed. `worker_fault`: the cause is this
    /// worker's (credentials refused, disk full), not the object's.
    #[error("storage: {path}: {message}")]
    StorageAt { path: String, message: String, worker_fault: bool },

    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    #[error("run {run}: {message}")]
    Run { run: String, message: String },

    /// An injected or transient failure while generating a job; the queue retries it.
    #[error("{0}")]
    Job(String),

    /// This worker cannot do any job (its models do not load, its device fails, its disk
    /// is full): the job is given back without spending an attempt.
    #[error("{0}")]
    Worker(String),

    /// A job's model or encoder thread panicked. A bug that one sample triggers and a
    /// failing device (the CUDA backend panics rather than erring) look the same: the
    /// attempt is spent, so a poison shard still dies, and the worker drops the run's
    /// pipeline, so the next job builds it again, checking the device (loading the models,
    /// or a read-back when they are still loaded for another pipeline), which a broken
    /// device fails (a failed build is the worker's own fault: it gives jobs back and,
    /// after a few, exits).
    #[error("{0}")]
    Panicked(String),

    /// A run's model on shared storage (`s3://`) no longer holds the bytes pinned at
    /// submit (replaced, damaged or removed since): every worker without a verified copy
    /// in its cache fails alike, so it is not this worker's fault. The job spends an
    /// attempt, as a poison job does (a worker that cached the pinned model before may
    /// still do it), the shard goes dead after `run.max_attempts` naming the model, the
    /// worker keeps serving other runs, and once the model is restored `coordinator
    /// retry-dead RUN` queues the shards again.
    #[error("{0}")]
    ModelChanged(String),
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

    /// Whether the failure belongs to this worker rather than to the job: refused
    /// credentials, a full or read-only disk, models that do not load, a failing device.
    /// Such a failure gives the job back without spending one of its attempts; the worker
    /// backs off and, after a few in a row, reports itself unready and exits.
    pub fn is_worker_fault(&self) -> bool {
        match self {
            Error::Worker(_) => true,
            Error::StorageAt { worker_fault, .. } => *worker_fault,
            Error::Storage(e) => storage_worker_fault(e),
            Error::Io { source, .. } => io_worker_fault(source),
            _ => false,
        }
    }
}

/// Refused credentials, a store this worker cannot reach (connection refused or timed out
/// after object_store's own retries: a wrong endpoint, a blocked network, a credential
/// service it cannot reach), or a local disk that is full or read-only.
pub(crate) fn storage_worker_fault(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    if matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) {
        return true;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io_worker_fault(io) {
                return true;
            }
        }
        if let Some(http) = s.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return true;
            }
        }
        src = s.source();
    }
    false
}

/// ENOSPC, EDQUOT, EROFS: the machine's disk, not the job.
fn io_worker_fault(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(122) | Some(30))
}

#[cfg(test)]
mod tests {
    use object_store::client::{HttpError, HttpErrorKind};

    /// A store this worker cannot reach is the worker's fault (the job is given back, no
    /// attempt spent); an answer the store gave about the object is not.
    #[test]
    fn unreachable_storage_is_the_workers_fault() {
        let wrapped = |kind| object_store::Error::Generic { store: "S3", source: Box::new(HttpError::new(kind, std::io::Error::other("connection refused (test)"))) };
        for kind in [HttpErrorKind::Connect, HttpErrorKind::Timeout] {
            assert!(super::storage_worker_fault(&wrapped(kind)), "{kind:?}");
        }
        for kind in [HttpErrorKind::Decode, HttpErrorKind::Interrupted, HttpErrorKind::Unknown] {
            assert!(!super::storage_worker_fault(&wrapped(kind)), "{kind:?}");
        }
        let disk_full = object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(std::io::Error::from_raw_os_error(28)) };
        assert!(super::storage_worker_fault(&disk_full));
        assert!(!super::storage_worker_fault(&object_store::Error::NotFound { path: "x".into(), source: "gone".into() }));
    }
}
