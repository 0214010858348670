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
//!
//! - `format`: the layout's sizes, magic, attribute bits and codecs;
//! - `header`: the fixed header, framing, CRC check, offset assignment;
//! - `records`: the bounded record walk and Kafka's `LogValidator` checks;
//! - `compression`: bounded inflation of gzip, snappy, lz4 and zstd records;
//! - `error`: why a batch was rejected; `build`: valid batches for tests and benchmarks.

mod build;
mod compression;
mod error;
mod format;
mod header;
mod records;

pub use build::build_batch;
pub use error::BatchError;
pub use format::{
    DECOMPRESSED_BYTES_MAX_DEFAULT, HEADER_BYTES, LOG_OVERHEAD_BYTES, MIN_RECORD_BYTES,
};
pub use header::{assign_offset, frame, verify, BatchView, RecordBatchHeader};
pub use records::{for_each_record, validate, RecordLimits, RecordView};

#[cfg(test)]
mod tests;
