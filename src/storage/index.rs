//! Sparse per-segment indexes: offset -> file position, and max timestamp -> offset.
//! Sans-I/O: the segment writes and reads the encoded bytes.
//!
//! Layouts match Kafka's, entry by entry (big-endian):
//! - `.index`: relative offset u32, file position u32 (8 bytes). One entry per
//!   `index_interval_bytes` of log, pointing at the first byte of a batch.
//! - `.timeindex`: max timestamp i64, relative offset u32 (12 bytes). Timestamps strictly
//!   increase from entry to entry.

use zerocopy::byteorder::big_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct OffsetEntry {
    relative_offset: U32,
    position: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct TimeEntry {
    timestamp: I64,
    relative_offset: U32,
}

pub const OFFSET_ENTRY_BYTES: usize = std::mem::size_of::<OffsetEntry>();
pub const TIME_ENTRY_BYTES: usize = std::mem::size_of::<TimeEntry>();

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index is {0} bytes, not a whole number of entries")]
    RaggedLength(usize),
    #[error("index entry {entry} is out of order or past the log end")]
    OutOfOrder { entry: usize },
}

/// Where a batch starts: its base offset relative to the segment, and its byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// In-memory index of one segment. The segment calls [`SegmentIndex::on_batch`] for every
/// batch it appends or recovers, in log order.
#[derive(Debug, Default, Clone)]
pub struct SegmentIndex {
    offsets: Vec<IndexEntry>,
    times: Vec<TimeIndexEntry>,
    interval_bytes: u32,
    bytes_since_entry: u32,
    max_timestamp: i64,
    /// Relative offset of the batch holding `max_timestamp`.
    max_timestamp_offset: u32,
}

impl SegmentIndex {
    pub fn new(interval_bytes: u32) -> Self {
        SegmentIndex {
            interval_bytes,
            max_timestamp: i64::MIN,
            ..SegmentIndex::default()
        }
    }

