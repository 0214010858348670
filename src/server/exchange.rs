//! What every handler shares: decoding its request body, encoding its response, and the
//! errors that close a connection instead of answering.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::protocol::frame::Request;
use crate::protocol::response::EncodeError;
use crate::shard::ShardGone;

/// Why a request gets no answer and its connection closes.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unsupported API {0:?}")]
    UnsupportedApi(ApiKey),
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("cannot decode {api_key:?} v{version}: {reason}")]
    Decode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("a shard stopped while serving the request")]
    ShardGone(#[from] ShardGone),
    #[error("the request's handler stopped without answering")]
    Abandoned,
}

/// What a handler returns: the encoded response, or none (acks=0 produce).
pub type HandlerResult = Result<Option<Bytes>, DispatchError>;

/// Decodes a request body, mapping failure to a connection-closing error.
pub fn decode<T: kafka_protocol::protocol::Decodable>(
    request: &Request,
) -> Result<T, DispatchError> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.api_version).map_err(|error| DispatchError::Decode {
        api_key: request.api_key,
        version: request.api_version,
        reason: error.to_string(),
    })
}

/// Encodes a response to `request`.
pub fn respond<T: kafka_protocol::protocol::Encodable>(
    request: &Request,
    body: &T,
) -> HandlerResult {
    Ok(Some(crate::protocol::response::encode(
        request.api_key,
        request.api_version,
        request.correlation_id,
        body,
    )?))
}
