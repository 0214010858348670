//! One segment: `<20-digit base offset>.log` with its `.index` and `.timeindex`.
//!
//! The `.log` holds RecordBatch v2 bytes back to back. Index files are written only when a
//! segment is sealed (rolled or closed cleanly); the active segment's index lives in memory
//! and is rebuilt by a scan on open. Every byte read from disk is checked before use:
//! framing and length caps first, then CRC-32C.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::error::{io_error, Result, StorageError};
use super::files::{SegmentFile, SharedFile};
use super::index::SegmentIndex;
use super::io;
use super::shard::ShardStorage;
use crate::record_batch::{self, BatchError, RecordBatchHeader, HEADER_BYTES};

/// A batch the recovery scan accepted, as the segment's index and offsets need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    pub relative_offset: u32,
    pub position: u32,
    pub total_bytes: u32,
    pub max_timestamp: i64,
    /// The offset after the batch's last record.
    pub next_offset: i64,
}

/// The recovery scan's first step at a batch start, pure: from the header bytes there
/// (at most `HEADER_BYTES`) and the `available` bytes left in the file, the batch's total
/// size, if sane, present and within `batch_bytes_max`.
pub fn scan_header(
    header_bytes: &[u8],
    available: usize,
    batch_bytes_max: usize,
) -> std::result::Result<usize, BatchError> {
    let total = RecordBatchHeader::parse(header_bytes)?.total_bytes()?;
    if total > available {
        return Err(BatchError::Truncated {
            declared: total,
            available,
        });
    }
    if total > batch_bytes_max {
        return Err(BatchError::TooLarge {
            size: total,
            limit: batch_bytes_max,
        });
    }
    Ok(total)
}

/// The recovery scan's decision on one whole batch at `position` of the segment based at
/// `segment_base`, pure: the cheap `verify` (records are not walked: readers of stored data
/// walk them within bounds), then offsets that continue the log (no overlap, no overflow,
/// representable as u32 relative to the segment base) and a position that fits the index.
pub fn scan_batch(
    bytes: &[u8],
    position: u64,
    segment_base: i64,
    next_offset: i64,
    batch_bytes_max: usize,
) -> std::result::Result<ScannedBatch, BatchError> {
    let view = record_batch::verify(bytes, batch_bytes_max)?;
    let header = view.header;
    let bad = || BatchError::BadLength(header.batch_length.get());
    let base = header.base_offset.get();
    let relative_offset = base
        .checked_sub(segment_base)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(bad)?;
    let last = header.last_offset().ok_or_else(bad)?;
    let next = last.checked_add(1).ok_or_else(bad)?;
    let position = u32::try_from(position).map_err(|_| bad())?;
    let total_bytes = u32::try_from(view.bytes.len()).map_err(|_| bad())?;
    if base < next_offset {
        return Err(bad());
    }
    Ok(ScannedBatch {
        relative_offset,
        position,
        total_bytes,
        max_timestamp: header.max_timestamp.get(),
        next_offset: next,
    })
}

/// Index files are bounded by the segment size: one entry per `index_interval_bytes`.
const INDEX_FILE_BYTES_MAX: usize = 64 << 20;
/// Bytes read at once while scanning a segment on recovery.
const SCAN_WINDOW_BYTES: usize = 1 << 20;
/// Largest disk read one `Segment::read` call asks for to cover its byte budget at once
/// (beyond `read_ahead_bytes`). A fetch budget may be up to `fetch.max.bytes` (1 GiB at
/// most), but one pinned DMA buffer that large would be as costly as it is rare: bigger
/// budgets are read window by window.
const READ_WINDOW_BYTES_MAX: usize = 8 << 20;

