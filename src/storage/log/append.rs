//! Appending: offsets assigned under the append lock, segment roll, and group flush.

use std::rc::Weak;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{Active, AppendOutcome, Durability, Log, LogState};
use crate::record_batch::{self, RecordBatchHeader};
use crate::storage::appender::{Appender, AppenderConfig};
use crate::storage::config::{FlushPolicy, LogConfig};
use crate::storage::error::{Result, StorageError};
use crate::storage::io;
use crate::storage::producer_state::{self, BatchRange, Verdict};
use crate::storage::segment::Segment;

/// Sizes of the pages batch copies are carved from. A page is freed once every batch carved
/// from it has left the cache and every reader is done with it, so each log pins up to a
/// page beyond what the cache accounts: pages are sized to about `CACHE_PAGE_BATCHES` of the
/// log's batches, so a thousand logs of 1 KiB batches pin 16 MiB, not 256 MiB.
const CACHE_PAGE_BYTES_MIN: usize = 16 * 1024;
const CACHE_PAGE_BYTES_MAX: usize = 256 * 1024;
const CACHE_PAGE_BATCHES: usize = 8;

impl Log {
    /// Appends one producer batch (exactly one RecordBatch v2, CRC and every record checked
    /// here: `record_batch::validate`, so nothing a reader cannot walk is stored), assigning
    /// its offsets. Returns once the batch is in the appender's buffer: call [`Log::wait`]
    /// before acknowledging it durably. Nothing of a rejected batch is written.
    ///
    /// Not cancellation-safe: once started, an append must be driven to completion (the
    /// server runs every request in a detached task). `wait` and `read` may be dropped.
    pub async fn append(&self, batch: Bytes, leader_epoch: i32) -> Result<AppendOutcome> {
        self.append_batch(batch, Some(leader_epoch)).await
    }

    /// Appends a batch copied from the partition's leader, with the offsets and leader
    /// epoch the leader gave it: it must start at this log's end. Its CRC and framing are
    /// checked (the leader validated its records); idempotent producers' state is updated
    /// as for a produced batch, so this replica can lead with it later.
    pub async fn append_replica(&self, batch: Bytes) -> Result<AppendOutcome> {
        self.append_batch(batch, None).await
    }

