//! The RecordBatch v2 layout's numbers (Kafka's `DefaultRecordBatch.java` and
//! `DefaultRecord.java`), in one place.

/// Size of the fixed RecordBatch v2 header, up to and including `records_count`.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `batch_length` field's payload: `base_offset` (8) + `batch_length` (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The CRC-32C covers everything from `attributes` to the end of the batch.
pub(super) const CRC_START: usize = 21;
pub(super) const MAGIC_V2: i8 = 2;

/// Attribute bits (Kafka `RecordBatch.java`).
pub(super) const COMPRESSION_MASK: i16 = 0x07;
pub(super) const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub(super) const TRANSACTIONAL_FLAG: i16 = 0x10;
pub(super) const CONTROL_FLAG: i16 = 0x20;

/// Bytes of the smallest possible record: a one-byte length varint and a six-byte body
/// (attributes, then one-byte varints for timestamp delta, offset delta, key length, value
/// length and header count). A batch cannot hold more records than its bytes / this.
pub const MIN_RECORD_BYTES: usize = 7;
pub(super) const MIN_RECORD_BODY_BYTES: usize = MIN_RECORD_BYTES - 1;
/// Bytes of the smallest record header: key length and value length varints.
pub(super) const MIN_HEADER_BYTES: usize = 2;
/// Kafka's varints: an int32 takes at most 5 bytes, an int64 at most 10.
pub(super) const VARINT_BYTES_MAX: usize = 5;
pub(super) const VARLONG_BYTES_MAX: usize = 10;
/// Default of [`RecordLimits::decompressed_bytes_max`] (`--batch-decompressed-bytes-max`).
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// A snappy stream cannot expand more than this: its densest element, a copy with a 2-byte
/// offset, spends 3 bytes on at most 64 output bytes. A header claiming more is a lie, and
/// is refused before anything is allocated for it.
pub(super) const SNAPPY_EXPANSION_MAX: usize = 22;
/// The magic that opens snappy-java's framing (`SnappyOutputStream`), which Kafka's Java
/// clients use; the version and compatibility words follow it.
pub(super) const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
pub(super) const XERIAL_HEADER_BYTES: usize = 16;

/// Compression codecs of a v2 batch (attributes bits 0-2).
pub(super) const CODEC_NONE: i16 = 0;
pub(super) const CODEC_GZIP: i16 = 1;
pub(super) const CODEC_SNAPPY: i16 = 2;
pub(super) const CODEC_LZ4: i16 = 3;
pub(super) const CODEC_ZSTD: i16 = 4;
