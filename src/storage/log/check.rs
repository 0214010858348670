//! A read-only look at a log's segments, for a log that does not open (`petrel log dump`):
//! nothing is truncated, removed or rewritten.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::storage::config::LogConfig;
use crate::storage::error::{io_error, Result};
use crate::storage::io;
use crate::storage::segment::{self, InvalidTail, Segment};
use crate::storage::shard::ShardStorage;

/// What a read-only check of one segment found (`check_segments`).
#[derive(Debug)]
pub struct SegmentCheck {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file_bytes: u64,
    /// Bytes of valid batches from the start of the file.
    pub valid_bytes: u64,
    /// The offset after the last valid batch.
    pub next_offset: i64,
    /// Where and why the valid data ends before the file does.
    pub invalid: Option<(u64, String)>,
}

/// Scans every segment of the log in `dir` and reports what it holds, without changing
/// anything (no truncation, no removal, no checkpoint): for inspecting a log that does not
/// open (`petrel log dump`).
pub async fn check_segments(
    shard: &Rc<ShardStorage>,
    dir: &Path,
    config: &LogConfig,
) -> Result<Vec<SegmentCheck>> {
    let mut bases: Vec<i64> = io::list_dir(dir)
        .await?
        .iter()
        .filter_map(|n| segment::parse_log_file_name(n))
        .collect();
    bases.sort_unstable();
    let mut checks = Vec::with_capacity(bases.len());
    for base in bases {
        let (segment, invalid) = Segment::open_dirty(
            shard,
            dir,
            base,
            config.index_interval_bytes,
            config.batch_bytes_max,
            InvalidTail::Keep,
        )
        .await?;
        let file_bytes = segment
            .file()
            .await?
            .file
            .file_size()
            .await
            .map_err(io_error("stat", segment.log_path()))?;
        checks.push(SegmentCheck {
            base_offset: base,
            path: segment.log_path().to_path_buf(),
            file_bytes,
            valid_bytes: segment.size(),
            next_offset: segment.next_offset(),
            invalid: invalid.map(|(at, reason)| (at, reason.to_string())),
        });
        segment.close().await?;
    }
    Ok(checks)
}