/// How much of a deleted segment is freed at a time, and the pause between steps
/// (`Segment::release_space_gradually`).
const RELEASE_STEP_BYTES: u64 = 32 << 20;
const RELEASE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Parses a segment file name such as `00000000000000000042.log` into its base offset.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct Segment {
    pub base_offset: i64,
    log_path: PathBuf,
    /// The `.log`: always open while the segment is active; a sealed segment's may be closed
    /// by the shard's file cache and is reopened on use (`Segment::file`).
    file: Rc<SegmentFile>,
    /// Logical bytes of batches in the segment (appended, whether written yet or not).
    size: Cell<u64>,
    /// Bytes the appender has finished writing; readers never read past it.
    written: Rc<Cell<u64>>,
    /// Offset after the last batch.
    next_offset: Cell<i64>,
    index: RefCell<SegmentIndex>,
    created_at: Instant,
}

/// What a recovery scan found.
pub struct ScanOutcome {
    pub valid_bytes: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Where and why the scan stopped before the end of the file, if it did.
    pub invalid_tail: Option<(u64, BatchError)>,
}

/// What recovery may do with invalid bytes found in a segment's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidTail {
    /// The last segment of a log: a crash may have torn its last writes; cut them.
    Cut,
    /// An earlier segment, synced whole before its successor was created: invalid bytes
    /// there are damage. Report them and change nothing.
    Keep,
}

/// A run of whole batches read from one segment.
pub struct SegmentRead {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    pub next_offset: i64,
    /// File position after the last batch returned.
    pub next_position: u64,
    /// True when the read stopped at the end of the segment's data.
    pub reached_end: bool,
}

