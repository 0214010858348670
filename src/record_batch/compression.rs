//! Inflating compressed records within a byte cap (a decompression bomb is refused
//! before it is inflated past the cap).

use std::io::Read;

use super::error::BatchError;
use super::format::{
    CODEC_GZIP, CODEC_LZ4, CODEC_SNAPPY, SNAPPY_EXPANSION_MAX, XERIAL_HEADER_BYTES, XERIAL_MAGIC,
};

/// Inflates a gzip, lz4 (frame) or zstd stream through `Read::take`, so at most
/// `bytes_max + 1` bytes are ever produced, however small the input.
pub(super) fn inflate(
    codec: i16,
    compressed: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, BatchError> {
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
pub(super) fn unsnappy(compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
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
