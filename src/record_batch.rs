//! Kafka RecordBatch v2: header parsing, integrity checks, and a bounded walk over the
//! records (decompressing if needed). Sans-I/O.
//!
//! The log stores batches exactly as producers sent them. The broker rewrites only
//! `base_offset` and `partition_leader_epoch`; both lie before the CRC-covered range
//! (`attributes..end`), so the producer's CRC-32C stays valid on disk and on the wire.
//!
//! Every function here treats its input as hostile: lengths are checked before use and
//! arithmetic is checked; nothing panics on bad bytes, and no allocation is sized by a
//! count or length read from the batch beyond the bytes actually present (or, for a
//! compressed batch, beyond [`RecordLimits::decompressed_bytes_max`]).
//!
//! - [`frame`]: the header is present, sane and within `batch_bytes_max`.
//! - [`verify`]: framing, CRC-32C and `records_count == last_offset_delta + 1`. Cheap: the
//!   recovery scan and every read of stored data use it.
//! - [`validate`]: `verify` plus every record (Kafka's `LogValidator`): what the log
//!   requires before it stores a batch.
//! - [`for_each_record`]: the bounded walk that `validate` and the record-level readers
//!   (ListOffsets by time, offsets-log replay) share.

use std::io::Read;
use std::ops::ControlFlow;

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

/// Bytes of the smallest possible record: a one-byte length varint and a six-byte body
/// (attributes, then one-byte varints for timestamp delta, offset delta, key length, value
/// length and header count). A batch cannot hold more records than its bytes / this.
pub const MIN_RECORD_BYTES: usize = 7;
const MIN_RECORD_BODY_BYTES: usize = MIN_RECORD_BYTES - 1;
/// Bytes of the smallest record header: key length and value length varints.
const MIN_HEADER_BYTES: usize = 2;
/// Kafka's varints: an int32 takes at most 5 bytes, an int64 at most 10.
const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;
/// Default of [`RecordLimits::decompressed_bytes_max`] (`--batch-decompressed-bytes-max`).
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// A snappy stream cannot expand more than this: its densest element, a copy with a 2-byte
/// offset, spends 3 bytes on at most 64 output bytes. A header claiming more is a lie, and
/// is refused before anything is allocated for it.
const SNAPPY_EXPANSION_MAX: usize = 22;
/// The magic that opens snappy-java's framing (`SnappyOutputStream`), which Kafka's Java
/// clients use; the version and compatibility words follow it.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Bounds on the work a record walk may do on behalf of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// A compressed batch may decompress to at most this many bytes; beyond it, the batch
    /// is refused (MESSAGE_TOO_LARGE at produce) instead of inflating a decompression bomb.
    pub decompressed_bytes_max: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            decompressed_bytes_max: DECOMPRESSED_BYTES_MAX_DEFAULT,
        }
    }
}

/// Compression codecs of a v2 batch (attributes bits 0-2).
const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;

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
    #[error("records_count {records_count} cannot fit in {bytes} record bytes (a record takes at least {MIN_RECORD_BYTES})")]
    CountExceedsBytes { records_count: i32, bytes: usize },
    #[error("record {index}: {reason}")]
    BadRecord { index: i32, reason: &'static str },
    #[error("record {index} has offset delta {offset_delta}, expected {index}")]
    OffsetDelta { index: i32, offset_delta: i32 },
    #[error("bytes remain after the {records_count} declared records")]
    TrailingBytes { records_count: i32 },
    #[error("cannot decompress the records (codec {codec}): {reason}")]
    DecompressFailed { codec: i16, reason: String },
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
}

/// One record of a batch, as the walk sees it. Borrowed from the batch (or from its
/// decompressed records), so nothing is copied for a record the caller skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Position in the batch; also its offset delta (checked).
    pub index: i32,
    /// `base_timestamp + timestamp_delta`, or the batch's `max_timestamp` when the batch
    /// uses log-append time (Kafka's `DefaultRecord` rule).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: i32,
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

/// Everything Kafka checks before it stores a producer's v2 batch (`LogValidator`): `verify`,
/// then every record, decompressing within `limits`. Petrel never rewrites offsets, so each
/// record's offset delta must also equal its position.
pub fn validate(
    bytes: &[u8],
    batch_bytes_max: usize,
    limits: RecordLimits,
) -> Result<BatchView<'_>, BatchError> {
    let view = verify(bytes, batch_bytes_max)?;
    for_each_record(&view, limits, |_| ControlFlow::Continue(()))?;
    Ok(view)
}

