//! Reads: whole batches from the shard's cache or from disk with read-ahead, and the
//! lookup by timestamp.

use std::rc::Rc;

use bytes::Bytes;

use super::{Durability, Log, LogRead, ReadAhead};
use crate::record_batch;
use crate::storage::error::{Result, StorageError};
use crate::storage::segment::{Segment, Window};

impl Log {
    /// Reads whole batches starting with the one holding `offset`, up to `bytes_max`, never
    /// at or past `end_offset` (e.g. the high watermark). With `min_one` the first batch is
    /// returned even if it alone exceeds `bytes_max` (Kafka's minOneMessage, KIP-74), so a
    /// reader always makes progress; without it the read is empty when the first batch does
    /// not fit (a fetch's later partitions, which must stay within the response's budget).
    /// Recent batches come from the shard's cache; older ones from disk, with read-ahead
    /// kept for the next sequential read.
    pub async fn read(
        &self,
        offset: i64,
        bytes_max: usize,
        end_offset: i64,
        min_one: bool,
    ) -> Result<LogRead> {
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
            .read(self.id, offset, bytes_max, end_offset, min_one)
        {
            let next_offset = if cached.batches.is_empty() {
                offset
            } else {
                cached.next_offset
            };
            return Ok(LogRead {
                batches: cached.batches,
                bytes: cached.bytes,
                next_offset,
            });
        }
        // The disk must hold what we are about to read: data still in the appender's chunk
        // is written out first (no fsync needed for visibility).
        if self.written_offset() < end_offset {
            self.wait(Durability::Written, end_offset).await?;
        }
        match self
            .read_from_disk(offset, bytes_max, end_offset, min_one)
            .await
        {
            // Retention deleted the segment meanwhile, and its file, closed by the shard's
            // file cache, could not be reopened: the offset is simply gone.
            Err(_) if self.log_start_offset() > offset => Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.next_offset(),
            }),
            read => read,
        }
    }

    async fn read_from_disk(
        &self,
        offset: i64,
        bytes_max: usize,
        end_offset: i64,
        min_one: bool,
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
            let Some((segment, following)) = self.segment_holding(result.next_offset) else {
                break;
            };
            let (position, mut window) = resume_at(
                continuation.take(),
                &segment,
                result.next_offset,
                truncations,
            );
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
                    // Only the read's first batch may exceed the budget, whichever
                    // segment it comes from.
                    min_one && result.batches.is_empty(),
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

    /// The segment that holds `offset` if the log has it (the last one starting at or below
    /// it), and the base offset of the segment after it, if any.
    fn segment_holding(&self, offset: i64) -> Option<(Rc<Segment>, Option<i64>)> {
        let state = self.state.borrow();
        let (_, segment) = state.segments.range(..=offset).next_back()?;
        let following = state
            .segments
            .range(segment.base_offset + 1..)
            .next()
            .map(|(base, _)| *base);
        Some((segment.clone(), following))
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
                        true,
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
}

/// Where to read `segment` from to reach `offset`, and the read-ahead window to read with:
/// the previous read's position and window if it stopped exactly there (in this segment,
/// with no truncation since, and its window still holding that position), otherwise the
/// index's position and an empty window.
fn resume_at(
    continuation: Option<ReadAhead>,
    segment: &Segment,
    offset: i64,
    truncations: u64,
) -> (u64, Window) {
    match continuation {
        Some(ahead)
            if ahead.segment_base == segment.base_offset
                && ahead.next_offset == offset
                && ahead.truncations == truncations
                && ahead.window.covers(ahead.next_position) =>
        {
            (ahead.next_position, ahead.window)
        }
        _ => (segment.position_for(offset), Window::default()),
    }
}
