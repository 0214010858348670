//! Record-level views of a stored batch. Batches are never re-encoded; these only read.
//!
//! Stored bytes are hostile too (an older version may have stored a batch that no longer
//! validates, or the disk may lie): each lookup checks the CRC and walks the records with
//! `record_batch::for_each_record`, whose work and memory are bounded by the bytes present
//! and the decompression cap, so a bad batch is an error, never an abort.

use std::ops::ControlFlow;

use crate::record_batch::{self, BatchError, BatchView, RecordLimits};

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("cannot read records: {0}")]
    Batch(#[from] BatchError),
    #[error("record offset overflows: base offset {base_offset} + {index}")]
    OffsetOverflow { base_offset: i64, index: i32 },
}

/// The offset and timestamp of the first record in `batch` whose timestamp is at least
/// `timestamp` (ListOffsets by time). Decompresses if it must, within `limits`.
pub fn first_at_or_after(
    batch: &[u8],
    timestamp: i64,
    limits: RecordLimits,
) -> Result<Option<(i64, i64)>, RecordsError> {
    let view = record_batch::verify(batch, batch.len())?;
    let mut found = None;
    record_batch::for_each_record(&view, limits, |record| {
        if record.timestamp >= timestamp {
            found = Some((record.index, record.timestamp));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    found
        .map(|(index, timestamp)| Ok((offset_of(&view, index)?, timestamp)))
        .transpose()
}

/// The offset and timestamp of the record with the largest timestamp (the first of equals).
pub fn max_timestamp_record(
    batch: &[u8],
    limits: RecordLimits,
) -> Result<Option<(i64, i64)>, RecordsError> {
    let view = record_batch::verify(batch, batch.len())?;
    let mut best: Option<(i32, i64)> = None;
    record_batch::for_each_record(&view, limits, |record| {
        if best.is_none_or(|(_, timestamp)| record.timestamp > timestamp) {
            best = Some((record.index, record.timestamp));
        }
        ControlFlow::Continue(())
    })?;
    best.map(|(index, timestamp)| Ok((offset_of(&view, index)?, timestamp)))
        .transpose()
}

/// A record's offset: the batch's base offset plus its index (= its offset delta, checked
/// by the walk).
fn offset_of(view: &BatchView<'_>, index: i32) -> Result<i64, RecordsError> {
    let base_offset = view.header.base_offset.get();
    base_offset
        .checked_add(i64::from(index))
        .ok_or(RecordsError::OffsetOverflow { base_offset, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_record_at_or_after_a_time() {
        let limits = RecordLimits::default();
        let mut batch = crate::testkit::uniform_batch(3, 10, 1_000);
        record_batch::assign_offset(&mut batch, 50, 0);
        assert_eq!(
            first_at_or_after(&batch, 999, limits).unwrap(),
            Some((50, 1_000))
        );
        assert_eq!(first_at_or_after(&batch, 1_001, limits).unwrap(), None);
        assert_eq!(
            max_timestamp_record(&batch, limits).unwrap(),
            Some((50, 1_000))
        );
        assert!(first_at_or_after(b"garbage", 0, limits).is_err());
    }

    #[test]
    fn a_stored_poison_batch_is_an_error_not_an_abort() {
        // A CRC-valid header claiming 2^31 - 1 records, with no record bytes: the vendored
        // decoder used to reserve ~377 GB for it and abort the process.
        let limits = RecordLimits::default();
        let mut batch = record_batch::build_batch(&[b"x"], 5);
        batch.truncate(record_batch::HEADER_BYTES);
        batch[23..27].copy_from_slice(&0x7FFF_FFFEi32.to_be_bytes());
        batch[57..61].copy_from_slice(&0x7FFF_FFFFi32.to_be_bytes());
        let length = (batch.len() - record_batch::LOG_OVERHEAD_BYTES) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        record_batch::verify(&batch, batch.len()).expect("passes the cheap check");
        for result in [
            first_at_or_after(&batch, 0, limits),
            max_timestamp_record(&batch, limits),
        ] {
            assert!(matches!(
                result,
                Err(RecordsError::Batch(BatchError::CountExceedsBytes { .. }))
            ));
        }
        // The vendored decoder (no longer used on stored data) is bounded too
        // (vendor/kafka-protocol/PETREL-PATCHES.md, item 3).
        let mut buffer = bytes::Bytes::from(batch);
        assert!(kafka_protocol::records::RecordBatchDecoder::decode(&mut buffer).is_err());
    }
}
