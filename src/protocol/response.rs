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
    let size = header
        .compute_size(header_version)
        .and_then(|header_size| Ok(header_size + body.compute_size(version)?))
        .map_err(|e| failed(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(i32::try_from(size).map_err(|_| failed(format!("{size} bytes")))?);
    header
        .encode(&mut out, header_version)
        .map_err(|e| failed(e.to_string()))?;
    body.encode(&mut out, version)
        .map_err(|e| failed(e.to_string()))?;
    Ok(out.freeze())
}
