//! Why a batch was rejected.

use super::format::{HEADER_BYTES, MIN_RECORD_BYTES};

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
