//! Opening a log: recovery of its segments from disk and of its idempotent-producer state.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use event_listener::Event;

use super::append::{appender_config, interval_sync};
use super::{Active, Log, LogState};
use crate::record_batch::BatchError;
use crate::storage::appender::Appender;
use crate::storage::checkpoint::{self, Checkpoint};
use crate::storage::config::{FlushPolicy, LogConfig};
use crate::storage::epochs::{self as epoch_history, LeaderEpochs};
use crate::storage::error::{Result, StorageError};
use crate::storage::io;
use crate::storage::producer_state::{self, BatchRange, ProducerStates};
use crate::storage::segment::{self, InvalidTail, Segment};
use crate::storage::shard::ShardStorage;

/// Idempotent producers remembered per partition (see `producer_state`).
const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Segments whose batch headers rebuild the producer state on open: a retry that reaches a
/// restarted broker is for a batch written just before it stopped.
const PRODUCER_STATE_SEGMENTS: usize = 2;

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it: sealed segments below the
    /// recovery point load their index files; every later segment is scanned batch by
    /// batch (length, magic, CRC-32C, offsets) and its index rebuilt. An invalid tail of the
    /// last segment (a torn write) is cut; invalid bytes in any earlier segment fail the
    /// open with `StorageError::CorruptSealed`, changing nothing.
    pub async fn open(
        shard: Rc<ShardStorage>,
        dir: PathBuf,
        name: String,
        config: LogConfig,
    ) -> Result<Rc<Log>> {
        config.validate()?;
        io::create_dir_all(&dir).await?;
        let (segments, checkpoint) = recover_segments(&shard, &dir, &name, &config).await?;
        let last = segments
            .values()
            .next_back()
            .cloned()
            .expect("recovery leaves at least one segment");
        let next_offset = last.next_offset();
        // Whatever recovery found on disk may sit in the device cache only: sync it so the
        // acknowledged prefix after a restart is also durable.
        let last_file = last.file().await?;
        io::fdatasync(&last_file.file, last.log_path()).await?;
        let appender = Appender::open(
            last_file,
            last.size(),
            next_offset,
            last.written_handle(),
            &appender_config(&config),
        )
        .await?;
        let log_start_offset = checkpoint
            .log_start_offset
            .max(segments.keys().next().copied().unwrap_or(0))
            .min(next_offset);
        let epochs = load_epochs(&dir, &name, log_start_offset, next_offset).await?;
        let log = Rc::new(Log {
            id: shard.next_log_id(),
            name,
            dir,
            limits: Cell::new(config.limits()),
            config,
            shard,
            state: RefCell::new(LogState::recovered(
                segments,
                log_start_offset,
                next_offset,
                &checkpoint,
            )),
            active: async_lock::Mutex::new(Some(Active {
                segment: last,
                appender,
            })),
            checkpoint_lock: async_lock::Mutex::new(()),
            epochs: RefCell::new(epochs),
            read_ahead: RefCell::new(None),
            cache_page: RefCell::new(BytesMut::new()),
            flush_running: Cell::new(false),
            syncs: Cell::new(0),
            flush_done: Event::new(),
            written_advanced: Event::new(),
            closed: Cell::new(false),
        });
        log.state.borrow().check_invariants();
        log.rebuild_producer_state().await?;
        log.write_checkpoint().await?;
        if let FlushPolicy::Interval(interval) = log.config.flush {
            glommio::spawn_local(interval_sync(Rc::downgrade(&log), interval)).detach();
        }
        Ok(log)
    }

    /// Rebuilds idempotent-producer state from the batch headers of the last segments.
    pub(super) async fn rebuild_producer_state(&self) -> Result<()> {
        let segments: Vec<Rc<Segment>> = {
            let state = self.state.borrow();
            state
                .segments
                .values()
                .rev()
                .take(PRODUCER_STATE_SEGMENTS)
                .rev()
                .cloned()
                .collect()
        };
        let mut rebuilt = ProducerStates::new(PRODUCERS_PER_PARTITION_MAX);
        for segment in segments {
            segment
                .visit_headers(self.config.batch_bytes_max, |header| {
                    let producer_id = header.producer_id.get();
                    let Some(last_offset) = header.last_offset() else {
                        return;
                    };
                    if producer_id >= 0 && header.base_sequence.get() >= 0 {
                        let first = header.base_sequence.get();
                        let range = BatchRange {
                            first_sequence: first,
                            last_sequence: producer_state::last_sequence(
                                first,
                                header.last_offset_delta.get(),
                            ),
                            base_offset: header.base_offset.get(),
                            last_offset,
                        };
                        rebuilt.record(producer_id, header.producer_epoch.get(), range);
                    }
                })
                .await?;
        }
        self.state.borrow_mut().producers = rebuilt;
        Ok(())
    }
}

