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

/// Encodes a response to `request`. A request of a client over one of its quotas
/// (`Request::throttle`, `server::quota`) reports the throttle in `throttle_time_ms`, as
/// Kafka's answers do, unless the handler already reported a longer one.
pub fn respond<T>(request: &Request, body: &T) -> HandlerResult
where
    T: kafka_protocol::protocol::Encodable + ThrottleTime + Clone,
{
    let throttle_ms = super::quota::throttle_ms(request.throttle.get());
    let encode = |body: &T| {
        crate::protocol::response::encode(
            request.api_key,
            request.api_version,
            request.correlation_id,
            body,
        )
    };
    if throttle_ms > body.throttle_time_ms() {
        // Only for a throttled client: the copy shares the response's `Bytes`.
        let mut throttled = body.clone();
        throttled.set_throttle_time_ms(throttle_ms);
        return Ok(Some(encode(&throttled)?));
    }
    Ok(Some(encode(body)?))
}

/// A response's `throttle_time_ms` (KIP-219). Every version that lacks the field skips it
/// when encoding (the field is ignorable in each schema), so setting it is always safe.
pub trait ThrottleTime {
    fn throttle_time_ms(&self) -> i32;
    fn set_throttle_time_ms(&mut self, ms: i32);
}

macro_rules! throttle_time {
    ($($response:ident),* $(,)?) => {$(
        impl ThrottleTime for kafka_protocol::messages::$response {
            fn throttle_time_ms(&self) -> i32 {
                self.throttle_time_ms
            }
            fn set_throttle_time_ms(&mut self, ms: i32) {
                self.throttle_time_ms = ms;
            }
        }
    )*};
}

throttle_time!(
    AlterClientQuotasResponse,
    AlterConfigsResponse,
    AlterPartitionReassignmentsResponse,
    AlterUserScramCredentialsResponse,
    ApiVersionsResponse,
    CreateAclsResponse,
    CreatePartitionsResponse,
    CreateTopicsResponse,
    DeleteAclsResponse,
    DeleteGroupsResponse,
    DeleteTopicsResponse,
    DescribeAclsResponse,
    DescribeClientQuotasResponse,
    DescribeClusterResponse,
    DescribeConfigsResponse,
    DescribeGroupsResponse,
    DescribeLogDirsResponse,
    DescribeUserScramCredentialsResponse,
    ElectLeadersResponse,
    FetchResponse,
    FindCoordinatorResponse,
    HeartbeatResponse,
    IncrementalAlterConfigsResponse,
    InitProducerIdResponse,
    JoinGroupResponse,
    LeaveGroupResponse,
    ListGroupsResponse,
    ListOffsetsResponse,
    ListPartitionReassignmentsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetDeleteResponse,
    OffsetFetchResponse,
    OffsetForLeaderEpochResponse,
    ProduceResponse,
    SyncGroupResponse,
);

/// The SASL exchange's answers have no throttle (they come before any quota applies).
macro_rules! no_throttle_time {
    ($($response:ident),* $(,)?) => {$(
        impl ThrottleTime for kafka_protocol::messages::$response {
            fn throttle_time_ms(&self) -> i32 {
                0
            }
            fn set_throttle_time_ms(&mut self, _ms: i32) {}
        }
    )*};
}

no_throttle_time!(SaslAuthenticateResponse, SaslHandshakeResponse);
