//! The segment appender: fills aligned DMA chunks and writes them with O_DIRECT
//! (`DmaFile::write_at`), Redpanda-style, instead of glommio's `DmaStreamWriter`
//! (single waker, whole-buffer syncs).
//!
//! Contract: **only one `append`/`flush`/`drain` may be in progress at a time** (the log
//! holds its append lock around every call). The appender is not re-entrant.
//!
//! - Appends copy bytes into the current chunk. A full chunk is written in the background
//!   (write-behind, at most `write_behind_max` writes in flight) and a fresh one started.
//!   A large batch that does not fit sends the chunk as it is and gets a fresh chunk sized
//!   for it, so it leaves as one write.
//! - `flush` writes the unwritten part of the current chunk, padded with zeros to the block
//!   size. The partial last block is carried into the next chunk and written again by the
//!   next write (partial-page rewrite). Buffers are handed to the kernel trimmed, not copied:
//!   the only copy is the carried block (less than one block).
//! - Chunk size adapts between `chunk_bytes_min` and `chunk_bytes_max`: a chunk that fills
//!   before any flush doubles the next one (large sequential I/Os for busy logs; this disk
//!   is IOPS-bound at small sizes), a flush halves it (small buffers for idle or
//!   latency-bound logs, which matters with many partitions per shard).
//! - Two writes that touch the same block are never in flight together: the device could
//!   apply them out of order and leave the older bytes. A write that overlaps the previous
//!   one first waits for all writes in flight.
//! - Space is reserved ahead of the head with `fallocate(KEEP_SIZE)`, so the file size
//!   still tells how far data was written; the reservation grows with the segment (1 MiB
//!   first, up to `preallocate_bytes`).
//! - `written_offset` advances, in order, as writes complete: every batch below it is on
//!   the device (survives a process crash). Durability against power loss is `fdatasync`,
//!   which the log issues.

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use glommio::io::DmaBuffer;
use glommio::Task;

use super::error::{io_error, Result, StorageError};
use super::faults::{self, FaultOp};
use super::files::SharedFile;
use super::io;

/// The first reservation of a segment (see `reserve_space`).
const PREALLOCATE_FIRST_BYTES: u64 = 1 << 20;

type WriteTask = Task<std::result::Result<usize, std::io::Error>>;

struct InflightWrite {
    task: WriteTask,
    bytes: usize,
    /// Logical file size covered once this write (and all before it) complete.
    logical_end: u64,
}

/// A batch boundary: once `logical_end` bytes are written, every offset below
/// `next_offset` is on the device.
struct Mark {
    logical_end: u64,
    next_offset: i64,
}

pub struct Appender {
    file: Rc<SharedFile>,
    alignment: u64,
    chunk_bytes_min: usize,
    chunk_bytes_max: usize,
    /// Capacity of the next fresh chunk; adapts between the two bounds.
    chunk_bytes_next: usize,
    chunk: DmaBuffer,
    /// File position of `chunk[0]`; a multiple of `alignment`.
    chunk_position: u64,
    /// Valid bytes in `chunk`.
    chunk_len: usize,
    /// Bytes of `chunk` already covered by a submitted write.
    chunk_submitted: usize,
    inflight: VecDeque<InflightWrite>,
    write_behind_max: usize,
    /// End of the last submitted write (block-aligned).
    submitted_end: u64,
    marks: VecDeque<Mark>,
    written_bytes: u64,
    /// The segment's view of `written_bytes`, for readers.
    written_shared: Rc<Cell<u64>>,
    written_offset: i64,
    preallocated_end: u64,
    preallocate_bytes: u64,
}

pub struct AppenderConfig {
    pub chunk_bytes_min: usize,
    pub chunk_bytes_max: usize,
    pub write_behind_max: usize,
    pub preallocate_bytes: u64,
}

