//! The fixed v2 header: its layout, framing, the CRC-32C check, and the two fields the
//! broker rewrites (both before the CRC-covered range).

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::BatchError;
use super::format::{
    COMPRESSION_MASK, CONTROL_FLAG, CRC_START, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2,
    TIMESTAMP_TYPE_LOG_APPEND, TRANSACTIONAL_FLAG,
};

/// The on-wire layout of a v2 batch header (all fields big-endian).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct RecordBatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<RecordBatchHeader>() == HEADER_BYTES);

/// A view of one complete, size-checked batch inside a larger buffer.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pub header: &'a RecordBatchHeader,
    /// The whole batch: header and records.
    pub bytes: &'a [u8],
}

impl RecordBatchHeader {
    /// Reads a header from the start of `bytes`, without checking the body.
    pub fn parse(bytes: &[u8]) -> Result<&RecordBatchHeader, BatchError> {
        RecordBatchHeader::ref_from_prefix(bytes)
            .map(|(header, _rest)| header)
            .map_err(|_| BatchError::ShortHeader(bytes.len()))
    }

    /// Total bytes of the batch on disk and on the wire (`12 + batch_length`), if sane.
    pub fn total_bytes(&self) -> Result<usize, BatchError> {
        let batch_length = self.batch_length.get();
        let body =
            usize::try_from(batch_length).map_err(|_| BatchError::BadLength(batch_length))?;
        let total = body
            .checked_add(LOG_OVERHEAD_BYTES)
            .ok_or(BatchError::BadLength(batch_length))?;
        if total < HEADER_BYTES {
            return Err(BatchError::BadLength(batch_length));
        }
        Ok(total)
    }

    /// Offset of the last record: `base_offset + last_offset_delta`, or `None` on overflow.
    pub fn last_offset(&self) -> Option<i64> {
        self.base_offset
            .get()
            .checked_add(i64::from(self.last_offset_delta.get()))
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes.get() & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes.get() & TIMESTAMP_TYPE_LOG_APPEND != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes.get() & TRANSACTIONAL_FLAG != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes.get() & CONTROL_FLAG != 0
    }
}

/// Checks the framing of the batch at the start of `bytes` (header present, length sane,
/// magic 2, whole batch present, within `batch_bytes_max`). Does not check the CRC.
pub fn frame(bytes: &[u8], batch_bytes_max: usize) -> Result<BatchView<'_>, BatchError> {
    let header = RecordBatchHeader::parse(bytes)?;
    let total = header.total_bytes()?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if total > batch_bytes_max {
        return Err(BatchError::TooLarge {
            size: total,
            limit: batch_bytes_max,
        });
    }
    let batch = bytes.get(..total).ok_or(BatchError::Truncated {
        declared: total,
        available: bytes.len(),
    })?;
    Ok(BatchView {
        header,
        bytes: batch,
    })
}

/// Framing plus the full integrity check: CRC-32C and the offset/count relation.
pub fn verify(bytes: &[u8], batch_bytes_max: usize) -> Result<BatchView<'_>, BatchError> {
    let view = frame(bytes, batch_bytes_max)?;
    view.verify_crc()?;
    let header = view.header;
    let (last_offset_delta, records_count) =
        (header.last_offset_delta.get(), header.records_count.get());
    // A producer's batch holds offsets 0..=last_offset_delta, one record each. Compaction
    // may later remove records, but Petrel never rewrites batches, so this holds on disk too.
    if last_offset_delta < 0 || i64::from(records_count) != i64::from(last_offset_delta) + 1 {
        return Err(BatchError::CountMismatch {
            last_offset_delta,
            records_count,
        });
    }
    Ok(view)
}

impl BatchView<'_> {
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = self.header.crc.get();
        let computed = crc32c::crc32c(&self.bytes[CRC_START..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }
}

/// Rewrites the two broker-owned header fields in place. Both lie outside the CRC range.
pub fn assign_offset(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    if let Ok((header, _)) = RecordBatchHeader::mut_from_prefix(batch) {
        header.base_offset = I64::new(base_offset);
        header.partition_leader_epoch = I32::new(partition_leader_epoch);
    }
}
