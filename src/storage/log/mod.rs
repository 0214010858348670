//! A partition's log: an ordered set of segments in `<data dir>/<topic>-<partition>/`, owned
//! by exactly one shard.
//!
//! Concurrency contract (single-threaded, but tasks interleave at `.await`):
//! - One append in flight per log: `append`, roll, truncation and the write half of a flush
//!   hold `active` (an async mutex) for their whole duration.
//! - Flushes are grouped: while one flush (write + optional `fdatasync`) runs, later waiters
//!   queue behind it and the next flush covers all of them (group commit).
//! - Readers never take the lock; they read what the appender has written (or the cache).
//! - The checkpoint file is written under `checkpoint_lock`, from a snapshot of the state
//!   taken once the lock is held, so writers never share its temp file and the newest
//!   state is the one written last. Lock order: `active` before `checkpoint_lock` (a roll
//!   or truncation writes the checkpoint while holding `active`); never take `active`
//!   while holding `checkpoint_lock`.
//! - No `RefCell` borrow is held across an `.await`.
//!
//! Code map (each file adds an `impl Log` block):
//! - `open`: `Log::open`, recovery of the segments on disk, the producer-state rebuild.
//! - `append`: append, segment roll, group flush (`wait`) and the interval sync task.
//! - `read`: reads from the cache or the disk, read-ahead, lookup by timestamp.
//! - `retention`: retention, DeleteRecords, manual roll, truncation.
//! - here: the types, accessors, close and delete, helpers the others share.

mod append;
mod check;
mod open;
mod read;
mod retention;

pub use check::{check_segments, SegmentCheck};

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use event_listener::Event;

use super::appender::Appender;
use super::checkpoint::{self, Checkpoint};
use super::config::{LogConfig, LogLimits};
use super::epochs::{self, LeaderEpochs};
use super::error::{Result, StorageError};
use super::io;
use super::producer_state::ProducerStates;
use super::segment::{Segment, Window};
use super::shard::ShardStorage;

/// What a caller waits for before acknowledging an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The O_DIRECT write completed: the batch survives a crash of the process.
    Written,
    /// `fdatasync` completed: the batch survives a power loss.
    Synced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// An idempotent producer's retry of a batch already in the log: nothing was written,
    /// and the offsets are the original ones.
    pub duplicate: bool,
}

/// Whole batches read from the log, in offset order, ready to send without re-encoding.
#[derive(Debug, Default)]
pub struct LogRead {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    /// Offset after the last batch returned (the caller's next fetch position).
    pub next_offset: i64,
}

struct LogState {
    segments: BTreeMap<i64, Rc<Segment>>,
    log_start_offset: i64,
    next_offset: i64,
    written_offset: i64,
    synced_offset: i64,
    recovery_point: i64,
    /// Bumped by truncation; a flush that started before it does not advance offsets.
    truncations: u64,
    failure: Option<String>,
    producers: ProducerStates,
}

/// Read-ahead for sequential catch-up reads: the window of file bytes already read, and
/// where the last read stopped. Kept in one slot so a position never pairs with the
/// window of another read.
struct ReadAhead {
    segment_base: i64,
    next_offset: i64,
    next_position: u64,
    truncations: u64,
    window: Window,
}

struct Active {
    segment: Rc<Segment>,
    appender: Appender,
}

pub struct Log {
    name: String,
    dir: PathBuf,
    config: LogConfig,
    /// Roll and retention limits, starting as `config`'s; `set_limits` changes them.
    limits: Cell<LogLimits>,
    shard: Rc<ShardStorage>,
    id: u64,
    state: RefCell<LogState>,
    active: async_lock::Mutex<Option<Active>>,
    /// Serializes checkpoint writes (see the concurrency contract above).
    checkpoint_lock: async_lock::Mutex<()>,
    /// Which leader epoch wrote which offsets (`storage::epochs`), persisted beside the
    /// checkpoint under `checkpoint_lock`.
    epochs: RefCell<LeaderEpochs>,
    read_ahead: RefCell<Option<ReadAhead>>,
    /// Page that batch copies are carved from (see `copy_for_cache`).
    cache_page: RefCell<BytesMut>,
    flush_running: Cell<bool>,
    /// `fdatasync` calls made by flushes (group commit makes this far fewer than appends).
    syncs: Cell<u64>,
    flush_done: Event,
    /// Fired whenever `written_offset` advances (a fetch long-poll waits on it).
    written_advanced: Event,
    closed: Cell<bool>,
}

