//! The file descriptor budget: how many segment files each shard may keep open, from
//! RLIMIT_NOFILE after connections and the broker's own needs.

use super::error::{invalid, ConfigError};

/// File descriptors kept for what is not a segment file or a client connection: stdio, the
/// metadata file, glommio's blocking-pool threads, and per shard its io_uring rings and
/// eventfds, the listener socket, and index, checkpoint, temp and directory files opened
/// for a moment (log opens, rolls, retention).
const FDS_RESERVED: u64 = 256;
const FDS_RESERVED_PER_SHARD: u64 = 64;
/// Fewest segment files a shard may work with: its consumer-offsets log and a few
/// partitions, each holding its active segment, plus a roll in progress.
const OPEN_FILES_MIN: usize = 8;

/// Raises the soft RLIMIT_NOFILE to the hard limit (the default soft limit, often 1024, is
/// far below what thousands of partitions and connections need) and returns the soft limit
/// now in force. Called once at start, before any shard exists.
pub fn raise_fd_limit() -> Result<u64, ConfigError> {
    let failed = |error: std::io::Error| ConfigError::FileDescriptors {
        nofile: 0,
        reason: format!("cannot read it: {error}"),
    };
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(failed)?;
    if soft >= hard {
        return Ok(soft);
    }
    match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(error) => {
            // E.g. an unlimited hard limit, which the kernel caps at fs.nr_open.
            tracing::warn!(soft, hard, %error, "cannot raise the file descriptor limit");
            Ok(soft)
        }
    }
}

/// Segment files each shard may hold open: `given`, if it fits `nofile`, or what is left of
/// `nofile` after the connections and the reserve, shared by the shards.
pub(super) fn open_files_budget(
    given: Option<usize>,
    nofile: u64,
    shards: usize,
    connections_max: usize,
) -> Result<usize, ConfigError> {
    let shards_u64 = shards as u64;
    let reserved = FDS_RESERVED.saturating_add(FDS_RESERVED_PER_SHARD.saturating_mul(shards_u64));
    let available = nofile
        .saturating_sub(connections_max as u64)
        .saturating_sub(reserved);
    let per_shard = usize::try_from(available / shards_u64.max(1)).unwrap_or(usize::MAX);
    let explain = |wanted: usize| ConfigError::FileDescriptors {
        nofile,
        reason: format!(
            "after {connections_max} connections (connections-max) and {reserved} kept for the \
             broker itself, {shards} shards get {per_shard} segment files each, fewer than the \
             {wanted} needed"
        ),
    };
    match given {
        Some(open_files_max) if open_files_max < OPEN_FILES_MIN => Err(invalid(
            "open-files-max",
            open_files_max,
            format!("must be at least {OPEN_FILES_MIN}"),
        )),
        Some(open_files_max) if open_files_max > per_shard => Err(explain(open_files_max)),
        Some(open_files_max) => Ok(open_files_max),
        None if per_shard < OPEN_FILES_MIN => Err(explain(OPEN_FILES_MIN)),
        None => Ok(per_shard),
    }
}