    /// Records a batch that starts at `position` and spans `bytes`.
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        bytes: u32,
        max_timestamp: i64,
    ) {
        // Log order: a batch starts past the last indexed one, in offset and in position, and
        // the first starts the segment (what `decode` requires of the files). A caller's cast
        // to u32 that wrapped would show here.
        debug_assert!(
            match self.offsets.last() {
                Some(last) => relative_offset > last.relative_offset && position > last.position,
                None => position == 0,
            },
            "batch at relative offset {relative_offset}, position {position} is out of log order (last entry {:?})",
            self.offsets.last(),
        );
        // The first batch is always indexed so a lookup never falls before the segment.
        if self.offsets.is_empty() || self.bytes_since_entry >= self.interval_bytes {
            self.offsets.push(IndexEntry {
                relative_offset,
                position,
            });
            self.bytes_since_entry = 0;
            if self.max_timestamp > self.times.last().map_or(i64::MIN, |e| e.timestamp) {
                self.times.push(TimeIndexEntry {
                    timestamp: self.max_timestamp,
                    relative_offset: self.max_timestamp_offset,
                });
            }
        }
        self.bytes_since_entry = self.bytes_since_entry.saturating_add(bytes);
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.max_timestamp_offset = relative_offset;
        }
    }

    /// The largest max timestamp seen, or `i64::MIN` for an empty segment.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Position of the last indexed batch whose base offset is at most `relative_offset`,
    /// from which a forward scan finds the batch holding that offset. Zero if none.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        after
            .checked_sub(1)
            .map_or(0, |index| self.offsets[index].position)
    }

    /// A position from which a forward scan finds the first batch with max timestamp at
    /// least `timestamp`: the batch of the last time entry below it, else the segment start.
    pub fn lookup_time(&self, timestamp: i64) -> u32 {
        let below = self.times.partition_point(|e| e.timestamp < timestamp);
        match below.checked_sub(1) {
            Some(index) => self.lookup(self.times[index].relative_offset),
            None => 0,
        }
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offsets {
            let raw = OffsetEntry {
                relative_offset: U32::new(entry.relative_offset),
                position: U32::new(entry.position),
            };
            out.extend_from_slice(raw.as_bytes());
        }
        out
    }

    /// The time index on disk also carries the segment's final max timestamp, so a loaded
    /// index knows it without a scan.
    pub fn encode_times(&self) -> Vec<u8> {
        let mut times = self.times.clone();
        if self.max_timestamp > times.last().map_or(i64::MIN, |e| e.timestamp) {
            times.push(TimeIndexEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.max_timestamp_offset,
            });
        }
        let mut out = Vec::with_capacity(times.len() * TIME_ENTRY_BYTES);
        for entry in &times {
            let raw = TimeEntry {
                timestamp: I64::new(entry.timestamp),
                relative_offset: U32::new(entry.relative_offset),
            };
            out.extend_from_slice(raw.as_bytes());
        }
        out
    }

    /// Rebuilds an index from its two files. `log_bytes` bounds the positions; any entry
    /// out of order or past it makes the whole index invalid (the caller then rescans).
    pub fn decode(
        interval_bytes: u32,
        offsets: &[u8],
        times: &[u8],
        log_bytes: u32,
    ) -> Result<SegmentIndex, IndexError> {
        let offset_entries = <[OffsetEntry]>::ref_from_bytes(offsets)
            .map_err(|_| IndexError::RaggedLength(offsets.len()))?;
        let time_entries = <[TimeEntry]>::ref_from_bytes(times)
            .map_err(|_| IndexError::RaggedLength(times.len()))?;
        let mut index = SegmentIndex::new(interval_bytes);
        for (entry, raw) in offset_entries.iter().enumerate() {
            let decoded = IndexEntry {
                relative_offset: raw.relative_offset.get(),
                position: raw.position.get(),
            };
            let ordered = index.offsets.last().is_none_or(|previous| {
                decoded.relative_offset > previous.relative_offset
                    && decoded.position > previous.position
            });
            if !ordered || decoded.position >= log_bytes || (entry == 0 && decoded.position != 0) {
                return Err(IndexError::OutOfOrder { entry });
            }
            index.offsets.push(decoded);
        }
        for (entry, raw) in time_entries.iter().enumerate() {
            let decoded = TimeIndexEntry {
                timestamp: raw.timestamp.get(),
                relative_offset: raw.relative_offset.get(),
            };
            let ordered = index
                .times
                .last()
                .is_none_or(|previous| decoded.timestamp > previous.timestamp);
            if !ordered {
                return Err(IndexError::OutOfOrder { entry });
            }
            index.times.push(decoded);
        }
        if let Some(last) = index.times.last() {
            index.max_timestamp = last.timestamp;
            index.max_timestamp_offset = last.relative_offset;
        }
        index.bytes_since_entry = interval_bytes;
        Ok(index)
    }

    #[cfg(test)]
    fn offsets(&self) -> &[IndexEntry] {
        &self.offsets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of 1000 bytes, 10 offsets each, timestamps rising by 5.
    fn index_of(batches: u32) -> SegmentIndex {
        let mut index = SegmentIndex::new(4096);
        for batch in 0..batches {
            index.on_batch(batch * 10, batch * 1000, 1000, i64::from(batch) * 5);
        }
        index
    }

    #[test]
    fn indexes_about_one_entry_per_interval() {
        let index = index_of(100);
        // 100 KB of log with a 4 KiB interval: an entry every fifth 1000-byte batch.
        let positions: Vec<u32> = index.offsets().iter().map(|e| e.position).collect();
        assert_eq!(&positions[..4], &[0, 5000, 10000, 15000]);
        assert_eq!(positions.len(), 20);
    }

    #[test]
    fn lookup_returns_the_entry_at_or_below_the_offset() {
        let index = index_of(100);
        let cases = [
            (0, 0),
            (9, 0),
            (49, 0),
            (50, 5000),
            (51, 5000),
            (999, 95000),
            (5000, 95000),
        ];
        for (relative_offset, position) in cases {
            assert_eq!(
                index.lookup(relative_offset),
                position,
                "offset {relative_offset}"
            );
        }
        assert_eq!(SegmentIndex::new(4096).lookup(7), 0);
    }

    #[test]
    fn time_lookup_never_skips_the_first_match() {
        let index = index_of(100);
        for timestamp in [0, 1, 24, 25, 26, 250, 495, 10_000] {
            let position = index.lookup_time(timestamp);
            // The batch at `position` must not already be past the first batch whose
            // max timestamp reaches `timestamp`.
            let first_match_batch = ((timestamp + 4) / 5).min(99) as u32;
            assert!(
                position <= first_match_batch * 1000,
                "ts {timestamp}: {position}"
            );
        }
        assert_eq!(index.max_timestamp(), 495);
    }

    #[test]
    fn encodes_and_decodes_both_files() {
        let index = index_of(100);
        let decoded = SegmentIndex::decode(
            4096,
            &index.encode_offsets(),
            &index.encode_times(),
            100_000,
        )
        .expect("round trip");
        assert_eq!(decoded.offsets(), index.offsets());
        assert_eq!(decoded.max_timestamp(), 495);
        for relative_offset in [0, 37, 512, 990] {
            assert_eq!(
                decoded.lookup(relative_offset),
                index.lookup(relative_offset)
            );
        }
    }

    #[test]
    fn decode_rejects_damaged_files() {
        let index = index_of(100);
        let offsets = index.encode_offsets();
        let times = index.encode_times();
        assert_eq!(
            SegmentIndex::decode(4096, &offsets[..offsets.len() - 3], &times, 100_000).unwrap_err(),
            IndexError::RaggedLength(offsets.len() - 3)
        );
        // Positions past the log end (the log was truncated after the index was written).
        assert!(SegmentIndex::decode(4096, &offsets, &times, 50_000).is_err());
        let mut swapped = offsets.clone();
        swapped.copy_within(8..16, 0);
        assert!(SegmentIndex::decode(4096, &swapped, &times, 100_000).is_err());
    }
}
