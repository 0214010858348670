//! The one registry of supported Kafka APIs: the version range each one advertises in
//! ApiVersions, checked here once for every request, and the handler it dispatches to.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::handlers;
use crate::protocol::frame::Request;
use crate::protocol::response::EncodeError;
use crate::shard::Shard;

/// An API Petrel serves and the versions it advertises.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16) -> ApiSpec {
    ApiSpec {
        key,
        min_version,
        max_version,
    }
}

/// Advertised as Kafka 4.x does. Produce starts at v0 because librdkafka before 2.11.1
/// disables compression unless it is listed (KAFKA-18659); v0-v2 (magic 0/1 message sets)
/// were removed in Kafka 4 and a request at those versions closes the connection.
pub const APIS: &[ApiSpec] = &[
    api(ApiKey::Produce, 0, 13),
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 2),
];

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
    ShardGone(#[from] crate::shard::ShardGone),
    #[error("the request's handler stopped without answering")]
    Abandoned,
}

/// What a handler returns: the encoded response, or none (acks=0 produce).
pub type HandlerResult = Result<Option<Bytes>, DispatchError>;

pub fn spec(key: ApiKey) -> Option<&'static ApiSpec> {
    APIS.iter().find(|spec| spec.key == key)
}

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

pub async fn dispatch(shard: Rc<Shard>, request: Request) -> HandlerResult {
    let Some(spec) = spec(request.api_key) else {
        return Err(DispatchError::UnsupportedApi(request.api_key));
    };
    let version = request.api_version;
    if version < spec.min_version || version > spec.max_version {
        if request.api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            return handlers::api_versions::unsupported_version(&request);
        }
        return Err(DispatchError::UnsupportedVersion {
            api_key: request.api_key,
            version,
        });
    }
    match request.api_key {
        ApiKey::ApiVersions => handlers::api_versions::handle(&request),
        ApiKey::Metadata => handlers::metadata::handle(&shard, &request).await,
        ApiKey::Produce => handlers::produce::handle(&shard, &request).await,
        ApiKey::Fetch => handlers::fetch::handle(&shard, &request).await,
        ApiKey::ListOffsets => handlers::list_offsets::handle(&shard, &request).await,
        ApiKey::CreateTopics => handlers::create_topics::handle(&shard, &request).await,
        ApiKey::DeleteTopics => handlers::delete_topics::handle(&shard, &request).await,
        ApiKey::CreatePartitions => handlers::create_partitions::handle(&shard, &request).await,
        ApiKey::DescribeConfigs => handlers::describe_configs::handle(&shard, &request),
        ApiKey::DescribeCluster => handlers::describe_cluster::handle(&shard, &request),
        other => Err(DispatchError::UnsupportedApi(other)),
    }
}