impl Segment {
    /// A segment with no batches yet (a scan or `with_size` fills in what the file holds).
    fn empty(
        base_offset: i64,
        log_path: PathBuf,
        file: Rc<SegmentFile>,
        index_interval_bytes: u32,
    ) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size: Cell::new(0),
            written: Rc::new(Cell::new(0)),
            next_offset: Cell::new(base_offset),
            index: RefCell::new(SegmentIndex::new(index_interval_bytes)),
            created_at: crate::runtime::time::now(),
        }
    }

    fn with_size(self, size: u64) -> Segment {
        self.size.set(size);
        self.written.set(size);
        self
    }

    pub fn paths(dir: &Path, base_offset: i64) -> [PathBuf; 3] {
        let stem = file_stem(base_offset);
        ["log", "index", "timeindex"].map(|extension| dir.join(format!("{stem}.{extension}")))
    }

    /// Creates an empty segment. The caller syncs the directory.
    pub async fn create(
        shard: &ShardStorage,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
    ) -> Result<Rc<Segment>> {
        let [log_path, _, _] = Segment::paths(dir, base_offset);
        let file = SegmentFile::open(&shard.files, log_path.clone(), true).await?;
        Ok(Rc::new(Segment::empty(
            base_offset,
            log_path,
            file,
            index_interval_bytes,
        )))
    }

    /// Opens a sealed segment whose index files were written when it was sealed. Falls back
    /// to a full scan when they are missing or damaged; a sealed segment is never cut, so
    /// any invalid bytes the scan finds are returned and left on disk.
    pub async fn open_sealed(
        shard: &ShardStorage,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
    ) -> Result<(Rc<Segment>, Option<(u64, BatchError)>)> {
        let [log_path, index_path, time_path] = Segment::paths(dir, base_offset);
        let file = SegmentFile::open(&shard.files, log_path.clone(), false).await?;
        let size = file
            .get()
            .await?
            .file
            .file_size()
            .await
            .map_err(io_error("stat", &log_path))?;
        let loaded = load_index(&index_path, &time_path, index_interval_bytes, size).await?;
        let segment = Rc::new(
            Segment::empty(base_offset, log_path, file, index_interval_bytes).with_size(size),
        );
        if let Some(index) = loaded {
            // The next offset is the last batch's end; find it from the last index entry.
            let from = index.lookup(u32::MAX);
            *segment.index.borrow_mut() = index;
            if let Some(next_offset) = segment
                .last_batch_end(u64::from(from), batch_bytes_max)
                .await?
            {
                segment.next_offset.set(next_offset);
                return Ok((segment, None));
            }
        }
        let invalid_tail = segment
            .recover(index_interval_bytes, batch_bytes_max, InvalidTail::Keep)
            .await?;
        Ok((segment, invalid_tail))
    }

    /// Opens a segment that may have a torn or corrupt tail: scans every batch, checks CRC,
    /// offsets and lengths, rebuilds the index, and (`InvalidTail::Cut`) truncates at the
    /// first bad batch. Returns where and why the valid data ends, if before the file does.
    pub async fn open_dirty(
        shard: &ShardStorage,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
        invalid_tail: InvalidTail,
    ) -> Result<(Rc<Segment>, Option<(u64, BatchError)>)> {
        let [log_path, _, _] = Segment::paths(dir, base_offset);
        let file = SegmentFile::open(&shard.files, log_path.clone(), false).await?;
        let segment = Rc::new(Segment::empty(
            base_offset,
            log_path,
            file,
            index_interval_bytes,
        ));
        let invalid_tail = segment
            .recover(index_interval_bytes, batch_bytes_max, invalid_tail)
            .await?;
        Ok((segment, invalid_tail))
    }

    async fn recover(
        &self,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
        invalid_tail: InvalidTail,
    ) -> Result<Option<(u64, BatchError)>> {
        let file = self.file().await?;
        let file_size = file
            .file
            .file_size()
            .await
            .map_err(io_error("stat", &self.log_path))?;
        let outcome = self
            .scan(file_size, index_interval_bytes, batch_bytes_max)
            .await?;
        if outcome.valid_bytes < file_size && invalid_tail == InvalidTail::Cut {
            // Cut the torn or corrupt tail (and any zero padding) so it is never served.
            io::truncate(&file.file, &self.log_path, outcome.valid_bytes).await?;
            io::fdatasync(&file.file, &self.log_path).await?;
        }
        self.size.set(outcome.valid_bytes);
        self.written.set(outcome.valid_bytes);
        self.next_offset.set(outcome.next_offset);
        *self.index.borrow_mut() = outcome.index;
        Ok(outcome.invalid_tail)
    }

    /// Scans `[0, file_size)`, validating each batch, until the first invalid one.
    pub async fn scan(
        &self,
        file_size: u64,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
    ) -> Result<ScanOutcome> {
        let file = self.file().await?;
        let mut index = SegmentIndex::new(index_interval_bytes);
        let mut position = 0u64;
        let mut next_offset = self.base_offset;
        let mut window = Window::default();
        let invalid_tail = loop {
            if position >= file_size {
                break None;
            }
            let available = (file_size - position) as usize;
            let header_bytes = window
                .get(
                    &file,
                    position,
                    HEADER_BYTES.min(available),
                    SCAN_WINDOW_BYTES,
                    file_size,
                )
                .await?;
            let total = match scan_header(header_bytes, available, batch_bytes_max) {
                Ok(total) => total,
                Err(error) => break Some((position, error)),
            };
            let bytes = window
                .get(&file, position, total, SCAN_WINDOW_BYTES, file_size)
                .await?;
            let scanned = match scan_batch(
                bytes,
                position,
                self.base_offset,
                next_offset,
                batch_bytes_max,
            ) {
                Ok(scanned) => scanned,
                Err(error) => break Some((position, error)),
            };
            index.on_batch(
                scanned.relative_offset,
                scanned.position,
                scanned.total_bytes,
                scanned.max_timestamp,
            );
            next_offset = scanned.next_offset;
            position += u64::from(scanned.total_bytes);
            glommio::yield_if_needed().await;
        };
        Ok(ScanOutcome {
            valid_bytes: position,
            next_offset,
            index,
            invalid_tail,
        })
    }

    /// Walks batch headers from `position` (a batch start) up to `limit`, calling `visit`
    /// with each; `visit` returns false to stop. Returns true if the headers tile the whole
    /// range (every length sane and within `batch_bytes_max`) and `visit` never stopped.
    async fn walk_headers(
        &self,
        mut position: u64,
        limit: u64,
        batch_bytes_max: usize,
        mut visit: impl FnMut(&RecordBatchHeader) -> bool,
    ) -> Result<bool> {
        let file = self.file().await?;
        let mut window = Window::default();
        while position < limit {
            let available = (limit - position) as usize;
            let bytes = window
                .get(
                    &file,
                    position,
                    HEADER_BYTES.min(available),
                    SCAN_WINDOW_BYTES,
                    limit,
                )
                .await?;
            let Ok(header) = RecordBatchHeader::parse(bytes) else {
                return Ok(false);
            };
            let header = *header;
            let Ok(total) = header.total_bytes() else {
                return Ok(false);
            };
            if total > available || total > batch_bytes_max.max(HEADER_BYTES) || !visit(&header) {
                return Ok(false);
            }
            position += total as u64;
        }
        Ok(true)
    }

    /// The offset after the last batch, walking headers from `position` (a batch start) to
    /// the end of the segment; `None` if they do not tile it with increasing offsets.
    async fn last_batch_end(&self, position: u64, batch_bytes_max: usize) -> Result<Option<i64>> {
        let mut next_offset = self.base_offset;
        let tiled = self
            .walk_headers(
                position,
                self.size.get(),
                batch_bytes_max,
                |header| match header.last_offset() {
                    Some(last) if header.base_offset.get() >= next_offset => {
                        next_offset = last + 1;
                        true
                    }
                    _ => false,
                },
            )
            .await?;
        Ok(tiled.then_some(next_offset))
    }

    /// Calls `visit` with the header of every batch in the segment, in order (headers only:
    /// for rebuilding state, not for serving data). Stops quietly at anything malformed.
    pub async fn visit_headers(
        &self,
        batch_bytes_max: usize,
        mut visit: impl FnMut(&RecordBatchHeader),
    ) -> Result<()> {
        self.walk_headers(0, self.written_bytes(), batch_bytes_max, |header| {
            visit(header);
            true
        })
        .await
        .map(drop)
    }

    pub fn size(&self) -> u64 {
        self.size.get()
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.get()
    }

    /// Bytes on disk that readers may read (writes completed).
    pub fn written_bytes(&self) -> u64 {
        self.written.get()
    }

    /// Shared with the appender, which advances it as writes complete.
    pub fn written_handle(&self) -> Rc<Cell<u64>> {
        self.written.clone()
    }

    /// Closes the segment's file if this was the last handle to it.
    pub async fn close(self: Rc<Self>) -> Result<()> {
        match Rc::try_unwrap(self) {
            Ok(segment) => segment.file.close().await,
            Err(_still_shared) => Ok(()),
        }
    }

    /// The segment will not change again: its file may be closed while no read uses it,
    /// and is reopened on the next read.
    pub fn seal(&self) {
        self.file.seal();
    }

    /// Truncation made this sealed segment the active one again: its file stays open.
    pub fn unseal(&self) {
        self.file.unseal();
    }

    /// Closes a sealed segment's file until a read needs it (segments opened at start:
    /// most are never read, and a broker may hold far more than it may keep open).
    pub async fn release_file(&self) -> Result<()> {
        self.file.release().await
    }

    pub fn max_timestamp(&self) -> i64 {
        self.index.borrow().max_timestamp()
    }

    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// The open `.log`, reopened if the shard's file cache closed it. Held for one
    /// operation: a held file cannot be closed to make room for another.
    pub async fn file(&self) -> Result<Rc<SharedFile>> {
        self.file.get().await
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Records a batch the appender has taken.
    pub fn on_append(
        &self,
        position: u64,
        bytes: u32,
        base_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
    ) {
        let relative = (base_offset - self.base_offset) as u32;
        self.index
            .borrow_mut()
            .on_batch(relative, position as u32, bytes, max_timestamp);
        self.size.set(position + u64::from(bytes));
        self.next_offset.set(last_offset + 1);
    }

    /// Whether a batch of `bytes` ending at `last_offset` still fits this segment's
    /// u32 positions and relative offsets.
    pub fn can_hold(&self, bytes: u64, last_offset: i64) -> bool {
        self.size.get() + bytes <= u64::from(u32::MAX)
            && last_offset
                .checked_sub(self.base_offset)
                .is_some_and(|relative| relative <= i64::from(u32::MAX))
    }

    /// Position from which a forward scan finds the batch holding `offset`.
    pub fn position_for(&self, offset: i64) -> u64 {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        u64::from(self.index.borrow().lookup(relative))
    }

    pub fn position_for_timestamp(&self, timestamp: i64) -> u64 {
        u64::from(self.index.borrow().lookup_time(timestamp))
    }

    /// Reads whole batches from `position` (a batch start), skipping those entirely below
    /// `offset`, up to `bytes_max`, stopping before `end_offset` or at `limit` bytes. With
    /// `min_one` the first batch is returned even if larger than `bytes_max` (KIP-74);
    /// without it nothing is returned when it does not fit. Each batch's CRC is checked: a
    /// corrupt batch is an error, never data.
    ///
    /// `window` carries read-ahead between calls: bytes read from disk beyond what one call
    /// returns are kept for the next sequential read.
    #[allow(clippy::too_many_arguments)]
    pub async fn read(
        &self,
        window: &mut Window,
        mut position: u64,
        offset: i64,
        bytes_max: usize,
        end_offset: i64,
        limit: u64,
        read_ahead_bytes: usize,
        batch_bytes_max: usize,
        min_one: bool,
    ) -> Result<SegmentRead> {
        let file = self.file().await?;
        let mut read = SegmentRead {
            batches: Vec::new(),
            bytes: 0,
            next_offset: offset,
            next_position: position,
            reached_end: false,
        };
        loop {
            if position >= limit {
                read.reached_end = true;
                break;
            }
            let want = read_ahead_bytes.max(
                bytes_max
                    .saturating_sub(read.bytes)
                    .min(READ_WINDOW_BYTES_MAX),
            );
            let (header, total) = self
                .read_header(window, &file, position, limit, want)
                .await?;
            let base = header.base_offset.get();
            let last = header.last_offset().ok_or_else(|| {
                self.corrupt(position, BatchError::BadLength(header.batch_length.get()))
            })?;
            if base >= end_offset {
                break;
            }
            if last < offset {
                position += total as u64;
                continue;
            }
            if (!read.batches.is_empty() || !min_one) && read.bytes + total > bytes_max {
                break;
            }
            let bytes = window
                .get_bytes(&file, position, total, want, limit)
                .await?;
            record_batch::verify(&bytes, batch_bytes_max.max(total))
                .map_err(|e| self.corrupt(position, e))?;
            read.bytes += total;
            read.batches.push(bytes);
            read.next_offset = last + 1;
            position += total as u64;
            read.next_position = position;
        }
        Ok(read)
    }

    /// The header of the batch at `position` and the batch's size in bytes, read through
    /// `window` (filling it with `want` bytes if it must read). A header that does not parse,
    /// or a batch that runs past `limit`, is corruption.
    async fn read_header(
        &self,
        window: &mut Window,
        file: &SharedFile,
        position: u64,
        limit: u64,
        want: usize,
    ) -> Result<(RecordBatchHeader, usize)> {
        let available = (limit - position) as usize;
        let header_bytes = window
            .get(file, position, HEADER_BYTES.min(available), want, limit)
            .await?;
        let header =
            *RecordBatchHeader::parse(header_bytes).map_err(|e| self.corrupt(position, e))?;
        let total = header
            .total_bytes()
            .map_err(|e| self.corrupt(position, e))?;
        // A stored batch larger than the limit (lowered since) is still served; the cap
        // that matters here is that it lies within the written data.
        if total > available {
            return Err(self.corrupt(
                position,
                BatchError::Truncated {
                    declared: total,
                    available,
                },
            ));
        }
        Ok((header, total))
    }

    fn corrupt(&self, position: u64, reason: BatchError) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason,
        }
    }

    /// Writes the index files of a segment that will not change again. The log file itself
    /// must already be synced and truncated to its logical size.
    pub async fn write_index_files(&self, dir: &Path) -> Result<()> {
        let [_, index_path, time_path] = Segment::paths(dir, self.base_offset);
        let (offsets, times) = {
            let index = self.index.borrow();
            (index.encode_offsets(), index.encode_times())
        };
        io::write_file_atomic(&index_path, &offsets).await?;
        io::write_file_atomic(&time_path, &times).await
    }

    /// Cuts the segment at `position` (a batch start) and rebuilds its index by a scan.
    pub async fn truncate(
        &self,
        position: u64,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
    ) -> Result<()> {
        let file = self.file().await?;
        io::truncate(&file.file, &self.log_path, position).await?;
        let outcome = self
            .scan(position, index_interval_bytes, batch_bytes_max)
            .await?;
        self.size.set(outcome.valid_bytes);
        self.written.set(outcome.valid_bytes);
        self.next_offset.set(outcome.next_offset);
        *self.index.borrow_mut() = outcome.index;
        Ok(())
    }

    /// Gives a deleted segment's data blocks back to the file system a step at a time,
    /// before its files are removed. Removing a 256 MiB file frees all its blocks in one go,
    /// and on ext4 every `fdatasync` (each acks=all answer) waits behind that: 33 ms each,
    /// which retention turned into 100-400 ms acknowledgement stalls every 30 s.
    /// `perf/unlink-stall` measures it: 32 MiB steps 2 ms apart keep the worst sync at
    /// 5 ms. Only done when the caller holds the only reference: an open reader of the same
    /// file would see its data vanish, so a shared segment is removed whole, as before.
    /// Errors are only logged: the removal that follows frees the rest anyway.
    pub async fn release_space_gradually(self: &Rc<Self>) {
        if Rc::strong_count(self) > 1 {
            return;
        }
        // Reopened if the file cache had closed it: shrinking needs an open file.
        let file = match self.file().await {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(path = %self.log_path.display(), %error, "reopening a deleted segment");
                return;
            }
        };
        // The segment's own handle and this one; any other is a read in flight.
        if Rc::strong_count(&file) > 2 {
            return;
        }
        let mut remaining = self.size();
        while remaining > 0 {
            remaining = remaining.saturating_sub(RELEASE_STEP_BYTES);
            if let Err(error) = file.file.truncate(remaining).await {
                tracing::warn!(path = %self.log_path.display(), %error, "shrinking a deleted segment");
                return;
            }
            crate::runtime::time::sleep(RELEASE_STEP_PAUSE).await;
        }
    }

    /// Removes the files of the segment at `base_offset`. Open handles keep the data
    /// readable until dropped.
    pub async fn remove_files(dir: &Path, base_offset: i64) -> Result<()> {
        for path in Segment::paths(dir, base_offset) {
            io::remove_file_if_exists(&path).await?;
        }
        Ok(())
    }

    /// Removes the index files of a segment that is about to change again.
    pub async fn remove_index_files(dir: &Path, base_offset: i64) -> Result<()> {
        for path in &Segment::paths(dir, base_offset)[1..] {
            io::remove_file_if_exists(path).await?;
        }
        Ok(())
    }
}

