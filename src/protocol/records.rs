//! Record-level views of a stored batch. Batches are never re-encoded; these only read.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

#[derive(Debug, thiserror::Error)]
#[error("cannot decode records: {0}")]
pub struct RecordsError(String);

/// The offset and timestamp of the first record in `batch` whose timestamp is at least
/// `timestamp` (ListOffsets by time). Decompresses if it must.
pub fn first_at_or_after(batch: Bytes, timestamp: i64) -> Result<Option<(i64, i64)>, RecordsError> {
    let mut buffer = batch;
    let set = RecordBatchDecoder::decode(&mut buffer).map_err(|e| RecordsError(e.to_string()))?;
    Ok(set
        .records
        .iter()
        .find(|record| record.timestamp >= timestamp)
        .map(|record| (record.offset, record.timestamp)))
}

/// The offset and timestamp of the record with the largest timestamp (the first of equals).
pub fn max_timestamp_record(batch: Bytes) -> Result<Option<(i64, i64)>, RecordsError> {
    let mut buffer = batch;
    let set = RecordBatchDecoder::decode(&mut buffer).map_err(|e| RecordsError(e.to_string()))?;
    let mut best: Option<(i64, i64)> = None;
    for record in &set.records {
        if best.is_none_or(|(_, timestamp)| record.timestamp > timestamp) {
            best = Some((record.offset, record.timestamp));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch;

    #[test]
    fn finds_the_first_record_at_or_after_a_time() {
        let mut batch = crate::testkit::uniform_batch(3, 10, 1_000);
        record_batch::assign_offset(&mut batch, 50, 0);
        let batch = Bytes::from(batch);
        assert_eq!(
            first_at_or_after(batch.clone(), 999).unwrap(),
            Some((50, 1_000))
        );
        assert_eq!(first_at_or_after(batch.clone(), 1_001).unwrap(), None);
        assert_eq!(max_timestamp_record(batch).unwrap(), Some((50, 1_000)));
        assert!(first_at_or_after(Bytes::from_static(b"garbage"), 0).is_err());
    }
}
