//! A partition's log: an ordered set of segments in `<data dir>/<topic>-<partition>/`, owned
//! by exactly one shard.
//!
//! Concurrency contract (single-threaded, but tasks interleave at `.await`):
//! - One append in flight per log: `append`, roll, truncation and the write half of a flush
//!   hold `active` (an async mutex) for their whole duration.
//! - Flushes are grouped: while one flush (write + optional `fdatasync`) runs, later waiters
//!   queue behind it and the next flush covers all of them (group commit).
//! - Readers never take the lock; they read what the appender has written (or the cache).
//! - No `RefCell` borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use event_listener::Event;

use super::appender::{Appender, AppenderConfig};
use super::checkpoint::{self, Checkpoint};
use super::config::{FlushPolicy, LogConfig, LogLimits};
use super::error::{io_error, Result, StorageError};
use super::io;
use super::producer_state::{self, BatchRange, ProducerStates, Verdict};
use super::segment::{self, Segment, Window};
use super::shard::ShardStorage;
use crate::record_batch;

/// Sizes of the pages batch copies are carved from. A page is freed once every batch carved
/// from it has left the cache and every reader is done with it, so each log pins up to a
/// page beyond what the cache accounts: pages are sized to about `CACHE_PAGE_BATCHES` of the
/// log's batches, so a thousand logs of 1 KiB batches pin 16 MiB, not 256 MiB.
const CACHE_PAGE_BYTES_MIN: usize = 16 * 1024;
const CACHE_PAGE_BYTES_MAX: usize = 256 * 1024;
const CACHE_PAGE_BATCHES: usize = 8;

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

