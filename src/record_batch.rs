//! Kafka RecordBatch v2 headers: parsing and integrity checks. Sans-I/O.
//!
//! The log stores batches exactly as producers sent them. The broker rewrites only
//! `base_offset` and `partition_leader_epoch`; both lie before the CRC-covered range
//! (`attributes..end`), so the producer's CRC-32C stays valid on disk and on the wire.
//!
//! Every function here treats its input as hostile: lengths are checked before use and
//! arithmetic is checked; nothing panics on bad bytes.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the fixed RecordBatch v2 header, up to and including `records_count`.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `batch_length` field's payload: `base_offset` (8) + `batch_length` (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The CRC-32C covers everything from `attributes` to the end of the batch.
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// Attribute bits (Kafka `RecordBatch.java`).
const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

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

/// Why a batch was rejected. Positions are relative to the start of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch shorter than its {HEADER_BYTES}-byte header ({0} bytes)")]
    ShortHeader(usize),
    #[error("batch_length {0} is out of range")]
    BadLength(i32),
    #[error("batch declares {declared} bytes but only {available} are present")]
    Truncated { declared: usize, available: usize },
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported magic byte {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    #[error("CRC-32C mismatch: header says {stored:#010x}, data has {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("last_offset_delta {last_offset_delta} disagrees with records_count {records_count}")]
    CountMismatch {
        last_offset_delta: i32,
        records_count: i32,
    },
}

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
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn built_batch_verifies_and_reports_its_fields() {
        let batch = build_batch(&[b"a", b"bb", b"ccc"], 1_700_000_000_000);
        let view = verify(&batch, LIMIT).expect("valid batch");
        assert_eq!(view.bytes.len(), batch.len());
        assert_eq!(view.header.records_count.get(), 3);
        assert_eq!(view.header.last_offset_delta.get(), 2);
        assert_eq!(view.header.max_timestamp.get(), 1_700_000_000_000);
        assert_eq!(view.header.compression(), 0);
    }

    #[test]
    fn assigning_offsets_keeps_the_crc_valid() {
        let mut batch = build_batch(&[b"x".as_slice(); 4], 5);
        assign_offset(&mut batch, 1234, 7);
        let view = verify(&batch, LIMIT).expect("still valid");
        assert_eq!(view.header.base_offset.get(), 1234);
        assert_eq!(view.header.partition_leader_epoch.get(), 7);
        assert_eq!(view.header.last_offset(), Some(1237));
    }

    #[test]
    fn rejects_every_kind_of_bad_header() {
        let good = build_batch(&[b"value"], 1);
        type Expectation = fn(&BatchError) -> bool;
        let cases: Vec<(Vec<u8>, Expectation)> = vec![
            (good[..30].to_vec(), |e| {
                matches!(e, BatchError::ShortHeader(30))
            }),
            (good[..good.len() - 1].to_vec(), |e| {
                matches!(e, BatchError::Truncated { .. })
            }),
            (
                {
                    let mut b = good.clone();
                    b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
                    b
                },
                |e| matches!(e, BatchError::BadLength(-5)),
            ),
            (
                {
                    let mut b = good.clone();
                    b[8..12].copy_from_slice(&10i32.to_be_bytes());
                    b
                },
                |e| matches!(e, BatchError::BadLength(10)),
            ),
            (
                {
                    let mut b = good.clone();
                    b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
                    b
                },
                |e| matches!(e, BatchError::TooLarge { .. }),
            ),
            (
                {
                    let mut b = good.clone();
                    b[16] = 1;
                    b
                },
                |e| matches!(e, BatchError::UnsupportedMagic(1)),
            ),
            (
                {
                    let mut b = good.clone();
                    let last = b.len() - 1;
                    b[last] ^= 0xff;
                    b
                },
                |e| matches!(e, BatchError::CrcMismatch { .. }),
            ),
        ];
        for (index, (bytes, expected)) in cases.iter().enumerate() {
            let error = verify(bytes, LIMIT).expect_err("must be rejected");
            assert!(expected(&error), "case {index}: unexpected {error:?}");
        }
    }

    #[test]
    fn rejects_count_that_disagrees_with_offsets() {
        let mut batch = build_batch(&[b"a", b"b"], 1);
        // Claim three records while the offset delta says two; recompute the CRC so only
        // the count check can catch it.
        batch[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            verify(&batch, LIMIT),
            Err(BatchError::CountMismatch { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if bytes.len() > 16 && rng.gen_bool(0.5) {
                bytes[16] = MAGIC_V2 as u8;
            }
            // A random buffer that passes framing still cannot carry a matching CRC-32C.
            assert!(verify(&bytes, LIMIT).is_err());
        }
    }
}