impl LogState {
    /// The state of a log just recovered from disk: everything found there counts as
    /// written and synced (`open` syncs it), and producer state is rebuilt afterwards.
    fn recovered(
        segments: BTreeMap<i64, Rc<Segment>>,
        log_start_offset: i64,
        next_offset: i64,
        checkpoint: &Checkpoint,
    ) -> LogState {
        LogState {
            segments,
            log_start_offset,
            next_offset,
            written_offset: next_offset,
            synced_offset: next_offset,
            // Recovery may have cut the log below the checkpoint's recovery point (a torn
            // last segment): nothing past the log end is left to skip scanning.
            recovery_point: checkpoint.recovery_point.min(next_offset),
            truncations: 0,
            failure: None,
            producers: ProducerStates::new(PRODUCERS_PER_PARTITION_MAX),
        }
    }
}

/// Lists and opens the segments of `dir`, recovering what needs it. Removes temp files
/// and index files without a log.
///
/// Only the last segment may be cut: `roll` syncs a segment before its successor exists,
/// so a crash can tear only the last one. Invalid bytes in any earlier segment, or a
/// segment overlapping its predecessor, are damage: the open fails with
/// `StorageError::CorruptSealed` and nothing on disk changes (the old answer, cutting there
/// and deleting every later segment, turned one bad block into the loss of the log's tail).
async fn recover_segments(
    shard: &Rc<ShardStorage>,
    dir: &Path,
    name: &str,
    config: &LogConfig,
) -> Result<(BTreeMap<i64, Rc<Segment>>, Checkpoint)> {
    let names = io::list_dir(dir).await?;
    let checkpoint = read_checkpoint(dir, name).await?;
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_log_file_name(n))
        .collect();
    bases.sort_unstable();
    for stray in names.iter().filter(|n| n.ends_with(".tmp")) {
        io::remove_file_if_exists(&dir.join(stray)).await?;
    }
    let bases = remove_segments_before_start(dir, bases, checkpoint.log_start_offset).await?;
    let mut segments = open_segments(shard, dir, name, config, &checkpoint, &bases).await?;
    // The last segment kept is the active one: it keeps its file open.
    if let Some(last) = segments.values().next_back() {
        last.unseal();
    }
    // Index files of the segments that will be appended to again are stale from now on.
    if segments.is_empty() {
        let start = checkpoint.log_start_offset.max(0);
        let segment = Segment::create(shard, dir, start, config.index_interval_bytes).await?;
        segments.insert(start, segment);
    }
    io::sync_dir(dir).await?;
    Ok((segments, checkpoint))
}

/// The checkpoint of the log in `dir`; a missing one is the empty log's, a damaged one is
/// ignored (every segment is then scanned).
async fn read_checkpoint(dir: &Path, name: &str) -> Result<Checkpoint> {
    let checkpoint_path = dir.join(checkpoint::FILE_NAME);
    let checkpoint =
        match io::read_small_file(&checkpoint_path, checkpoint::ENCODED_BYTES * 2).await? {
            Some(bytes) => Checkpoint::decode(&bytes).unwrap_or_else(|error| {
                tracing::warn!(log = %name, %error, "damaged checkpoint; scanning every segment");
                Checkpoint {
                    log_start_offset: 0,
                    recovery_point: 0,
                }
            }),
            None => Checkpoint {
                log_start_offset: 0,
                recovery_point: 0,
            },
        };
    Ok(checkpoint)
}

/// Removes the files of the segments (`bases`, in order) that lie wholly below
/// `log_start_offset`, and returns the bases of those kept.
async fn remove_segments_before_start(
    dir: &Path,
    mut bases: Vec<i64>,
    log_start_offset: i64,
) -> Result<Vec<i64>> {
    // Segments wholly below the log start were deleted by retention, or were about to be.
    let first_kept = bases
        .iter()
        .rposition(|&b| b <= log_start_offset)
        .unwrap_or(0);
    for &base in &bases[..first_kept] {
        Segment::remove_files(dir, base).await?;
    }
    Ok(bases.split_off(first_kept))
}