    /// `leader_epoch`: a produced batch, given offsets here and stamped with this epoch;
    /// `None`: a replicated batch, kept as it is.
    async fn append_batch(&self, batch: Bytes, leader_epoch: Option<i32>) -> Result<AppendOutcome> {
        self.check_usable()?;
        let produced = leader_epoch.is_some();
        let header = self.check_batch(&batch, produced)?;
        let total = batch.len();
        let mut guard = self.active.lock().await;
        let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
        self.check_usable()?;
        let base_offset = self.state.borrow().next_offset;
        if leader_epoch.is_none() && header.base_offset.get() != base_offset {
            return Err(StorageError::ReplicaGap {
                expected: base_offset,
                got: header.base_offset.get(),
            });
        }
        let leader_epoch = leader_epoch.unwrap_or(header.partition_leader_epoch.get());
        let last_offset = last_offset_from(&header, base_offset)?;
        let producer = ProducerBatch::of(&header);
        // A replica keeps what its leader accepted: no duplicate check of its own.
        if let Some(duplicate) = self.find_duplicate(producer.filter(|_| produced))? {
            return Ok(duplicate);
        }
        self.record_epoch_start(leader_epoch, base_offset).await?;
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
        // The segment's index keeps positions and offsets relative to the segment base as
        // u32: `should_roll` rolled first unless the batch fits (an empty segment always
        // does, its base being this batch's).
        debug_assert!(
            u32::try_from(position + total as u64).is_ok()
                && u32::try_from(base_offset - active.segment.base_offset).is_ok(),
            "batch at {position} (+{total}), offset {base_offset} overflows the u32 index of segment {}",
            active.segment.base_offset,
        );
        active.segment.on_append(
            position,
            total as u32,
            base_offset,
            last_offset,
            header.max_timestamp.get(),
        );
        self.advance_end(active, base_offset, last_offset, producer);
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

    /// Checks a batch before anything is written: a produced batch in full (every record),
    /// a replicated one by its CRC and framing. Returns its header.
    fn check_batch(&self, batch: &[u8], produced: bool) -> Result<RecordBatchHeader> {
        let view = if produced {
            record_batch::validate(
                batch,
                self.config.batch_bytes_max,
                self.config.record_limits(),
            )?
        } else {
            record_batch::verify(batch, self.config.batch_bytes_max)?
        };
        if view.bytes.len() != batch.len() {
            return Err(StorageError::InvalidBatch(
                record_batch::BatchError::Truncated {
                    declared: view.bytes.len(),
                    available: batch.len(),
                },
            ));
        }
        Ok(*view.header)
    }

    /// An idempotent producer's retry of a batch already in the log: the outcome to answer
    /// it with, the original offsets.
    fn find_duplicate(&self, producer: Option<ProducerBatch>) -> Result<Option<AppendOutcome>> {
        let Some(producer) = producer else {
            return Ok(None);
        };
        let verdict = self.state.borrow().producers.check(
            producer.producer_id,
            producer.epoch,
            producer.first_sequence,
            producer.last_sequence,
        )?;
        if let Verdict::Duplicate {
            base_offset,
            last_offset,
        } = verdict
        {
            return Ok(Some(AppendOutcome {
                base_offset,
                last_offset,
                duplicate: true,
            }));
        }
        Ok(None)
    }

    /// A new leader epoch's first batch: the history names where it starts (durably,
    /// before the batch, so no stored batch is of an epoch the history lacks).
    async fn record_epoch_start(&self, leader_epoch: i32, base_offset: i64) -> Result<()> {
        if self
            .epochs
            .borrow()
            .latest()
            .is_none_or(|(latest, _)| leader_epoch > latest)
        {
            self.epochs.borrow_mut().assign(leader_epoch, base_offset);
            self.write_epochs().await?;
        }
        Ok(())
    }

    /// Moves the log end past a batch the appender has taken, records its producer's
    /// sequences, and wakes the waiters on `written_offset` if the appender's completed
    /// writes moved it.
    fn advance_end(
        &self,
        active: &Active,
        base_offset: i64,
        last_offset: i64,
        producer: Option<ProducerBatch>,
    ) {
        let advanced = {
            let mut state = self.state.borrow_mut();
            state.next_offset = last_offset + 1;
            if let Some(producer) = producer {
                let range = BatchRange {
                    first_sequence: producer.first_sequence,
                    last_sequence: producer.last_sequence,
                    base_offset,
                    last_offset,
                };
                state
                    .producers
                    .record(producer.producer_id, producer.epoch, range);
            }
            let written = active.appender.written_offset();
            let advanced = written > state.written_offset;
            state.written_offset = state.written_offset.max(written);
            state.check_invariants();
            advanced
        };
        if advanced {
            self.written_advanced.notify(usize::MAX);
        }
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
    pub(super) async fn roll(&self, active: &mut Active, next_offset: i64) -> Result<()> {
        active.appender.flush().await?;
        active.appender.drain().await?;
        let sealed = active.segment.clone();
        let sealed_file = sealed.file().await?;
        let file = &sealed_file.file;
        io::truncate(file, sealed.log_path(), sealed.size()).await?;
        io::fdatasync(file, sealed.log_path()).await?;
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
            segment.file().await?,
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
            state.check_invariants();
        }
        *active = Active { segment, appender };
        // The old appender is gone with its handle: the sealed file may now be closed
        // while unused.
        drop(sealed_file);
        sealed.seal();
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
            // The active segment's file is always open (its appender holds it).
            let file = active.segment.file().await?;
            let state = self.state.borrow();
            (file, state.next_offset, state.truncations)
        };
        self.advance(|state| &mut state.written_offset, target, truncations);
        if durability == Durability::Synced {
            // fdatasync outside the append lock: appends continue while the disk syncs, and
            // the next flush picks them up.
            io::fdatasync(&file.file, &file.path).await?;
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
            state.check_invariants();
        }
        drop(state);
        self.written_advanced.notify(usize::MAX);
    }
}

struct FlushRunning<'a>(&'a Log);

impl Drop for FlushRunning<'_> {
    fn drop(&mut self) {
        self.0.flush_running.set(false);
        self.0.flush_done.notify(usize::MAX);
    }
}

/// The idempotent producer that wrote a batch, and the sequences the batch covers.
#[derive(Clone, Copy)]
struct ProducerBatch {
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    last_sequence: i32,
}

impl ProducerBatch {
    /// `None` for a batch of no idempotent producer (a negative producer id).
    fn of(header: &RecordBatchHeader) -> Option<ProducerBatch> {
        (header.producer_id.get() >= 0).then(|| {
            let first = header.base_sequence.get();
            ProducerBatch {
                producer_id: header.producer_id.get(),
                epoch: header.producer_epoch.get(),
                first_sequence: first,
                last_sequence: producer_state::last_sequence(first, header.last_offset_delta.get()),
            }
        })
    }
}

/// The offset of a batch's last record once it is given `base_offset`; a delta that
/// overflows the offset range is a malformed batch.
fn last_offset_from(header: &RecordBatchHeader, base_offset: i64) -> Result<i64> {
    let delta = i64::from(header.last_offset_delta.get());
    base_offset
        .checked_add(delta)
        .ok_or(StorageError::InvalidBatch(
            record_batch::BatchError::BadLength(header.batch_length.get()),
        ))
}

pub(super) fn appender_config(config: &LogConfig) -> AppenderConfig {
    AppenderConfig {
        chunk_bytes_min: config.chunk_bytes_min,
        chunk_bytes_max: config.chunk_bytes_max,
        write_behind_max: config.write_behind_max,
        preallocate_bytes: config.preallocate_bytes,
    }
}

/// Background `fdatasync` for `FlushPolicy::Interval`. Ends when the log is dropped or closed.
pub(super) async fn interval_sync(log: Weak<Log>, interval: Duration) {
    loop {
        crate::runtime::time::sleep(interval).await;
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
