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
    /// Bytes that fail their checks in a segment that is not the last of its log, found on
    /// open. Only the last segment can have a torn tail (a segment is synced before its
    /// successor is created), so this is damage: the open fails and nothing on disk is
    /// changed, rather than cutting the log there and deleting everything after it.
    #[error(
        "segment {file} is damaged at byte {position}: {reason}. A crash can cut short only \
         the last segment of a log, so this is damage: nothing was changed on disk, and the \
         {later_count} later segments are untouched{later}. Inspect the log with \
         `petrel log dump {dir}`; to start without the damaged data, restore these files \
         from a backup, or move {file} and every later segment out of {dir} (the log then \
         ends where that segment begins)",
        file = .path.display(),
        dir = .path.parent().unwrap_or(.path).display(),
        later_count = .later_segments.len(),
        later = list_file_names(.later_segments),
    )]
    CorruptSealed {
        path: PathBuf,
        position: u64,
        reason: String,
        later_segments: Vec<PathBuf>,
    },
    /// The broker stopped leading the partition while an acks=all produce waited for its
    /// followers.
    #[error("leadership of the partition moved while the batch was being replicated")]
    LeadershipLost,
    /// The ISR shrank below `min.insync.replicas` while an acks=all produce waited.
    #[error("the in-sync replicas fell below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    /// A replica's batch does not continue the log (its leader's offsets skip or repeat).
    #[error("replicated batch starts at offset {got}, but the log ends at {expected}")]
    ReplicaGap { expected: i64, got: i64 },
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

/// Files named in a message before the rest are only counted.
const FILES_NAMED_MAX: usize = 8;

/// The file names of `paths` as a message suffix, ` (a, b, … and 7 more)`, or nothing.
fn list_file_names(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let mut names: Vec<String> = paths
        .iter()
        .take(FILES_NAMED_MAX)
        .map(|path| {
            path.file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if paths.len() > FILES_NAMED_MAX {
        names.push(format!("… and {} more", paths.len() - FILES_NAMED_MAX));
    }
    format!(" ({})", names.join(", "))
}

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
