//! Removing data: retention and DeleteRecords from the start of the log, truncation from
//! its end.

use std::rc::Rc;

use super::append::appender_config;
use super::{Active, Log};
use crate::storage::appender::Appender;
use crate::storage::error::Result;
use crate::storage::io;
use crate::storage::segment::{Segment, Window};

impl Log {
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
            state.check_invariants();
        }
        // Checkpoint first: a crash after it but before the deletions leaves files that the
        // next open deletes, never a log start pointing at deleted data.
        self.write_checkpoint().await?;
        let start = self.log_start_offset();
        if self.epochs.borrow_mut().truncate_from_start(start) {
            self.write_epochs().await?;
        }
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
        let mut result = self
            .truncate_segments(active, keep, drop_segments, offset)
            .await;
        if result.is_ok()
            && self
                .epochs
                .borrow_mut()
                .truncate_from_end(self.next_offset())
        {
            result = self.write_epochs().await;
        }
        if let Err(error) = &result {
            self.fail(error);
        }
        result
    }

    /// Empties the log and starts it again, empty, at `offset` past its end (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose log ends below the leader's log start
    /// (retention or compaction moved it meanwhile) cannot catch up by fetching, so it drops
    /// what it holds and copies on from there. The epoch history goes with the data.
    pub async fn restart_at(&self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let mut guard = self.active.lock().await;
        let active = guard.as_mut().ok_or_else(|| self.closed_error())?;
        active.appender.flush().await?;
        active.appender.drain().await?;
        if offset <= self.next_offset() {
            return Ok(());
        }
        let every_segment: Vec<Rc<Segment>> =
            self.state.borrow().segments.values().cloned().collect();
        let mut result = self
            .truncate_segments(active, None, every_segment, offset)
            .await;
        if result.is_ok() {
            {
                let mut state = self.state.borrow_mut();
                state.log_start_offset = offset;
                state.check_invariants();
            }
            self.epochs.borrow_mut().truncate_from_end(i64::MIN);
            result = self.write_checkpoint().await;
            if result.is_ok() {
                result = self.write_epochs().await;
            }
        }
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
                self.cut_at_batch_holding(&segment, offset).await?;
                segment
            }
            None => self.start_empty_at(offset).await?,
        };
        // A formerly sealed segment is written again: its file must stay open.
        segment.unseal();
        let file = segment.file().await?;
        io::fdatasync(&file.file, segment.log_path()).await?;
        io::sync_dir(&self.dir).await?;
        let new_end = segment.next_offset();
        let appender = Appender::open(
            file,
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
        self.end_truncated_log(&segment, new_end);
        self.rebuild_producer_state().await?;
        self.write_checkpoint().await?;
        for segment in drop_segments {
            segment.close().await?;
        }
        Ok(())
    }

    /// Cuts `segment` at the start of the batch holding `offset` (at its end if no batch
    /// reaches `offset`).
    async fn cut_at_batch_holding(&self, segment: &Segment, offset: i64) -> Result<()> {
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
                true,
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
        Segment::remove_index_files(&self.dir, segment.base_offset).await
    }

    /// Truncating below the first segment: start over, empty, at `offset`.
    async fn start_empty_at(&self, offset: i64) -> Result<Rc<Segment>> {
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
        Ok(segment)
    }

    /// Ends the log at `new_end`, in `segment` (now the active one): every offset is
    /// written and synced up to there, and what cache and read-ahead held past it is
    /// dropped. A flush that started before this does not advance the offsets.
    fn end_truncated_log(&self, segment: &Segment, new_end: i64) {
        {
            let mut state = self.state.borrow_mut();
            state.next_offset = new_end;
            state.written_offset = new_end;
            state.synced_offset = new_end;
            state.log_start_offset = state.log_start_offset.min(new_end);
            state.recovery_point = state.recovery_point.min(segment.base_offset);
            state.truncations += 1;
            state.check_invariants();
        }
        self.shard
            .cache
            .borrow_mut()
            .invalidate_from(self.id, new_end);
        self.read_ahead.take();
    }
}