/// Walks the records of a framed batch in order, checking each (see [`validate`]), and hands
/// each to `visit` until it breaks. Does not check the CRC: callers `verify` first.
///
/// Bounded by the bytes present: the declared count is checked against the record bytes
/// before the loop, no allocation depends on a count or length field, and a compressed
/// batch is inflated to at most `limits.decompressed_bytes_max` bytes.
pub fn for_each_record(
    view: &BatchView<'_>,
    limits: RecordLimits,
    mut visit: impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let header = view.header;
    let records = view.bytes.get(HEADER_BYTES..).unwrap_or_default();
    let clock = RecordClock {
        base_timestamp: header.base_timestamp.get(),
        log_append_time: header
            .is_log_append_time()
            .then(|| header.max_timestamp.get()),
    };
    let records_count = header.records_count.get();
    let decompressed;
    let records = match header.compression() {
        CODEC_NONE => records,
        codec @ (CODEC_GZIP | CODEC_LZ4 | CODEC_ZSTD) => {
            decompressed = inflate(codec, records, limits.decompressed_bytes_max)?;
            &decompressed[..]
        }
        CODEC_SNAPPY => {
            decompressed = unsnappy(records, limits.decompressed_bytes_max)?;
            &decompressed[..]
        }
        codec => return Err(BatchError::UnknownCodec(codec)),
    };
    walk(records, records_count, &clock, &mut visit)
}

/// How a record's timestamp derives from its batch.
struct RecordClock {
    base_timestamp: i64,
    /// `Some(max_timestamp)` when the batch uses log-append time.
    log_append_time: Option<i64>,
}

fn walk(
    records: &[u8],
    records_count: i32,
    clock: &RecordClock,
    visit: &mut impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    // Checked before the loop, so a huge count costs nothing: every record takes at least
    // MIN_RECORD_BYTES.
    let count = usize::try_from(records_count).map_err(|_| BatchError::CountMismatch {
        last_offset_delta: records_count.wrapping_sub(1),
        records_count,
    })?;
    if count > records.len() / MIN_RECORD_BYTES {
        return Err(BatchError::CountExceedsBytes {
            records_count,
            bytes: records.len(),
        });
    }
    let mut cursor = Cursor::new(records, 0);
    for index in 0..records_count {
        cursor.index = index;
        let length = cursor.varint()?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length >= MIN_RECORD_BODY_BYTES)
            .ok_or(BatchError::BadRecord {
                index,
                reason: "record length below the smallest record",
            })?;
        let body = cursor.take(length, "record length past the end of the batch")?;
        let record = parse_record(body, index, clock)?;
        if visit(record).is_break() {
            return Ok(());
        }
    }
    if !cursor.rest.is_empty() {
        return Err(BatchError::TrailingBytes { records_count });
    }
    Ok(())
}

/// Parses one record body (after its length prefix), which must be consumed exactly.
fn parse_record<'a>(
    body: &'a [u8],
    index: i32,
    clock: &RecordClock,
) -> Result<RecordView<'a>, BatchError> {
    let mut cursor = Cursor::new(body, index);
    let _attributes = cursor.take(1, "record ends in its attributes")?;
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    if offset_delta != index {
        return Err(BatchError::OffsetDelta {
            index,
            offset_delta,
        });
    }
    let key = cursor.nullable_bytes("key length out of range")?;
    let value = cursor.nullable_bytes("value length out of range")?;
    let header_count = cursor.varint()?;
    let headers_fit = usize::try_from(header_count)
        .is_ok_and(|count| count <= cursor.rest.len() / MIN_HEADER_BYTES);
    if !headers_fit {
        return Err(cursor.bad("header count out of range"));
    }
    for _ in 0..header_count {
        let key_length = cursor.varint()?;
        let key_length =
            usize::try_from(key_length).map_err(|_| cursor.bad("negative header key length"))?;
        cursor.take(key_length, "header key length out of range")?;
        cursor.nullable_bytes("header value length out of range")?;
    }
    if !cursor.rest.is_empty() {
        return Err(cursor.bad("record length disagrees with its fields"));
    }
    let timestamp = match clock.log_append_time {
        Some(max_timestamp) => max_timestamp,
        None => clock
            .base_timestamp
            .checked_add(timestamp_delta)
            .ok_or_else(|| cursor.bad("timestamp overflows"))?,
    };
    Ok(RecordView {
        index,
        timestamp,
        key,
        value,
        header_count,
    })
}