async fn load_index(
    index_path: &Path,
    time_path: &Path,
    index_interval_bytes: u32,
    log_bytes: u64,
) -> Result<Option<SegmentIndex>> {
    let offsets = io::read_small_file(index_path, INDEX_FILE_BYTES_MAX).await?;
    let times = io::read_small_file(time_path, INDEX_FILE_BYTES_MAX).await?;
    let (Some(offsets), Some(times)) = (offsets, times) else {
        return Ok(None);
    };
    let log_bytes = u32::try_from(log_bytes).unwrap_or(u32::MAX);
    match SegmentIndex::decode(index_interval_bytes, &offsets, &times, log_bytes) {
        Ok(index) if !offsets.is_empty() || log_bytes == 0 => Ok(Some(index)),
        Ok(_) => Ok(None),
        Err(error) => {
            tracing::warn!(path = %index_path.display(), %error, "rebuilding damaged index");
            Ok(None)
        }
    }
}

/// A run of file bytes kept in memory between reads of one segment (read-ahead).
#[derive(Default)]
pub struct Window {
    position: u64,
    bytes: Bytes,
}

impl Window {
    /// Bytes `[position, position + len)`, reading `max(len, want)` bytes from the file if
    /// the window does not already hold them. Fewer than `len` bytes means the file ends.
    async fn get(
        &mut self,
        file: &SharedFile,
        position: u64,
        len: usize,
        want: usize,
        limit: u64,
    ) -> Result<&[u8]> {
        self.fill(file, position, len, want, limit).await?;
        let start = (position - self.position) as usize;
        let end = (start + len).min(self.bytes.len());
        Ok(&self.bytes[start..end])
    }

