//! Response encoding: `int32 size`, the response header, the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Bytes of the `int32 size` that precedes every response.
const SIZE_PREFIX_BYTES: usize = 4;

/// Encodes `body` as the response to request `correlation_id`, size prefix included.
pub fn encode<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, EncodeError> {
    let failed = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    // ApiVersions always answers with header v0, so that a client that sent a version we do
    // not support can still read the answer (KIP-511).
    let header_version = api_key.response_header_version(version);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| failed(e.to_string()))?;
    let body_size = body
        .compute_size(version)
        .map_err(|e| failed(e.to_string()))?;
    // The size prefix is an i32: check it before allocating, so an oversized answer is an
    // error instead of a multi-gigabyte (or overflowing) allocation.
    let size = header_size
        .checked_add(body_size)
        .and_then(|size| i32::try_from(size).ok())
        .ok_or_else(|| failed(format!("{header_size} + {body_size} bytes exceed i32")))?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX_BYTES + size as usize);
    out.put_i32(size);
    header
        .encode(&mut out, header_version)
        .map_err(|e| failed(e.to_string()))?;
    body.encode(&mut out, version)
        .map_err(|e| failed(e.to_string()))?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::buf::ByteBufMut;

    /// A body that claims `size` bytes and must never be asked to encode them.
    struct Claims(usize);

    impl Encodable for Claims {
        fn encode<B: ByteBufMut>(&self, _buf: &mut B, _version: i16) -> anyhow::Result<()> {
            panic!("encode must not be reached for a body that cannot fit an i32 frame")
        }

        fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
            Ok(self.0)
        }
    }

    #[test]
    fn an_answer_larger_than_i32_is_an_error_before_any_allocation() {
        for size in [i32::MAX as usize, isize::MAX as usize, usize::MAX] {
            let error = encode(ApiKey::Fetch, 12, 7, &Claims(size)).expect_err("too large");
            assert_eq!(error.api_key, ApiKey::Fetch, "{size}");
        }
        let ok = encode(ApiKey::ApiVersions, 3, 7, &ApiVersionsResponse::default()).unwrap();
        assert_eq!(
            i32::from_be_bytes(ok[..4].try_into().unwrap()) as usize,
            ok.len() - SIZE_PREFIX_BYTES
        );
    }
}