/// Opens the segments at `bases` (in order), scanning those not known to be synced and
/// cutting an invalid tail of the last. Every segment but the last is sealed with its
/// file closed. On damage, closes what it opened and fails with
/// `StorageError::CorruptSealed`.
async fn open_segments(
    shard: &Rc<ShardStorage>,
    dir: &Path,
    name: &str,
    config: &LogConfig,
    checkpoint: &Checkpoint,
    bases: &[i64],
) -> Result<BTreeMap<i64, Rc<Segment>>> {
    let mut segments = BTreeMap::new();
    let mut expected_base: Option<i64> = None;
    for (position, &base) in bases.iter().enumerate() {
        let is_last = position + 1 == bases.len();
        let damaged = |at: u64, reason: String| corrupt_sealed(dir, bases, position, at, reason);
        if let Some(expected) = expected_base.filter(|&expected| base < expected) {
            close_all(segments).await?;
            return Err(damaged(
                0,
                format!(
                    "it starts at offset {base}, inside the segment before it, which ends at \
                     offset {expected}"
                ),
            ));
        }
        let sealed = base < checkpoint.recovery_point && !is_last;
        let (segment, invalid_tail) =
            open_segment(shard, dir, base, config, sealed, is_last).await?;
        if let Some((at, reason)) = invalid_tail {
            if !is_last {
                segment.close().await?;
                close_all(segments).await?;
                return Err(damaged(at, reason.to_string()));
            }
            tracing::warn!(log = %name, segment = %segment.log_path().display(), position = at, %reason, "truncated invalid tail");
        }
        expected_base = Some(segment.next_offset());
        if !is_last {
            // Sealed: its file is closed until a read needs it, so opening a log holds one
            // file however many segments it has.
            segment.seal();
            segment.release_file().await?;
        }
        segments.insert(base, segment);
    }
    Ok(segments)
}

/// Opens the segment at `base`: a `sealed` one (below the recovery point, not the last)
/// from its index files, any other by a scan that cuts an invalid tail only if it
/// `is_last`. Returns where and why the valid data ends early, if it does.
async fn open_segment(
    shard: &Rc<ShardStorage>,
    dir: &Path,
    base: i64,
    config: &LogConfig,
    sealed: bool,
    is_last: bool,
) -> Result<(Rc<Segment>, Option<(u64, BatchError)>)> {
    if sealed {
        return Segment::open_sealed(
            shard,
            dir,
            base,
            config.index_interval_bytes,
            config.batch_bytes_max,
        )
        .await;
    }
    let tail = if is_last {
        InvalidTail::Cut
    } else {
        InvalidTail::Keep
    };
    Segment::open_dirty(
        shard,
        dir,
        base,
        config.index_interval_bytes,
        config.batch_bytes_max,
        tail,
    )
    .await
}

/// The error for damage at `at` in the segment `bases[index]`, naming the segments after
/// it (which an operator may have to remove).
fn corrupt_sealed(
    dir: &Path,
    bases: &[i64],
    index: usize,
    at: u64,
    reason: String,
) -> StorageError {
    StorageError::CorruptSealed {
        path: Segment::paths(dir, bases[index])[0].clone(),
        position: at,
        reason,
        later_segments: bases[index + 1..]
            .iter()
            .map(|&later| Segment::paths(dir, later)[0].clone())
            .collect(),
    }
}

/// Closes the segments an open that fails had already opened.
async fn close_all(segments: BTreeMap<i64, Rc<Segment>>) -> Result<()> {
    for segment in segments.into_values() {
        segment.close().await?;
    }
    Ok(())
}

/// Loads the leader-epoch history, cut to the recovered log. A log without the file was
/// written before leader epochs were kept, when every batch carried epoch 0. A damaged
/// file (it is written by atomic replace, so only outside damage) is rebuilt the same way,
/// with a warning: it only serves truncation after leader changes and offset checks.
async fn load_epochs(
    dir: &std::path::Path,
    name: &str,
    log_start_offset: i64,
    next_offset: i64,
) -> Result<LeaderEpochs> {
    let legacy = || {
        let mut epochs = LeaderEpochs::default();
        if next_offset > log_start_offset {
            epochs.assign(0, log_start_offset);
        }
        epochs
    };
    let path = dir.join(epoch_history::FILE_NAME);
    let mut epochs = match io::read_small_file(&path, 8 << 20).await? {
        None => legacy(),
        Some(bytes) => LeaderEpochs::decode(&bytes).unwrap_or_else(|error| {
            tracing::warn!(log = %name, %error, "rebuilding the leader epoch history");
            legacy()
        }),
    };
    epochs.truncate_from_end(next_offset);
    epochs.truncate_from_start(log_start_offset);
    Ok(epochs)
}