    /// Like `get`, as a zero-copy slice of the window.
    async fn get_bytes(
        &mut self,
        file: &SharedFile,
        position: u64,
        len: usize,
        want: usize,
        limit: u64,
    ) -> Result<Bytes> {
        self.fill(file, position, len, want, limit).await?;
        let start = (position - self.position) as usize;
        let end = start + len;
        if end > self.bytes.len() {
            return Err(StorageError::Corrupt {
                path: file.path.clone(),
                position,
                reason: BatchError::Truncated {
                    declared: len,
                    available: self.bytes.len() - start,
                },
            });
        }
        Ok(self.bytes.slice(start..end))
    }

    /// Never keeps bytes at or past `limit`: past the written end of an active segment the
    /// file holds zero padding that later writes replace.
    async fn fill(
        &mut self,
        file: &SharedFile,
        position: u64,
        len: usize,
        want: usize,
        limit: u64,
    ) -> Result<()> {
        let window_end = self.position + self.bytes.len() as u64;
        if position >= self.position && position + len as u64 <= window_end {
            return Ok(());
        }
        let size = len.max(want).min(limit.saturating_sub(position) as usize);
        if size == 0 {
            self.bytes = Bytes::new();
            self.position = position;
            return Ok(());
        }
        let read = file
            .file
            .read_at(position, size)
            .await
            .map_err(io_error("read", &file.path))?;
        // One copy out of the pinned DMA buffer: `ReadResult` is !Send and holds io_memory.
        self.bytes = Bytes::copy_from_slice(&read[..read.len().min(size)]);
        self.position = position;
        Ok(())
    }