impl Appender {
    /// Starts appending at `logical_end`, where offsets continue from `next_offset`.
    /// The partial block before `logical_end` is read back so the next write can rewrite it.
    pub async fn open(
        file: Rc<SharedFile>,
        logical_end: u64,
        next_offset: i64,
        written_shared: Rc<Cell<u64>>,
        config: &AppenderConfig,
    ) -> Result<Appender> {
        let alignment = file.file.alignment().max(512);
        let chunk_position = logical_end - logical_end % alignment;
        let mut chunk = file.file.alloc_dma_buffer(config.chunk_bytes_min);
        let hydrated = (logical_end - chunk_position) as usize;
        if hydrated > 0 {
            let block = file
                .file
                .read_at_aligned(chunk_position, alignment as usize)
                .await
                .map_err(io_error("read last block", &file.path))?;
            if block.len() < hydrated {
                return Err(short_read(&file.path, chunk_position));
            }
            chunk.as_bytes_mut()[..hydrated].copy_from_slice(&block[..hydrated]);
        }
        Ok(Appender {
            file,
            alignment,
            chunk_bytes_min: config.chunk_bytes_min,
            chunk_bytes_max: config.chunk_bytes_max,
            chunk_bytes_next: config.chunk_bytes_min,
            chunk,
            chunk_position,
            chunk_len: hydrated,
            chunk_submitted: hydrated,
            inflight: VecDeque::new(),
            write_behind_max: config.write_behind_max,
            submitted_end: logical_end,
            marks: VecDeque::new(),
            written_bytes: logical_end,
            written_shared,
            written_offset: next_offset,
            preallocated_end: 0,
            preallocate_bytes: config.preallocate_bytes,
        })
    }

    /// Bytes appended so far (the segment's logical size).
    pub fn logical_size(&self) -> u64 {
        self.chunk_position + self.chunk_len as u64
    }

    /// Every offset below this is on the device.
    pub fn written_offset(&self) -> i64 {
        self.written_offset
    }

    /// Appends one batch, after which offsets continue at `next_offset`.
    pub async fn append(&mut self, mut data: &[u8], next_offset: i64) -> Result<()> {
        let room = self.chunk.len() - self.chunk_len;
        if data.len() > room && data.len() >= self.chunk_bytes_min {
            // A large batch that does not fit: send what the chunk holds, then size the
            // fresh chunk (which holds at most one carried block) for the whole batch, so
            // it leaves as one write rather than several chunk-sized round trips.
            self.submit_chunk(false).await?;
            self.grow_chunk_for(data.len());
        }
        while !data.is_empty() {
            let room = self.chunk.len() - self.chunk_len;
            let take = room.min(data.len());
            self.chunk.as_bytes_mut()[self.chunk_len..self.chunk_len + take]
                .copy_from_slice(&data[..take]);
            self.chunk_len += take;
            data = &data[take..];
            if self.chunk_len == self.chunk.len() {
                self.chunk_bytes_next = (self.chunk_bytes_next * 2).min(self.chunk_bytes_max);
                self.submit_chunk(false).await?;
            }
        }
        self.marks.push_back(Mark {
            logical_end: self.logical_size(),
            next_offset,
        });
        Ok(())
    }

    /// Submits everything appended so far (padding the last block) without waiting.
    pub async fn flush(&mut self) -> Result<()> {
        if self.chunk_submitted == self.chunk_len {
            return Ok(());
        }
        self.chunk_bytes_next = (self.chunk_bytes_next / 2).max(self.chunk_bytes_min);
        self.submit_chunk(true).await
    }

