//! Deterministic batches for crash tests and benchmarks: a batch's size and bytes derive
//! from its sequence number alone, so a verifier in another process can rebuild it.

use crate::record_batch;

/// Batch number `sequence`: 1 to 7 records of 50 to 3049 bytes, each value starting
/// `seq-<sequence>-rec-<record>-`, timestamp `sequence`.
pub fn numbered_batch(sequence: u64) -> Vec<u8> {
    let records = 1 + (sequence % 7) as usize;
    let value_len = 50 + (sequence.wrapping_mul(7919) % 3000) as usize;
    let values: Vec<Vec<u8>> = (0..records)
        .map(|record| {
            let mut value = format!("seq-{sequence}-rec-{record}-").into_bytes();
            value.resize(value_len, b'a' + (sequence % 26) as u8);
            value
        })
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    record_batch::build_batch(&refs, sequence as i64)
}

/// The sequence number a stored numbered batch was built from (its timestamp).
pub fn sequence_of(batch: &[u8]) -> Option<u64> {
    let header = record_batch::RecordBatchHeader::parse(batch).ok()?;
    u64::try_from(header.base_timestamp.get()).ok()
}

/// A batch of `records` values of `value_bytes` each, as a producer would send it.
pub fn uniform_batch(records: usize, value_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
    let value = vec![b'x'; value_bytes];
    let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
    record_batch::build_batch(&values, timestamp_ms)
}

/// `uniform_batch` as an idempotent producer sends it: producer id, epoch and first
/// sequence set, CRC recomputed (it covers them).
pub fn idempotent_batch(
    records: usize,
    value_bytes: usize,
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
) -> Vec<u8> {
    let mut batch = uniform_batch(records, value_bytes, 0);
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&first_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_batches_are_valid_and_carry_their_number() {
        for sequence in [0, 1, 6, 7, 1_000_003] {
            let batch = numbered_batch(sequence);
            record_batch::verify(&batch, usize::MAX).expect("valid");
            assert_eq!(sequence_of(&batch), Some(sequence));
            assert_eq!(numbered_batch(sequence), batch, "deterministic");
        }
    }
}