/// Idempotent producers remembered per partition (see `producer_state`).
const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Segments whose batch headers rebuild the producer state on open: a retry that reaches a
/// restarted broker is for a batch written just before it stopped.
const PRODUCER_STATE_SEGMENTS: usize = 2;

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

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it: sealed segments below the
    /// recovery point load their index files; every later segment is scanned batch by
    /// batch (length, magic, CRC-32C, offsets), its index rebuilt and any invalid tail cut.
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
        last.file()
            .file
            .fdatasync()
            .await
            .map_err(io_error("fdatasync", last.log_path()))?;
        let appender = Appender::open(
            last.file().clone(),
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
        let log = Rc::new(Log {
            id: shard.next_log_id(),
            name,
            dir,
            limits: Cell::new(config.limits()),
            config,
            shard,
            state: RefCell::new(LogState {
                segments,
                log_start_offset,
                next_offset,
                written_offset: next_offset,
                synced_offset: next_offset,
                recovery_point: checkpoint.recovery_point,
                truncations: 0,
                failure: None,
                producers: ProducerStates::new(PRODUCERS_PER_PARTITION_MAX),
            }),
            active: async_lock::Mutex::new(Some(Active {
                segment: last,
                appender,
            })),
            read_ahead: RefCell::new(None),
            cache_page: RefCell::new(BytesMut::new()),
            flush_running: Cell::new(false),
            syncs: Cell::new(0),
            flush_done: Event::new(),
            written_advanced: Event::new(),
            closed: Cell::new(false),
        });
        log.rebuild_producer_state().await?;
        log.write_checkpoint().await?;
        if let FlushPolicy::Interval(interval) = log.config.flush {
            glommio::spawn_local(interval_sync(Rc::downgrade(&log), interval)).detach();
        }
        Ok(log)
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

    /// Appends one producer batch (exactly one RecordBatch v2, CRC checked here), assigning
    /// its offsets. Returns once the batch is in the appender's buffer: call [`Log::wait`]
    /// before acknowledging it durably. Nothing of a rejected batch is written.
    ///
    /// Not cancellation-safe: once started, an append must be driven to completion (the
    /// server runs every request in a detached task). `wait` and `read` may be dropped.
    pub async fn append(&self, batch: Bytes, leader_epoch: i32) -> Result<AppendOutcome> {
        self.check_usable()?;
        let view = record_batch::verify(&batch, self.config.batch_bytes_max)?;
        if view.bytes.len() != batch.len() {
            return Err(StorageError::InvalidBatch(
                record_batch::BatchError::Truncated {
                    declared: view.bytes.len(),
                    available: batch.len(),
                },
            ));
        }
        let header = *view.header;
        let total = batch.len();
        let mut guard = self.active.lock().await;
        let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
        self.check_usable()?;
        let base_offset = self.state.borrow().next_offset;
        let delta = i64::from(header.last_offset_delta.get());
        let last_offset = base_offset
            .checked_add(delta)
            .ok_or(StorageError::InvalidBatch(
                record_batch::BatchError::BadLength(header.batch_length.get()),
            ))?;
        let producer = (header.producer_id.get() >= 0).then(|| {
            let first = header.base_sequence.get();
            (
                header.producer_id.get(),
                header.producer_epoch.get(),
                first,
                producer_state::last_sequence(first, header.last_offset_delta.get()),
            )
        });
        if let Some((producer_id, epoch, first, last)) = producer {
            let verdict = self
                .state
                .borrow()
                .producers
                .check(producer_id, epoch, first, last)?;
            if let Verdict::Duplicate {
                base_offset,
                last_offset,
            } = verdict
            {
                return Ok(AppendOutcome {
                    base_offset,
                    last_offset,
                    duplicate: true,
                });
            }
        }
        if self.should_roll(&active.segment, total as u64, last_offset) {
            if let Err(error) = self.roll(active, base_offset).await {
                self.fail(&error);
                return Err(error);
            }
        }
        let stored = self.copy_for_cache(&batch, base_offset, leader_epoch);
        let position = active.appender.logical_size();
        if let Err(error) = active.appender.append(&stored, last_offset + 1).await {
            self.fail(&error);
            return Err(error);
        }
        active.segment.on_append(
            position,
            total as u32,
            base_offset,
            last_offset,
            header.max_timestamp.get(),
        );
        let advanced = {
            let mut state = self.state.borrow_mut();
            state.next_offset = last_offset + 1;
            if let Some((producer_id, epoch, first_sequence, last_sequence)) = producer {
                let range = BatchRange {
                    first_sequence,
                    last_sequence,
                    base_offset,
                    last_offset,
                };
                state.producers.record(producer_id, epoch, range);
            }
            let written = active.appender.written_offset();
            let advanced = written > state.written_offset;
            state.written_offset = state.written_offset.max(written);
            advanced
        };
        if advanced {
            self.written_advanced.notify(usize::MAX);
        }
        self.shard
            .cache
            .borrow_mut()
            .insert(self.id, base_offset, last_offset, stored);
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            duplicate: false,
        })
    }

    /// Rebuilds idempotent-producer state from the batch headers of the last segments.
    async fn rebuild_producer_state(&self) -> Result<()> {
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

    /// The producer's bytes are shared (they sit in a request buffer), so the stored batch,
    /// with its offset assigned, is a copy. Copies are packed into pages so the cache holds
    /// one allocation per page rather than one per batch.
    fn copy_for_cache(&self, batch: &[u8], base_offset: i64, leader_epoch: i32) -> Bytes {
        let mut page = self.cache_page.borrow_mut();
        if page.capacity() - page.len() < batch.len() {
            let page_bytes = (batch.len() * CACHE_PAGE_BATCHES)
                .clamp(CACHE_PAGE_BYTES_MIN, CACHE_PAGE_BYTES_MAX)
                .max(batch.len());
            *page = BytesMut::with_capacity(page_bytes);
        }
        page.extend_from_slice(batch);
        let mut stored = page.split();
        record_batch::assign_offset(&mut stored, base_offset, leader_epoch);
        stored.freeze()
    }

    fn should_roll(&self, segment: &Segment, bytes: u64, last_offset: i64) -> bool {
        if segment.size() == 0 {
            return false;
        }
        let limits = self.limits.get();
        segment.size() + bytes > limits.segment_bytes_max
            || segment.created_at().elapsed() >= limits.segment_age_max
            || !segment.can_hold(bytes, last_offset)
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    ///
    /// fsyncs, in order: the sealed `.log` (so everything below the new recovery point is
    /// durable), its `.index` and `.timeindex` (via temp file + rename + directory fsync),
    /// the directory after creating the new `.log`, then the checkpoint (+ directory).
    async fn roll(&self, active: &mut Active, next_offset: i64) -> Result<()> {
        active.appender.flush().await?;
        active.appender.drain().await?;
        let sealed = active.segment.clone();
        let file = &sealed.file().file;
        file.truncate(sealed.size())
            .await
            .map_err(io_error("truncate", sealed.log_path()))?;
        file.fdatasync()
            .await
            .map_err(io_error("fdatasync", sealed.log_path()))?;
        sealed.write_index_files(&self.dir).await?;
        let segment = Segment::create(
            &self.shard,
            &self.dir,
            next_offset,
            self.config.index_interval_bytes,
        )
        .await?;
        io::sync_dir(&self.dir).await?;
        let appender = Appender::open(
            segment.file().clone(),
            0,
            next_offset,
            segment.written_handle(),
            &appender_config(&self.config),
        )
        .await?;
        {
            let mut state = self.state.borrow_mut();
            state.segments.insert(next_offset, segment.clone());
            state.written_offset = state.written_offset.max(next_offset);
            state.synced_offset = state.synced_offset.max(next_offset);
            state.recovery_point = next_offset;
        }
        *active = Active { segment, appender };
        self.written_advanced.notify(usize::MAX);
        self.write_checkpoint().await?;
        tracing::debug!(log = %self.name, base_offset = next_offset, "rolled segment");
        Ok(())
    }

    /// Waits until every offset below `end_offset` is at least `durability`.
    ///
    /// Group commit: if a flush is already running, wait for it and re-check; otherwise run
    /// one that covers everything appended so far, on behalf of every waiter behind it.
    pub async fn wait(&self, durability: Durability, end_offset: i64) -> Result<()> {
        loop {
            self.check_usable()?;
            {
                let state = self.state.borrow();
                let reached = match durability {
                    Durability::Written => state.written_offset,
                    Durability::Synced => state.synced_offset,
                };
                if reached >= end_offset.min(state.next_offset) {
                    return Ok(());
                }
            }
            if self.flush_running.get() {
                let listener = self.flush_done.listen();
                if self.flush_running.get() {
                    listener.await;
                }
                continue;
            }
            self.flush_running.set(true);
            // Reset even if this waiter is dropped mid-flush, or every later waiter would
            // wait for a flush that never ends.
            let _running = FlushRunning(self);
            let result = self.flush_once(durability).await;
            drop(_running);
            if let Err(error) = result {
                self.fail(&error);
                return Err(error);
            }
        }
    }

    /// Waits for what the log's flush policy promises a durable (acks=all) producer:
    /// `fdatasync` under `EveryAppend`, the completed write under `Interval`.
    pub async fn wait_durable(&self, end_offset: i64) -> Result<()> {
        let durability = match self.config.flush {
            FlushPolicy::EveryAppend => Durability::Synced,
            FlushPolicy::Interval(_) => Durability::Written,
        };
        self.wait(durability, end_offset).await
    }

    async fn flush_once(&self, durability: Durability) -> Result<()> {
        let (file, target, truncations) = {
            let mut guard = self.active.lock().await;
            let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
            active.appender.flush().await?;
            active.appender.drain().await?;
            let state = self.state.borrow();
            (
                active.segment.file().clone(),
                state.next_offset,
                state.truncations,
            )
        };
        self.advance(|state| &mut state.written_offset, target, truncations);
        if durability == Durability::Synced {
            // fdatasync outside the append lock: appends continue while the disk syncs, and
            // the next flush picks them up.
            file.file
                .fdatasync()
                .await
                .map_err(io_error("fdatasync", &file.path))?;
            self.syncs.set(self.syncs.get() + 1);
            self.advance(|state| &mut state.synced_offset, target, truncations);
        }
        Ok(())
    }

    fn advance(&self, field: impl Fn(&mut LogState) -> &mut i64, target: i64, truncations: u64) {
        let mut state = self.state.borrow_mut();
        if state.truncations == truncations {
            let value = field(&mut state);
            *value = (*value).max(target);
        }
        drop(state);
        self.written_advanced.notify(usize::MAX);
    }

    /// Reads whole batches starting with the one holding `offset`, up to `bytes_max` (the
    /// first batch always, as Kafka does), never at or past `end_offset` (e.g. the high
    /// watermark). Recent batches come from the shard's cache; older ones from disk, with
    /// read-ahead kept for the next sequential read.
    pub async fn read(&self, offset: i64, bytes_max: usize, end_offset: i64) -> Result<LogRead> {
        self.check_usable()?;
        let (log_start_offset, next_offset) = {
            let state = self.state.borrow();
            (state.log_start_offset, state.next_offset)
        };
        if offset < log_start_offset || offset > next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset: next_offset,
            });
        }
        let end_offset = end_offset.min(next_offset);
        if offset >= end_offset {
            return Ok(LogRead {
                next_offset: offset,
                ..LogRead::default()
            });
        }
        if let Some(cached) = self
            .shard
            .cache
            .borrow()
            .read(self.id, offset, bytes_max, end_offset)
        {
            return Ok(LogRead {
                batches: cached.batches,
                bytes: cached.bytes,
                next_offset: cached.next_offset,
            });
        }
        // The disk must hold what we are about to read: data still in the appender's chunk
        // is written out first (no fsync needed for visibility).
        if self.written_offset() < end_offset {
            self.wait(Durability::Written, end_offset).await?;
        }
        self.read_from_disk(offset, bytes_max, end_offset).await
    }

    async fn read_from_disk(
        &self,
        offset: i64,
        bytes_max: usize,
        end_offset: i64,
    ) -> Result<LogRead> {
        let mut result = LogRead {
            next_offset: offset,
            ..LogRead::default()
        };
        let mut continuation = self.read_ahead.take();
        let truncations = self.state.borrow().truncations;
        while result.next_offset < end_offset
            && (result.batches.is_empty() || result.bytes < bytes_max)
        {
            let (segment, following) = {
                let state = self.state.borrow();
                let Some((_, segment)) = state.segments.range(..=result.next_offset).next_back()
                else {
                    break;
                };
                let following = state
                    .segments
                    .range(segment.base_offset + 1..)
                    .next()
                    .map(|(base, _)| *base);
                (segment.clone(), following)
            };
            let (position, mut window) = match continuation.take() {
                Some(ahead)
                    if ahead.segment_base == segment.base_offset
                        && ahead.next_offset == result.next_offset
                        && ahead.truncations == truncations
                        && ahead.window.covers(ahead.next_position) =>
                {
                    (ahead.next_position, ahead.window)
                }
                _ => (segment.position_for(result.next_offset), Window::default()),
            };
            let read = segment
                .read(
                    &mut window,
                    position,
                    result.next_offset,
                    bytes_max.saturating_sub(result.bytes),
                    end_offset,
                    segment.written_bytes(),
                    self.config.read_ahead_bytes,
                    self.config.batch_bytes_max,
                )
                .await?;
            result.bytes += read.bytes;
            result.batches.extend(read.batches);
            result.next_offset = read.next_offset;
            match (read.reached_end, following) {
                // The segment is exhausted: offsets continue at the next segment's base.
                (true, Some(next_base)) => result.next_offset = result.next_offset.max(next_base),
                (true, None) => break,
                (false, _) => {
                    continuation = Some(ReadAhead {
                        segment_base: segment.base_offset,
                        next_offset: read.next_offset,
                        next_position: read.next_position,
                        truncations,
                        window,
                    });
                    break;
                }
            }
        }
        if continuation.is_some() {
            *self.read_ahead.borrow_mut() = continuation;
        }
        if result.batches.is_empty() {
            result.next_offset = offset;
        }
        Ok(result)
    }

    /// The first batch whose max timestamp is at least `timestamp`, for ListOffsets by time.
    /// The caller finds the exact record inside it.
    pub async fn find_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        self.check_usable()?;
        let next_offset = self.next_offset();
        if self.written_offset() < next_offset {
            self.wait(Durability::Written, next_offset).await?;
        }
        let candidates: Vec<Rc<Segment>> = {
            let state = self.state.borrow();
            state
                .segments
                .values()
                .filter(|s| s.max_timestamp() >= timestamp)
                .cloned()
                .collect()
        };
        let log_start_offset = self.log_start_offset();
        for segment in candidates {
            let mut position = segment.position_for_timestamp(timestamp);
            let mut window = Window::default();
            loop {
                let read = segment
                    .read(
                        &mut window,
                        position,
                        log_start_offset,
                        1,
                        i64::MAX,
                        segment.written_bytes(),
                        self.config.read_ahead_bytes,
                        self.config.batch_bytes_max,
                    )
                    .await?;
                let Some(batch) = read.batches.into_iter().next() else {
                    break;
                };
                let header = record_batch::RecordBatchHeader::parse(&batch)
                    .map_err(StorageError::InvalidBatch)?;
                if header.max_timestamp.get() >= timestamp {
                    return Ok(Some(batch));
                }
                position = read.next_position;
            }
        }
        Ok(None)
    }

    /// Deletes whole sealed segments past `retention_age_max` (by their newest timestamp)
    /// or beyond `retention_bytes_max`, oldest first, and moves the log start offset.
    /// The active segment is never deleted. Returns how many segments went.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        self.check_usable()?;
        let doomed: Vec<Rc<Segment>> = {
            let state = self.state.borrow();
            let mut total: u64 = state.segments.values().map(|s| s.size()).sum();
            let sealed = state
                .segments
                .values()
                .take(state.segments.len().saturating_sub(1));
            let mut doomed = Vec::new();
            let limits = self.limits.get();
            for segment in sealed {
                let too_old = limits.retention_age_max.is_some_and(|age| {
                    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                    segment.max_timestamp() != i64::MIN
                        && now_ms.saturating_sub(segment.max_timestamp()) > age_ms
                });
                let too_big = limits
                    .retention_bytes_max
                    .is_some_and(|bytes_max| total - segment.size() >= bytes_max);
                if !(too_old || too_big) {
                    break;
                }
                total -= segment.size();
                doomed.push(segment.clone());
            }
            doomed
        };
        let Some(last_doomed) = doomed.last() else {
            return Ok(0);
        };
        let new_start = last_doomed.next_offset();
        let deleted = self.delete_segments(doomed, new_start).await?;
        tracing::info!(log = %self.name, log_start_offset = new_start, deleted, "retention deleted segments");
        Ok(deleted)
    }

    /// Seals the active segment now (if it holds anything) and starts a new one, so that
    /// everything appended so far can later be deleted whole.
    pub async fn roll_segment(&self) -> Result<()> {
        self.check_usable()?;
        let mut guard = self.active.lock().await;
        let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
        if active.segment.size() == 0 {
            return Ok(());
        }
        let next_offset = self.next_offset();
        if let Err(error) = self.roll(active, next_offset).await {
            self.fail(&error);
            return Err(error);
        }
        Ok(())
    }

    /// Moves the log start to `offset` (Kafka's DeleteRecords): offsets below it are no
    /// longer served, and sealed segments wholly below it are deleted.
    pub async fn delete_before(&self, offset: i64) -> Result<usize> {
        self.check_usable()?;
        let offset = offset.min(self.next_offset());
        let doomed: Vec<Rc<Segment>> = {
            let state = self.state.borrow();
            let sealed = state
                .segments
                .values()
                .take(state.segments.len().saturating_sub(1));
            sealed
                .take_while(|segment| segment.next_offset() <= offset)
                .cloned()
                .collect()
        };
        if offset <= self.log_start_offset() {
            return Ok(0);
        }
        self.delete_segments(doomed, offset).await
    }

    /// Removes `doomed` (the oldest segments) and moves the log start to `new_start`.
    async fn delete_segments(&self, doomed: Vec<Rc<Segment>>, new_start: i64) -> Result<usize> {
        {
            let mut state = self.state.borrow_mut();
            for segment in &doomed {
                state.segments.remove(&segment.base_offset);
            }
            state.log_start_offset = state.log_start_offset.max(new_start);
        }
        // Checkpoint first: a crash after it but before the deletions leaves files that the
        // next open deletes, never a log start pointing at deleted data.
        self.write_checkpoint().await?;
        self.shard
            .cache
            .borrow_mut()
            .invalidate_before(self.id, new_start);
        self.read_ahead.take();
        let deleted = doomed.len();
        for segment in &doomed {
            // Skipped for a segment a fetch in flight still holds (beside `doomed`).
            segment.release_space_gradually().await;
            Segment::remove_files(&self.dir, segment.base_offset).await?;
        }
        io::sync_dir(&self.dir).await?;
        for segment in doomed {
            segment.close().await?;
        }
        Ok(deleted)
    }

    /// Removes every offset at or past `offset` (replication will use this). The batch
    /// holding `offset` goes entirely, so the new end is that batch's base offset.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let mut guard = self.active.lock().await;
        let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
        active.appender.flush().await?;
        active.appender.drain().await?;
        if offset >= self.next_offset() {
            return Ok(());
        }
        let (keep, drop_segments) = {
            let state = self.state.borrow();
            let floor = state
                .segments
                .range(..=offset)
                .next_back()
                .map(|(base, _)| *base);
            let keep = floor.and_then(|base| state.segments.get(&base).cloned());
            let drop_segments: Vec<Rc<Segment>> = state
                .segments
                .range(floor.map_or(i64::MIN, |b| b + 1)..)
                .map(|(_, s)| s.clone())
                .collect();
            (keep, drop_segments)
        };
        let result = self
            .truncate_segments(active, keep, drop_segments, offset)
            .await;
        if let Err(error) = &result {
            self.fail(error);
        }
        result
    }

    async fn truncate_segments(
        &self,
        active: &mut Active,
        keep: Option<Rc<Segment>>,
        drop_segments: Vec<Rc<Segment>>,
        offset: i64,
    ) -> Result<()> {
        for segment in &drop_segments {
            self.state
                .borrow_mut()
                .segments
                .remove(&segment.base_offset);
            Segment::remove_files(&self.dir, segment.base_offset).await?;
        }
        let segment = match keep {
            Some(segment) => {
                // Find the start of the batch holding `offset` and cut there.
                let mut window = Window::default();
                let position = segment.position_for(offset);
                // The first batch reaching `offset` is the one to cut at.
                let read = segment
                    .read(
                        &mut window,
                        position,
                        offset,
                        1,
                        i64::MAX,
                        segment.written_bytes(),
                        0,
                        self.config.batch_bytes_max,
                    )
                    .await?;
                let cut = match read.batches.first() {
                    Some(first) => read.next_position - first.len() as u64,
                    None => segment.size(),
                };
                segment
                    .truncate(
                        cut,
                        self.config.index_interval_bytes,
                        self.config.batch_bytes_max,
                    )
                    .await?;
                // Index files of a formerly sealed segment no longer match it.
                Segment::remove_index_files(&self.dir, segment.base_offset).await?;
                segment
            }
            None => {
                // Truncating below the first segment: start over, empty, at `offset`.
                let segment = Segment::create(
                    &self.shard,
                    &self.dir,
                    offset,
                    self.config.index_interval_bytes,
                )
                .await?;
                self.state
                    .borrow_mut()
                    .segments
                    .insert(offset, segment.clone());
                segment
            }
        };
        let file = &segment.file().file;
        file.fdatasync()
            .await
            .map_err(io_error("fdatasync", segment.log_path()))?;
        io::sync_dir(&self.dir).await?;
        let new_end = segment.next_offset();
        let appender = Appender::open(
            segment.file().clone(),
            segment.size(),
            new_end,
            segment.written_handle(),
            &appender_config(&self.config),
        )
        .await?;
        *active = Active {
            segment: segment.clone(),
            appender,
        };
        {
            let mut state = self.state.borrow_mut();
            state.next_offset = new_end;
            state.written_offset = new_end;
            state.synced_offset = new_end;
            state.log_start_offset = state.log_start_offset.min(new_end);
            state.recovery_point = state.recovery_point.min(segment.base_offset);
            state.truncations += 1;
        }
        self.shard
            .cache
            .borrow_mut()
            .invalidate_from(self.id, new_end);
        self.read_ahead.take();
        self.rebuild_producer_state().await?;
        self.write_checkpoint().await?;
        for segment in drop_segments {
            segment.close().await?;
        }
        Ok(())
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
        if let Some(active) = active {
            let size = active.segment.size();
            let file = &active.segment.file().file;
            if flushed.is_ok() {
                // Cut the zero padding after the last batch so the file size is the data size.
                file.truncate(size)
                    .await
                    .map_err(io_error("truncate", active.segment.log_path()))?;
                file.fdatasync()
                    .await
                    .map_err(io_error("fdatasync", active.segment.log_path()))?;
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

    /// Closes the log and removes its directory (topic deletion).
    pub async fn delete(&self) -> Result<()> {
        self.close().await?;
        io::remove_dir_all(&self.dir).await?;
        if let Some(parent) = self.dir.parent() {
            io::sync_dir(parent).await?;
        }
        Ok(())
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

    async fn write_checkpoint(&self) -> Result<()> {
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

struct FlushRunning<'a>(&'a Log);

impl Drop for FlushRunning<'_> {
    fn drop(&mut self) {
        self.0.flush_running.set(false);
        self.0.flush_done.notify(usize::MAX);
    }
}

fn appender_config(config: &LogConfig) -> AppenderConfig {
    AppenderConfig {
        chunk_bytes_min: config.chunk_bytes_min,
        chunk_bytes_max: config.chunk_bytes_max,
        write_behind_max: config.write_behind_max,
        preallocate_bytes: config.preallocate_bytes,
    }
}

/// Background `fdatasync` for `FlushPolicy::Interval`. Ends when the log is dropped or closed.
async fn interval_sync(log: Weak<Log>, interval: Duration) {
    loop {
        glommio::timer::sleep(interval).await;
        let Some(log) = log.upgrade() else {
            return;
        };
        if log.closed.get() {
            return;
        }
        // Up to what was appended by now: with `i64::MAX` the wait chased every later
        // append too, so under steady load this task never slept and synced back to back.
        let target = log.next_offset();
        if let Err(error) = log.wait(Durability::Synced, target).await {
            tracing::error!(log = %log.name, %error, "interval sync failed");
            return;
        }
    }
}

/// Lists and opens the segments of `dir`, recovering what needs it. Removes temp files
/// and index files without a log. Segments after a corrupt one are removed: a log has no
/// holes.
async fn recover_segments(
    shard: &Rc<ShardStorage>,
    dir: &Path,
    name: &str,
    config: &LogConfig,
) -> Result<(BTreeMap<i64, Rc<Segment>>, Checkpoint)> {
    let names = io::list_dir(dir).await?;
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
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_log_file_name(n))
        .collect();
    bases.sort_unstable();
    for stray in names.iter().filter(|n| n.ends_with(".tmp")) {
        io::remove_file_if_exists(&dir.join(stray)).await?;
    }
    // Segments wholly below the log start were deleted by retention, or were about to be.
    let first_kept = bases
        .iter()
        .rposition(|&b| b <= checkpoint.log_start_offset)
        .unwrap_or(0);
    for &base in &bases[..first_kept] {
        Segment::remove_files(dir, base).await?;
    }
    let bases = bases.split_off(first_kept);
    let mut segments = BTreeMap::new();
    let mut cut_at: Option<usize> = None;
    let mut expected_base: Option<i64> = None;
    for (position, &base) in bases.iter().enumerate() {
        let is_last = position + 1 == bases.len();
        let (segment, invalid_tail) = if base < checkpoint.recovery_point && !is_last {
            Segment::open_sealed(
                shard,
                dir,
                base,
                config.index_interval_bytes,
                config.batch_bytes_max,
            )
            .await?
        } else {
            Segment::open_dirty(
                shard,
                dir,
                base,
                config.index_interval_bytes,
                config.batch_bytes_max,
            )
            .await?
        };
        if expected_base.is_some_and(|expected| base < expected) {
            tracing::warn!(log = %name, base_offset = base, "segment overlaps its predecessor; removing it and what follows");
            cut_at = Some(position);
            segment.close().await?;
            break;
        }
        if let Some((at, reason)) = invalid_tail {
            tracing::warn!(log = %name, segment = %segment.log_path().display(), position = at, %reason, "truncated invalid tail");
            segments.insert(base, segment);
            if !is_last {
                cut_at = Some(position + 1);
            }
            break;
        }
        expected_base = Some(segment.next_offset());
        segments.insert(base, segment);
    }
    if let Some(cut) = cut_at {
        for &base in &bases[cut..] {
            Segment::remove_files(dir, base).await?;
        }
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