/// Reads Kafka's record encoding from a slice, never past its end.
struct Cursor<'a> {
    rest: &'a [u8],
    /// The record being read, for error messages.
    index: i32,
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8], index: i32) -> Cursor<'a> {
        Cursor { rest, index }
    }

    fn bad(&self, reason: &'static str) -> BatchError {
        BatchError::BadRecord {
            index: self.index,
            reason,
        }
    }

    fn take(&mut self, length: usize, reason: &'static str) -> Result<&'a [u8], BatchError> {
        if length > self.rest.len() {
            return Err(self.bad(reason));
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }

    /// An unsigned LEB128 of at most `bytes_max` bytes, zig-zag decoded.
    fn zigzag(&mut self, bytes_max: usize) -> Result<i64, BatchError> {
        let mut value = 0u64;
        for (position, &byte) in self.rest.iter().enumerate().take(bytes_max) {
            value |= u64::from(byte & 0x7f) << (7 * position);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[position + 1..];
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(self.bad("truncated or overlong varint"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let value = self.zigzag(VARINT_BYTES_MAX)?;
        i32::try_from(value).map_err(|_| self.bad("varint out of int32 range"))
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        self.zigzag(VARLONG_BYTES_MAX)
    }

    /// A length-prefixed byte string: -1 is null, other negatives and lengths past the end
    /// are refused.
    fn nullable_bytes(&mut self, reason: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            length => {
                let length = usize::try_from(length).map_err(|_| self.bad(reason))?;
                self.take(length, reason).map(Some)
            }
        }
    }
}

/// Inflates a gzip, lz4 (frame) or zstd stream through `Read::take`, so at most
/// `bytes_max + 1` bytes are ever produced, however small the input.
fn inflate(codec: i16, compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let failed = |error: std::io::Error| BatchError::DecompressFailed {
        codec,
        reason: error.to_string(),
    };
    let decoder: Box<dyn Read + '_> = match codec {
        CODEC_GZIP => Box::new(flate2::read::GzDecoder::new(compressed)),
        CODEC_LZ4 => Box::new(lz4::Decoder::new(compressed).map_err(failed)?),
        _ => Box::new(zstd::stream::read::Decoder::with_buffer(compressed).map_err(failed)?),
    };
    let limit = u64::try_from(bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::new();
    decoder.take(limit).read_to_end(&mut out).map_err(failed)?;
    if out.len() > bytes_max {
        return Err(BatchError::DecompressedTooLarge { limit: bytes_max });
    }
    Ok(out)
}

/// Decompresses snappy as Kafka writes it: snappy-java's framing (a 16-byte header, then
/// blocks of `u32` length + raw snappy), or a single raw snappy block when the header is
/// absent (what `SnappyInputStream` falls back to). Each block's declared size is checked
/// against what is left of `bytes_max` and against snappy's expansion bound before anything
/// is allocated for it.
fn unsnappy(compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    if !compressed.starts_with(XERIAL_MAGIC) {
        unsnappy_block(compressed, bytes_max, &mut out)?;
        return Ok(out);
    }
    let truncated = || BatchError::DecompressFailed {
        codec: CODEC_SNAPPY,
        reason: "truncated snappy-java framing".into(),
    };
    let mut rest = compressed
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(truncated)?;
    while !rest.is_empty() {
        let (length, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| truncated())?;
        if length > tail.len() {
            return Err(truncated());
        }
        let (block, tail) = tail.split_at(length);
        unsnappy_block(block, bytes_max, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

fn unsnappy_block(block: &[u8], bytes_max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let failed = |error: snap::Error| BatchError::DecompressFailed {
        codec: CODEC_SNAPPY,
        reason: error.to_string(),
    };
    let length = snap::raw::decompress_len(block).map_err(failed)?;
    if length > bytes_max.saturating_sub(out.len()) {
        return Err(BatchError::DecompressedTooLarge { limit: bytes_max });
    }
    if length > block.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(BatchError::DecompressFailed {
            codec: CODEC_SNAPPY,
            reason: format!(
                "a {}-byte block cannot expand to {length} bytes",
                block.len()
            ),
        });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(failed)?;
    out.truncate(start + written);
    Ok(())
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

    /// Recomputes `batch_length` and the CRC after an edit, so only the record checks can
    /// refuse the batch.
    fn reseal(batch: &mut [u8]) {
        let length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A resealed batch of `records` (as stored after the header) claiming `count` records.
    fn batch_of(records: &[u8], count: i32, attributes: i16) -> Vec<u8> {
        let mut batch = build_batch(&[b"x"], 1_000);
        batch.truncate(HEADER_BYTES);
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[23..27].copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(records);
        reseal(&mut batch);
        batch
    }

    /// Record fields as raw varints, so tests can write what no encoder would.
    struct Raw {
        timestamp_delta: i64,
        offset_delta: i64,
        key: Option<Vec<u8>>,
        value_length: i64,
        value: Vec<u8>,
        header_count: i64,
        headers: Vec<u8>,
    }

    impl Raw {
        fn new(offset_delta: i64, value: &[u8]) -> Raw {
            Raw {
                timestamp_delta: 0,
                offset_delta,
                key: None,
                value_length: value.len() as i64,
                value: value.to_vec(),
                header_count: 0,
                headers: Vec::new(),
            }
        }

        fn body(&self) -> Vec<u8> {
            let mut body = vec![0];
            put_varint(&mut body, self.timestamp_delta);
            put_varint(&mut body, self.offset_delta);
            match &self.key {
                Some(key) => {
                    put_varint(&mut body, key.len() as i64);
                    body.extend_from_slice(key);
                }
                None => put_varint(&mut body, -1),
            }
            put_varint(&mut body, self.value_length);
            body.extend_from_slice(&self.value);
            put_varint(&mut body, self.header_count);
            body.extend_from_slice(&self.headers);
            body
        }
    }

    fn prefixed(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            put_varint(&mut out, body.len() as i64);
            out.extend_from_slice(body);
        }
        out
    }

    fn limits() -> RecordLimits {
        RecordLimits {
            decompressed_bytes_max: 1 << 20,
        }
    }

    #[test]
    fn validate_accepts_what_producers_send_and_walks_every_record() {
        let batch = build_batch(&[b"a", b"", b"ccc"], 1_000);
        validate(&batch, LIMIT, limits()).expect("valid");
        let view = verify(&batch, LIMIT).unwrap();
        let mut seen = Vec::new();
        for_each_record(&view, limits(), |record| {
            seen.push((
                record.index,
                record.timestamp,
                record.value.map(<[u8]>::len),
            ));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (0, 1_000, Some(1)),
                (1, 1_000, Some(0)),
                (2, 1_000, Some(3))
            ]
        );
        // Keys, headers and a null value are walked too.
        let mut record = Raw::new(0, b"");
        record.key = Some(b"key".to_vec());
        record.value_length = -1;
        record.timestamp_delta = 5;
        record.header_count = 2;
        record.headers = {
            let mut headers = Vec::new();
            put_varint(&mut headers, 1);
            headers.push(b'h');
            put_varint(&mut headers, -1);
            put_varint(&mut headers, 0);
            put_varint(&mut headers, 2);
            headers.extend_from_slice(b"vv");
            headers
        };
        let batch = batch_of(&prefixed(&[record.body()]), 1, 0);
        let view = validate(&batch, LIMIT, limits()).expect("valid");
        for_each_record(&view, limits(), |record| {
            assert_eq!(record.key, Some(&b"key"[..]));
            assert_eq!(record.value, None);
            assert_eq!(record.header_count, 2);
            assert_eq!(record.timestamp, 1_005);
            ControlFlow::Break(())
        })
        .unwrap();
    }

    #[test]
    fn validate_refuses_every_kind_of_bad_record() {
        let one = prefixed(&[Raw::new(0, b"v").body()]);
        let with = |edit: fn(&mut Raw)| {
            let mut record = Raw::new(0, b"v");
            edit(&mut record);
            batch_of(&prefixed(&[record.body()]), 1, 0)
        };
        type Expectation = fn(&BatchError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expectation)> = vec![
            (
                "2^31-1 records in no bytes",
                batch_of(&[], i32::MAX, 0),
                |e| {
                    matches!(
                        e,
                        BatchError::CountExceedsBytes {
                            records_count: i32::MAX,
                            bytes: 0
                        }
                    )
                },
            ),
            ("more records than bytes / 7", batch_of(&one, 2, 0), |e| {
                matches!(e, BatchError::CountExceedsBytes { .. })
            }),
            (
                "fewer records than declared",
                {
                    let mut two = one.clone();
                    two.extend_from_slice(&[0; 7]);
                    batch_of(&two, 2, 0)
                },
                |e| matches!(e, BatchError::BadRecord { index: 1, .. }),
            ),
            (
                "2^31-1 headers",
                with(|r| r.header_count = i32::MAX.into()),
                |e| {
                    matches!(
                        e,
                        BatchError::BadRecord {
                            index: 0,
                            reason: "header count out of range"
                        }
                    )
                },
            ),
            (
                "negative header count",
                with(|r| r.header_count = -1),
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "negative header key length",
                with(|r| {
                    r.header_count = 1;
                    r.headers = vec![1, 1]; // key length -1, value length -1
                }),
                |e| {
                    matches!(
                        e,
                        BatchError::BadRecord {
                            reason: "negative header key length",
                            ..
                        }
                    )
                },
            ),
            (
                "header key past the end",
                with(|r| {
                    r.header_count = 1;
                    r.headers = vec![20, 1];
                }),
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "value length past the end",
                with(|r| r.value_length = 1000),
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            ("value length -2", with(|r| r.value_length = -2), |e| {
                matches!(e, BatchError::BadRecord { .. })
            }),
            (
                "offset delta 1 for record 0",
                with(|r| r.offset_delta = 1),
                |e| {
                    matches!(
                        e,
                        BatchError::OffsetDelta {
                            index: 0,
                            offset_delta: 1
                        }
                    )
                },
            ),
            (
                "timestamp overflow",
                with(|r| r.timestamp_delta = i64::MAX),
                |e| {
                    matches!(
                        e,
                        BatchError::BadRecord {
                            reason: "timestamp overflows",
                            ..
                        }
                    )
                },
            ),
            (
                "offset deltas 0, 2",
                {
                    let bodies = [Raw::new(0, b"v").body(), Raw::new(2, b"v").body()];
                    batch_of(&prefixed(&bodies), 2, 0)
                },
                |e| {
                    matches!(
                        e,
                        BatchError::OffsetDelta {
                            index: 1,
                            offset_delta: 2
                        }
                    )
                },
            ),
            (
                "record length past the end",
                {
                    let mut records = Vec::new();
                    put_varint(&mut records, 100);
                    records.extend_from_slice(&Raw::new(0, b"v").body());
                    batch_of(&records, 1, 0)
                },
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "record length below the smallest record",
                { batch_of(&[10, 0, 0, 0, 1, 1, 0, 0], 1, 0) },
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "record longer than its fields",
                {
                    let mut body = Raw::new(0, b"v").body();
                    body.push(0);
                    batch_of(&prefixed(&[body]), 1, 0)
                },
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "overlong varint",
                { batch_of(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0], 1, 0) },
                |e| matches!(e, BatchError::BadRecord { .. }),
            ),
            (
                "bytes after the last record",
                {
                    let mut records = one.clone();
                    records.extend_from_slice(&[0, 0, 0]);
                    batch_of(&records, 1, 0)
                },
                |e| matches!(e, BatchError::TrailingBytes { records_count: 1 }),
            ),
            ("codec 5", batch_of(&one, 1, 5), |e| {
                matches!(e, BatchError::UnknownCodec(5))
            }),
            ("codec 7", batch_of(&one, 1, 7), |e| {
                matches!(e, BatchError::UnknownCodec(7))
            }),
            ("gzip garbage", batch_of(b"not gzip at all", 1, 1), |e| {
                matches!(e, BatchError::DecompressFailed { codec: 1, .. })
            }),
            ("zstd garbage", batch_of(b"not zstd at all", 1, 4), |e| {
                matches!(e, BatchError::DecompressFailed { codec: 4, .. })
            }),
            ("lz4 garbage", batch_of(b"not lz4 at all", 1, 3), |e| {
                matches!(e, BatchError::DecompressFailed { codec: 3, .. })
            }),
            (
                "snappy claiming 4 GiB",
                batch_of(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0], 1, 2),
                |e| matches!(e, BatchError::DecompressedTooLarge { .. }),
            ),
            (
                "snappy claiming 1000x its size",
                {
                    let mut claim = Vec::new();
                    put_varint(&mut claim, 2500); // zig-zag 2500: the unsigned varint 5000
                    claim.extend_from_slice(&[0; 3]);
                    batch_of(&claim, 1, 2)
                },
                |e| matches!(e, BatchError::DecompressFailed { codec: 2, .. }),
            ),
            (
                "snappy-java framing cut short",
                {
                    let mut framed = XERIAL_MAGIC.to_vec();
                    framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 50, 1]);
                    batch_of(&framed, 1, 2)
                },
                |e| matches!(e, BatchError::DecompressFailed { codec: 2, .. }),
            ),
        ];
        for (name, batch, expected) in cases {
            verify(&batch, LIMIT).unwrap_or_else(|e| panic!("{name}: must pass verify: {e}"));
            let error = validate(&batch, LIMIT, limits()).expect_err(name);
            assert!(expected(&error), "{name}: unexpected {error:?}");
        }
    }

    /// The records of `values`, compressed by kafka-protocol's encoder (the codecs Kafka's
    /// clients use), then validated by our walker.
    fn encoded(values: &[Vec<u8>], compression: kafka_protocol::records::Compression) -> Vec<u8> {
        use kafka_protocol::records::*;
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(index, value)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                sequence: index as i32,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                timestamp: 7_000 + index as i64,
                key: Some(bytes::Bytes::from_static(b"k")),
                value: Some(bytes::Bytes::from(value.clone())),
                headers: Default::default(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        out.to_vec()
    }

    #[test]
    fn compressed_batches_walk_and_bombs_stop_at_the_cap() {
        use kafka_protocol::records::Compression;
        let small: Vec<Vec<u8>> = (0..20).map(|i| vec![b'a' + i as u8; 100]).collect();
        let bomb = vec![vec![0u8; 2 << 20]];
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encoded(&small, compression);
            let view = validate(&batch, LIMIT, limits())
                .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
            assert_eq!(view.bytes.len(), batch.len(), "{compression:?}: one batch");
            let mut timestamps = Vec::new();
            for_each_record(&view, limits(), |record| {
                timestamps.push(record.timestamp);
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(
                timestamps,
                (7_000..7_020).collect::<Vec<i64>>(),
                "{compression:?}"
            );
            let batch = encoded(&bomb, compression);
            assert!(
                batch.len() < 200_000,
                "{compression:?} bomb is {} bytes",
                batch.len()
            );
            assert_eq!(
                validate(&batch, LIMIT, limits()).unwrap_err(),
                BatchError::DecompressedTooLarge { limit: 1 << 20 },
                "{compression:?}"
            );
        }
        // Raw snappy (no snappy-java framing), as some clients send it.
        let raw = snap::raw::Encoder::new()
            .compress_vec(&prefixed(&[Raw::new(0, b"raw").body()]))
            .unwrap();
        validate(&batch_of(&raw, 1, 2), LIMIT, limits()).expect("raw snappy");
    }

    #[test]
    fn log_append_time_batches_report_the_batch_timestamp() {
        let mut batch = build_batch(&[b"a", b"b"], 1_000);
        batch[21..23].copy_from_slice(&TIMESTAMP_TYPE_LOG_APPEND.to_be_bytes());
        batch[35..43].copy_from_slice(&9_999i64.to_be_bytes());
        reseal(&mut batch);
        let view = validate(&batch, LIMIT, limits()).unwrap();
        for_each_record(&view, limits(), |record| {
            assert_eq!(record.timestamp, 9_999);
            ControlFlow::Continue(())
        })
        .unwrap();
    }

    #[test]
    fn resealed_mutations_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let seeds = [
            build_batch(&[b"a", b"bb", b"ccc"], 1),
            batch_of(&[], i32::MAX, 0),
            encoded(
                &[vec![1; 50], vec![2; 60]],
                kafka_protocol::records::Compression::Gzip,
            ),
            encoded(&[vec![1; 50]], kafka_protocol::records::Compression::Snappy),
            encoded(&[vec![3; 40]], kafka_protocol::records::Compression::Lz4),
            encoded(&[vec![4; 30]], kafka_protocol::records::Compression::Zstd),
        ];
        for _ in 0..20_000 {
            let mut batch = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(HEADER_BYTES.min(batch.len() - 1)..batch.len());
                match rng.gen_range(0..3) {
                    0 => batch[at] = rng.gen(),
                    1 => {
                        batch.truncate(at.max(HEADER_BYTES));
                    }
                    _ => batch.insert(at, rng.gen()),
                }
            }
            if rng.gen_bool(0.3) {
                // Header fields the walk trusts: count, delta, attributes.
                let count: i32 = rng.gen_range(-2..10);
                batch[57..61].copy_from_slice(&count.to_be_bytes());
                batch[23..27].copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
                batch[22] = rng.gen_range(0..8);
            }
            reseal(&mut batch);
            // Either answer is fine; what matters is no panic and no huge allocation.
            let _ = validate(&batch, LIMIT, limits());
        }
    }
}