impl LogState {
    /// Debug builds check, after every change to the offsets or the segment map, the orders
    /// the rest of this module relies on:
    /// - `synced_offset <= written_offset <= next_offset`: what survives a power loss also
    ///   survives a crash, and neither runs ahead of the log end;
    /// - `log_start_offset <= next_offset`;
    /// - segments are keyed by their base offset and do not overlap (each ends at or before
    ///   the next one's base), and none ends past `next_offset`;
    /// - `recovery_point <= next_offset`: no recovery point past the data (open clamps the
    ///   checkpoint's, which a recovery that cut the tail leaves behind).
    ///
    /// Deliberately not checked, because they do not always hold: `log_start_offset <=
    /// synced_offset` (DeleteRecords may move the start past data not yet written or
    /// synced), that the segments are contiguous (open accepts a gap where a segment file
    /// is missing) and that there is at least one segment (truncation below the first
    /// segment empties the map for a while; close empties it for good).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        debug_assert!(
            self.synced_offset <= self.written_offset && self.written_offset <= self.next_offset,
            "offsets out of order: synced {} written {} next {}",
            self.synced_offset,
            self.written_offset,
            self.next_offset,
        );
        debug_assert!(
            self.log_start_offset <= self.next_offset,
            "log start {} past the log end {}",
            self.log_start_offset,
            self.next_offset,
        );
        debug_assert!(
            self.recovery_point <= self.next_offset,
            "recovery point {} past the log end {}",
            self.recovery_point,
            self.next_offset,
        );
        let mut previous_end = i64::MIN;
        for (&base, segment) in &self.segments {
            debug_assert_eq!(base, segment.base_offset, "segment keyed by another offset");
            debug_assert!(
                previous_end <= base,
                "segment {base} overlaps its predecessor, which ends at {previous_end}",
            );
            previous_end = segment.next_offset();
        }
        debug_assert!(
            previous_end <= self.next_offset,
            "last segment ends at {previous_end}, past the log end {}",
            self.next_offset,
        );
    }
}

