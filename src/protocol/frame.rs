//! Request framing: `int32 size` then the request header and body.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: i64, limit: usize },
    #[error("frame size {0} is too small for a request header")]
    TooSmall(i32),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    BadHeader(String),
}

/// Smallest possible request: api key, api version, correlation id, client id length.
const HEADER_BYTES_MIN: i32 = 10;

/// Validates the 4-byte size prefix of a request before its body is read.
pub fn frame_size(prefix: [u8; 4], limit: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < HEADER_BYTES_MIN {
        return Err(FrameError::TooSmall(size));
    }
    let size = size as usize;
    if size > limit {
        return Err(FrameError::TooLarge {
            size: size as i64,
            limit,
        });
    }
    Ok(size)
}

/// A request with its header decoded and its body still encoded.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer as Kafka shows it (`/ip`); set by the connection.
    pub client_host: String,
    /// The listener it came in on (an index in the broker's listeners; set by the
    /// connection): Metadata answers with that listener's addresses.
    pub listener: usize,
    /// Who sent it (`User:alice`, `User:ANONYMOUS`; set by the connection): what the
    /// authorizer checks. Shared by the connection's requests.
    pub principal: Rc<str>,
    /// Until when the connection reads nothing more (a client over its quota;
    /// `server::quota`). Shared by the connection's requests.
    pub mute: Rc<Cell<Option<Instant>>>,
    /// The throttle its answer reports (`throttle_time_ms`): set when its client is over
    /// its request-time quota (`server::quota`).
    pub throttle: Cell<Duration>,
    pub body: Bytes,
}

/// The api key, version and correlation id, read without decoding the rest: enough to
/// answer even a request whose header version we cannot decode.
pub fn peek_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut raw = frame.get(..8)?;
    Some((raw.get_i16(), raw.get_i16(), raw.get_i32()))
}

thread_local! {
    /// `User:ANONYMOUS`, shared: a request's principal until its connection sets it.
    static ANONYMOUS: Rc<str> = Rc::from(crate::security::principal::ANONYMOUS);
}

/// Decodes the request header; the body stays as bytes for the API's own decoder.
pub fn parse_request(mut frame: Bytes) -> Result<Request, FrameError> {
    let (key, version, _) = peek_ids(&frame).ok_or(FrameError::TooSmall(frame.len() as i32))?;
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey(key))?;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|error| FrameError::BadHeader(error.to_string()))?;
    Ok(Request {
        api_key,
        api_version: header.request_api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|id| id.to_string()),
        client_host: String::new(),
        principal: ANONYMOUS.with(Rc::clone),
        mute: Rc::default(),
        throttle: Cell::default(),
        listener: 0,
        body: frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded_header(api_key: i16, version: i16, header_version: i16) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = api_key;
        header.request_api_version = version;
        header.correlation_id = 42;
        header.client_id = Some(StrBytes::from_static_str("tester"));
        let mut out = bytes::BytesMut::new();
        header.encode(&mut out, header_version).expect("encode");
        out.put_slice(b"body");
        out.freeze()
    }

    #[test]
    fn frame_sizes_are_capped_before_reading() {
        assert_eq!(frame_size(100i32.to_be_bytes(), 1000), Ok(100));
        assert_eq!(
            frame_size(5i32.to_be_bytes(), 1000),
            Err(FrameError::TooSmall(5))
        );
        assert_eq!(
            frame_size((-1i32).to_be_bytes(), 1000),
            Err(FrameError::TooSmall(-1))
        );
        assert!(matches!(
            frame_size(i32::MAX.to_be_bytes(), 1000),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn parses_flexible_and_classic_headers() {
        // Metadata v12 uses header v2 (tagged fields), v1 uses header v1.
        for (version, header_version) in [(12, 2), (1, 1)] {
            let request = parse_request(encoded_header(3, version, header_version)).expect("parse");
            assert_eq!(request.api_key, ApiKey::Metadata);
            assert_eq!(request.api_version, version);
            assert_eq!(request.correlation_id, 42);
            assert_eq!(request.client_id.as_deref(), Some("tester"));
            assert_eq!(&request.body[..], b"body");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_garbage() {
        assert_eq!(
            parse_request(encoded_header(999, 0, 1)).unwrap_err(),
            FrameError::UnknownApiKey(999)
        );
        assert!(parse_request(Bytes::from_static(&[0, 3, 0, 1])).is_err());
        // A client id length pointing past the end.
        let mut garbage = vec![0, 3, 0, 1, 0, 0, 0, 1];
        garbage.extend_from_slice(&i16::MAX.to_be_bytes());
        assert!(matches!(
            parse_request(Bytes::from(garbage)),
            Err(FrameError::BadHeader(_))
        ));
    }
}