    /// Whether the window holds bytes at `position`.
    pub fn covers(&self, position: u64) -> bool {
        position >= self.position && position < self.position + self.bytes.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_strangers() {
        assert_eq!(file_stem(42), "00000000000000000042");
        assert_eq!(parse_log_file_name("00000000000000000042.log"), Some(42));
        for name in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.index",
            "",
        ] {
            assert_eq!(parse_log_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn the_scan_decision_accepts_continuing_batches_and_refuses_the_rest() {
        let mut batch = record_batch::build_batch(&[b"a", b"b"], 42);
        record_batch::assign_offset(&mut batch, 100, 0);
        let total = batch.len();
        assert_eq!(
            scan_header(&batch[..HEADER_BYTES], total, 1 << 20),
            Ok(total)
        );
        assert!(matches!(
            scan_header(&batch[..HEADER_BYTES], total - 1, 1 << 20),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            scan_header(&batch[..HEADER_BYTES], total, total - 1),
            Err(BatchError::TooLarge { .. })
        ));
        assert_eq!(
            scan_batch(&batch, 4096, 90, 100, 1 << 20),
            Ok(ScannedBatch {
                relative_offset: 10,
                position: 4096,
                total_bytes: total as u32,
                max_timestamp: 42,
                next_offset: 102,
            })
        );
        // Overlapping the log, below the segment base, past the index's u32 positions, or
        // ending beyond i64::MAX: each cuts the log here instead of panicking.
        assert!(scan_batch(&batch, 0, 90, 101, 1 << 20).is_err());
        assert!(scan_batch(&batch, 0, 101, 0, 1 << 20).is_err());
        assert!(scan_batch(&batch, 1 << 32, 90, 100, 1 << 20).is_err());
        record_batch::assign_offset(&mut batch, i64::MAX - 1, 0);
        assert!(scan_batch(&batch, 0, i64::MAX - 1, 0, 1 << 20).is_err());
    }
}