impl Log {
    /// Kafka's OffsetForLeaderEpoch answer for `epoch`: the largest epoch not above it and
    /// the offset where the next one starts (the log end for the latest).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs
            .borrow()
            .end_offset_for(epoch, self.next_offset())
    }

    /// The latest leader epoch that wrote to this log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.borrow().latest().map(|(epoch, _)| epoch)
    }

    /// Persists the leader-epoch history (atomic replace). Under `checkpoint_lock`, taken
    /// after `active` if both are held.
    pub(super) async fn write_epochs(&self) -> Result<()> {
        let _one_writer = self.checkpoint_lock.lock().await;
        let bytes = self.epochs.borrow().encode();
        let written = io::write_file_atomic(&self.dir.join(epochs::FILE_NAME), &bytes).await;
        if let Err(error) = &written {
            self.fail(error);
        }
        written
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn limits(&self) -> LogLimits {
        self.limits.get()
    }

    /// Changes when segments roll and what retention deletes, from the next append and
    /// the next retention pass on (a topic config change, validated by the topic config
    /// layer). A segment limit below `batch_bytes_max` is harmless: a larger batch then
    /// gets a segment of its own.
    pub fn set_limits(&self, limits: LogLimits) {
        self.limits.set(limits);
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    /// The offset the next appended record will get (Kafka's log end offset).
    pub fn next_offset(&self) -> i64 {
        self.state.borrow().next_offset
    }

    /// Every offset below this survives a power loss.
    pub fn synced_offset(&self) -> i64 {
        self.state.borrow().synced_offset
    }

    /// Every offset below this survives a process crash.
    pub fn written_offset(&self) -> i64 {
        self.state.borrow().written_offset
    }

    /// The largest record timestamp in the log (`i64::MIN` when empty).
    pub fn max_timestamp(&self) -> i64 {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| s.max_timestamp())
            .max()
            .unwrap_or(i64::MIN)
    }

    /// How many `fdatasync` calls flushes have made since the log was opened.
    pub fn sync_count(&self) -> u64 {
        self.syncs.get()
    }

    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| s.size())
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.state.borrow().segments.keys().copied().collect()
    }

    /// Resolves when `written_offset` advances after this call.
    pub fn on_written(&self) -> event_listener::EventListener {
        self.written_advanced.listen()
    }

    /// Why the log refuses work (a write or sync failed), if it does. The shard reopens a
    /// failed log: the recovery scan keeps exactly what is valid on disk.
    pub fn failure(&self) -> Option<String> {
        self.state.borrow().failure.clone()
    }

    fn check_usable(&self) -> Result<()> {
        if let Some(reason) = &self.state.borrow().failure {
            return Err(StorageError::LogFailed {
                name: self.name.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// A write or sync failed: the tail's state is unknown, so refuse all further work.
    fn fail(&self, error: &StorageError) {
        tracing::error!(log = %self.name, %error, "log failed; it will refuse work until reopened");
        self.state
            .borrow_mut()
            .failure
            .get_or_insert_with(|| error.to_string());
    }

    /// Flushes, syncs and closes every file. The active segment keeps no index files: it is
    /// rescanned on the next open, which is cheap next to the safety it buys.
    pub async fn close(&self) -> Result<()> {
        if self.closed.replace(true) {
            return Ok(());
        }
        let flushed = if self.check_usable().is_ok() {
            self.wait(Durability::Synced, i64::MAX).await
        } else {
            Ok(())
        };
        let active = self.active.lock().await.take();
        if let Some(mut active) = active {
            if flushed.is_ok() && self.check_usable().is_ok() {
                // Cut the zero padding after the last batch so the file size is the data size.
                let size = active.segment.size();
                let file = active.segment.file().await?;
                io::truncate(&file.file, active.segment.log_path(), size).await?;
                io::fdatasync(&file.file, active.segment.log_path()).await?;
            } else {
                // A failed log still waits for its writes in flight, so that nothing lands
                // on disk after a reopen has scanned it; their errors are the known failure.
                active.appender.settle().await;
            }
        }
        let segments = std::mem::take(&mut self.state.borrow_mut().segments);
        self.shard
            .cache
            .borrow_mut()
            .invalidate_from(self.id, i64::MIN);
        self.read_ahead.take();
        for segment in segments.into_values() {
            segment.close().await?;
        }
        flushed
    }

    /// Closes the log and removes its directory (topic deletion). The directory is first
    /// renamed to `trash` (same file system; the broker empties its trash on start), so a
    /// crash midway never leaves a half-removed log under the log's own name, where a later
    /// topic of that name would find it.
    pub async fn delete(&self, trash: &Path) -> Result<()> {
        self.close().await?;
        if let Some(trash_dir) = trash.parent() {
            io::create_dir_all(trash_dir).await?;
        }
        io::rename(&self.dir, trash).await?;
        for dir in [self.dir.parent(), trash.parent()].into_iter().flatten() {
            io::sync_dir(dir).await?;
        }
        io::remove_dir_all(trash).await
    }

    /// Forgets this log's cached batches, so tests can force reads from disk.
    #[cfg(test)]
    pub(super) fn drop_cached(&self) {
        self.shard
            .cache
            .borrow_mut()
            .invalidate_from(self.id, i64::MIN);
    }

    fn closed_error(&self) -> StorageError {
        StorageError::LogFailed {
            name: self.name.clone(),
            reason: "closed".into(),
        }
    }

    /// Writes the checkpoint of the state as it is once no other checkpoint write runs.
    /// Callers may hold `active` (never the other way round).
    async fn write_checkpoint(&self) -> Result<()> {
        let _one_writer = self.checkpoint_lock.lock().await;
        let checkpoint = {
            let state = self.state.borrow();
            Checkpoint {
                log_start_offset: state.log_start_offset,
                recovery_point: state.recovery_point,
            }
        };
        io::write_file_atomic(&self.dir.join(checkpoint::FILE_NAME), &checkpoint.encode()).await
    }
}
