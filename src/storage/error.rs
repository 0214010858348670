//! Errors of the storage engine. The server maps them to Kafka error codes at its edge.

use std::path::PathBuf;

use crate::record_batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk that fail their checks where the log had promised valid data.
    #[error("corrupt batch in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: BatchError,
    },
    /// A batch offered for append was malformed; nothing of it was written.
    #[error("rejected batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// An idempotent producer's batch that does not follow its sequence, or is fenced.
    #[error("rejected idempotent batch: {0}")]
    Sequence(#[from] super::producer_state::SequenceError),
    #[error("this shard already holds {limit} open segment files")]
    TooManyOpenFiles { limit: usize },
    /// A write or fsync failed earlier; the log refuses further work until reopened,
    /// because the state of the unsynced tail is unknown.
    #[error("log {name} is failed: {reason}")]
    LogFailed { name: String, reason: String },
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Builds the `map_err` closure for an I/O step on `path`.
pub(crate) fn io_error<E: Into<std::io::Error>>(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(E) -> StorageError {
    let path = path.to_path_buf();
    move |error| StorageError::Io {
        op,
        path,
        source: error.into(),
    }
}
