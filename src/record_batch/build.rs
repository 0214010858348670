//! Valid batches built in code, for tests, benchmarks and the crash-test writer.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::IntoBytes;

use super::format::{CRC_START, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use super::header::RecordBatchHeader;

/// Builds a valid uncompressed batch of `values`, for tests and benchmarks.
///
/// Records carry no key and no headers; `timestamp_ms` is used for every record.
pub fn build_batch(values: &[&[u8]], timestamp_ms: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let mut body = Vec::with_capacity(value.len() + 16);
        body.push(0); // record attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, index as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // header count
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = values.len() as i32;
    let total = HEADER_BYTES + records.len();
    let header = RecordBatchHeader {
        base_offset: I64::new(0),
        batch_length: I32::new((total - LOG_OVERHEAD_BYTES) as i32),
        partition_leader_epoch: I32::new(0),
        magic: MAGIC_V2,
        crc: U32::new(0),
        attributes: I16::new(0),
        last_offset_delta: I32::new(count - 1),
        base_timestamp: I64::new(timestamp_ms),
        max_timestamp: I64::new(timestamp_ms),
        producer_id: I64::new(-1),
        producer_epoch: I16::new(-1),
        base_sequence: I32::new(-1),
        records_count: I32::new(count),
    };
    let mut batch = Vec::with_capacity(total);
    batch.extend_from_slice(header.as_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Zig-zag varint, as Kafka records use.
pub(super) fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}
