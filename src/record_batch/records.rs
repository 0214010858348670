//! The bounded walk over a batch's records, and the checks Kafka's `LogValidator` makes
//! before a batch is stored.

use std::ops::ControlFlow;

use super::compression::{inflate, unsnappy};
use super::error::BatchError;
use super::format::{
    CODEC_GZIP, CODEC_LZ4, CODEC_NONE, CODEC_SNAPPY, CODEC_ZSTD, DECOMPRESSED_BYTES_MAX_DEFAULT,
    HEADER_BYTES, MIN_HEADER_BYTES, MIN_RECORD_BODY_BYTES, MIN_RECORD_BYTES, VARINT_BYTES_MAX,
    VARLONG_BYTES_MAX,
};
use super::header::{verify, BatchView};

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