    /// Waits for every submitted write.
    pub async fn drain(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    /// Waits for every submitted write, failed or not (a failed log closing: nothing it
    /// submitted may land on disk after the log is reopened and scanned).
    pub async fn settle(&mut self) {
        while !self.inflight.is_empty() {
            let _ = self.complete_oldest().await;
        }
    }

    /// Makes room for `incoming` bytes after what the chunk holds (called when it holds at
    /// most one carried block, so the copy is small).
    fn grow_chunk_for(&mut self, incoming: usize) {
        let needed = self.chunk_len + incoming;
        if needed <= self.chunk.len() {
            return;
        }
        let capacity = needed.div_ceil(self.chunk_bytes_min) * self.chunk_bytes_min;
        let mut grown = self.file.file.alloc_dma_buffer(capacity);
        grown.as_bytes_mut()[..self.chunk_len]
            .copy_from_slice(&self.chunk.as_bytes()[..self.chunk_len]);
        self.chunk = grown;
    }

    /// Writes the chunk from its first unsubmitted block: up to its last whole block, or,
    /// with `pad`, through its last partial block padded with zeros. The partial block is
    /// carried into a fresh chunk so the next write rewrites it.
    async fn submit_chunk(&mut self, pad: bool) -> Result<()> {
        let start = self.align_down(self.chunk_submitted);
        let whole = self.align_down(self.chunk_len);
        let end = if pad {
            self.align_up(self.chunk_len)
        } else {
            whole
        };
        if end <= start {
            return Ok(());
        }
        if pad {
            self.chunk.as_bytes_mut()[self.chunk_len..end].fill(0);
        }
        let carry = self.chunk_len - whole;
        let capacity = self.chunk_bytes_next.max(self.align_up(carry));
        let mut fresh = self.file.file.alloc_dma_buffer(capacity);
        fresh.as_bytes_mut()[..carry]
            .copy_from_slice(&self.chunk.as_bytes()[whole..self.chunk_len]);
        let mut full = std::mem::replace(&mut self.chunk, fresh);
        let buffer = if start == 0 {
            full.trim_to_size(end);
            full
        } else {
            // Never reached in practice (a carried block starts a chunk, and it is less than
            // one block), but correct if it were.
            let mut part = self.file.file.alloc_dma_buffer(end - start);
            part.as_bytes_mut()
                .copy_from_slice(&full.as_bytes()[start..end]);
            part
        };
        let position = self.chunk_position + start as u64;
        let logical_end = self.chunk_position + self.chunk_len.min(end) as u64;
        self.chunk_position += whole as u64;
        self.chunk_len = carry;
        self.chunk_submitted = if pad { carry } else { 0 };
        self.submit(buffer, position, logical_end).await
    }

    async fn submit(&mut self, buffer: DmaBuffer, position: u64, logical_end: u64) -> Result<()> {
        if position < self.submitted_end {
            self.drain().await?;
        }
        while self.inflight.len() >= self.write_behind_max {
            self.complete_oldest().await?;
        }
        let end = position + buffer.len() as u64;
        self.reserve_space(end).await?;
        let bytes = buffer.len();
        let file = self.file.clone();
        let fault = faults::check(FaultOp::Write, &file.path);
        let task = glommio::spawn_local(async move {
            match fault {
                None => file
                    .file
                    .write_at(buffer, position)
                    .await
                    .map_err(std::io::Error::from),
                Some(kind) => Err(io::write_faulty(&file.file, buffer, position, kind).await),
            }
        });
        self.inflight.push_back(InflightWrite {
            task,
            bytes,
            logical_end,
        });
        self.submitted_end = end;
        Ok(())
    }

    async fn complete_oldest(&mut self) -> Result<()> {
        let Some(write) = self.inflight.pop_front() else {
            return Ok(());
        };
        let written = write
            .task
            .await
            .map_err(io_error("write", &self.file.path))?;
        if written != write.bytes {
            return Err(short_write(&self.file.path, written, write.bytes));
        }
        self.written_bytes = self.written_bytes.max(write.logical_end);
        self.written_shared.set(self.written_bytes);
        while let Some(mark) = self.marks.front() {
            if mark.logical_end > self.written_bytes {
                break;
            }
            self.written_offset = mark.next_offset;
            self.marks.pop_front();
        }
        Ok(())
    }

    async fn reserve_space(&mut self, end: u64) -> Result<()> {
        if end <= self.preallocated_end || self.preallocate_bytes == 0 {
            return Ok(());
        }
        // Ahead in proportion to what the segment holds, from 1 MiB up to
        // `preallocate_bytes`: an idle partition reserves 1 MiB, not the full step, so a
        // broker with a thousand quiet partitions does not hold 32 GB of disk for nothing
        // (a full disk fails every log), while a busy segment soon reserves full steps.
        let step = end.clamp(
            PREALLOCATE_FIRST_BYTES.min(self.preallocate_bytes),
            self.preallocate_bytes,
        );
        let target = end.div_ceil(step) * step;
        io::fallocate(&self.file.file, &self.file.path, target).await?;
        self.preallocated_end = target;
        Ok(())
    }

    fn align_down(&self, value: usize) -> usize {
        value - value % self.alignment as usize
    }

    fn align_up(&self, value: usize) -> usize {
        value.div_ceil(self.alignment as usize) * self.alignment as usize
    }
}

fn short_write(path: &Path, written: usize, expected: usize) -> StorageError {
    StorageError::Io {
        op: "write",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {written} of {expected} bytes"),
        ),
    }
}

fn short_read(path: &Path, position: u64) -> StorageError {
    StorageError::Io {
        op: "read last block",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("file ends before byte {position}"),
        ),
    }
}
