//! Why a broker could not start, each with what to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Entries named in the refusal over a missing metadata file before the rest are counted.
const ENTRIES_NAMED_MAX: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {dir} is in use by another petrel ({owner}), which holds the lock \
         on {path}; stop it first, or give this broker its own --data-dir"
    )]
    Locked {
        dir: PathBuf,
        path: PathBuf,
        owner: String,
    },
    /// The data directory belongs to another cluster or node, or is not formatted.
    #[error("{0}")]
    Identity(String),
    /// This node could not join the metadata quorum.
    #[error("cannot join the cluster: {0}")]
    Cluster(String),
    #[error("metadata file {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error(
        "metadata file {path} is missing, but {dir} holds {count} {entries_word} ({names}): refusing \
         to start an empty cluster over existing data. Restore the file, or move these \
         entries away.",
        path = .path.display(),
        dir = .dir.display(),
        count = .entries.len(),
        entries_word = if .entries.len() == 1 { "entry" } else { "entries" },
        names = name_some(.entries),
    )]
    MetadataMissing {
        path: PathBuf,
        dir: PathBuf,
        entries: Vec<String>,
    },
    #[error("cannot read RLIMIT_MEMLOCK: {error}")]
    MemLockUnknown { error: std::io::Error },
    #[error(
        "RLIMIT_MEMLOCK is {soft_text}; each shard's io_uring needs ≥512 KiB of locked memory \
         (glommio refuses to start below that), and the hard limit ({hard_text}) allows no \
         more; raise it: `ulimit -l unlimited`, systemd `LimitMEMLOCK=infinity`, \
         `docker run --ulimit memlock=-1`",
        soft_text = kib(*.soft),
        hard_text = kib(*.hard),
    )]
    MemLock { soft: u64, hard: u64 },
    #[error(
        "the file system of {dir} does not support O_DIRECT (e.g. tmpfs); use ext4/xfs \
         (opening a file there with O_DIRECT: {error})",
        dir = .dir.display(),
    )]
    NoDirectIo { dir: PathBuf, error: std::io::Error },
    #[error(
        "cannot start an io_uring executor: {reason}. Petrel's shards need io_uring: \
         /proc/sys/kernel/io_uring_disabled is {disabled} (0 allows it, 1 only for the group \
         in kernel.io_uring_group, 2 disables it); this process's seccomp mode is {seccomp} \
         (`Seccomp:` in /proc/self/status; 2 means filtered, and Docker's default seccomp \
         profile blocks io_uring: run with a profile that allows io_uring_setup, \
         io_uring_enter and io_uring_register); the kernel must be 5.8 or newer (this one \
         is {kernel})"
    )]
    IoUring {
        reason: String,
        disabled: String,
        seccomp: String,
        kernel: String,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} failed to start: {reason}")]
    Shard { shard: usize, reason: String },
    #[error(
        "the topics hold {partitions} partitions, more than partitions-max ({partitions_max}); \
         raise --partitions-max (and with it the file descriptor limit) or delete topics"
    )]
    PartitionsMax {
        partitions: usize,
        partitions_max: usize,
    },
}

/// A limit for a message: `64 KiB`, or `unlimited`.
pub fn kib(bytes: u64) -> String {
    if bytes == rlimit::INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// `entries` for a message: the first few names, then how many more.
pub fn name_some(entries: &[String]) -> String {
    let mut named: Vec<&str> = entries
        .iter()
        .take(ENTRIES_NAMED_MAX)
        .map(String::as_str)
        .collect();
    let more;
    if entries.len() > ENTRIES_NAMED_MAX {
        more = format!("… and {} more", entries.len() - ENTRIES_NAMED_MAX);
        named.push(&more);
    }
    named.join(", ")
}
