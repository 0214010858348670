//! The one registry of supported Kafka APIs: the version range each one advertises in
//! ApiVersions, checked here once for every request, and the handler it dispatches to.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::handlers;
use super::turn::Turn;
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
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
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

/// Runs one request. `turn` orders it after the connection's earlier requests: reads go
/// as soon as every earlier request has passed its ordered phase; produce holds its turn
/// through its appends; topic and group changes hold it until done.
pub async fn dispatch(shard: Rc<Shard>, request: Request, mut turn: Turn) -> HandlerResult {
    turn.wait().await;
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
    if !matches!(
        request.api_key,
        ApiKey::Produce
            | ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetDelete
            | ApiKey::DeleteGroups
    ) {
        turn.release();
    }
    match request.api_key {
        ApiKey::ApiVersions => handlers::api_versions::handle(&request),
        ApiKey::Metadata => handlers::metadata::handle(&shard, &request).await,
        ApiKey::Produce => handlers::produce::handle(&shard, &request, turn).await,
        ApiKey::Fetch => handlers::fetch::handle(&shard, &request).await,
        ApiKey::ListOffsets => handlers::list_offsets::handle(&shard, &request).await,
        ApiKey::CreateTopics => handlers::create_topics::handle(&shard, &request).await,
        ApiKey::DeleteTopics => handlers::delete_topics::handle(&shard, &request).await,
        ApiKey::CreatePartitions => handlers::create_partitions::handle(&shard, &request).await,
        ApiKey::DescribeConfigs => handlers::describe_configs::handle(&shard, &request),
        ApiKey::AlterConfigs => handlers::alter_configs::handle(&shard, &request).await,
        ApiKey::IncrementalAlterConfigs => {
            handlers::incremental_alter_configs::handle(&shard, &request).await
        }
        ApiKey::DescribeCluster => handlers::describe_cluster::handle(&shard, &request),
        ApiKey::InitProducerId => handlers::init_producer_id::handle(&shard, &request).await,
        ApiKey::FindCoordinator => handlers::find_coordinator::handle(&shard, &request),
        ApiKey::JoinGroup => handlers::join_group::handle(&shard, &request).await,
        ApiKey::SyncGroup => handlers::sync_group::handle(&shard, &request).await,
        ApiKey::Heartbeat => handlers::heartbeat::handle(&shard, &request).await,
        ApiKey::LeaveGroup => handlers::leave_group::handle(&shard, &request).await,
        ApiKey::OffsetCommit => handlers::offset_commit::handle(&shard, &request).await,
        ApiKey::OffsetFetch => handlers::offset_fetch::handle(&shard, &request).await,
        ApiKey::OffsetDelete => handlers::offset_delete::handle(&shard, &request).await,
        ApiKey::DescribeGroups => handlers::describe_groups::handle(&shard, &request).await,
        ApiKey::ListGroups => handlers::list_groups::handle(&shard, &request).await,
        ApiKey::DeleteGroups => handlers::delete_groups::handle(&shard, &request).await,
        other => Err(DispatchError::UnsupportedApi(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use rand::{Rng, SeedableRng};

    fn request(api_key: ApiKey, api_version: i16, body: &[u8]) -> Request {
        Request {
            api_key,
            api_version,
            correlation_id: 1,
            client_id: None,
            client_host: String::new(),
            body: Bytes::copy_from_slice(body),
        }
    }

    /// A count of 2^31-1 followed by nothing: without the vendored patch the decoder
    /// reserves room for 2^31-1 elements up front and the process aborts.
    #[test]
    fn absurd_array_counts_fail_without_allocating() {
        let count = i32::MAX.to_be_bytes();
        assert!(decode::<MetadataRequest>(&request(ApiKey::Metadata, 1, &count)).is_err());
        assert!(decode::<CreateTopicsRequest>(&request(ApiKey::CreateTopics, 2, &count)).is_err());
        // Flexible versions use unsigned varints: 0xffffffff0f is 2^32-1.
        let compact = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<MetadataRequest>(&request(ApiKey::Metadata, 12, &compact)).is_err());
    }

    /// Random bodies through every decoder the registry uses, at every advertised version.
    #[test]
    fn random_bodies_never_panic_a_decoder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..3000 {
            let length = rng.gen_range(0..300);
            let body: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
            for spec in APIS {
                for version in spec.min_version.max(0)..=spec.max_version {
                    let request = request(spec.key, version, &body);
                    let _ = match spec.key {
                        ApiKey::Produce => decode::<ProduceRequest>(&request).map(drop),
                        ApiKey::Fetch => decode::<FetchRequest>(&request).map(drop),
                        ApiKey::ListOffsets => decode::<ListOffsetsRequest>(&request).map(drop),
                        ApiKey::Metadata => decode::<MetadataRequest>(&request).map(drop),
                        ApiKey::ApiVersions => decode::<ApiVersionsRequest>(&request).map(drop),
                        ApiKey::CreateTopics => decode::<CreateTopicsRequest>(&request).map(drop),
                        ApiKey::DeleteTopics => decode::<DeleteTopicsRequest>(&request).map(drop),
                        ApiKey::DescribeConfigs => {
                            decode::<DescribeConfigsRequest>(&request).map(drop)
                        }
                        ApiKey::CreatePartitions => {
                            decode::<CreatePartitionsRequest>(&request).map(drop)
                        }
                        ApiKey::AlterConfigs => decode::<AlterConfigsRequest>(&request).map(drop),
                        ApiKey::IncrementalAlterConfigs => {
                            decode::<IncrementalAlterConfigsRequest>(&request).map(drop)
                        }
                        ApiKey::DescribeCluster => {
                            decode::<DescribeClusterRequest>(&request).map(drop)
                        }
                        ApiKey::InitProducerId => {
                            decode::<InitProducerIdRequest>(&request).map(drop)
                        }
                        ApiKey::FindCoordinator => {
                            decode::<FindCoordinatorRequest>(&request).map(drop)
                        }
                        ApiKey::JoinGroup => decode::<JoinGroupRequest>(&request).map(drop),
                        ApiKey::SyncGroup => decode::<SyncGroupRequest>(&request).map(drop),
                        ApiKey::Heartbeat => decode::<HeartbeatRequest>(&request).map(drop),
                        ApiKey::LeaveGroup => decode::<LeaveGroupRequest>(&request).map(drop),
                        ApiKey::OffsetCommit => decode::<OffsetCommitRequest>(&request).map(drop),
                        ApiKey::OffsetFetch => decode::<OffsetFetchRequest>(&request).map(drop),
                        ApiKey::OffsetDelete => decode::<OffsetDeleteRequest>(&request).map(drop),
                        ApiKey::DescribeGroups => {
                            decode::<DescribeGroupsRequest>(&request).map(drop)
                        }
                        ApiKey::ListGroups => decode::<ListGroupsRequest>(&request).map(drop),
                        ApiKey::DeleteGroups => decode::<DeleteGroupsRequest>(&request).map(drop),
                        other => panic!("registry lists {other:?} without a decoder in this test"),
                    };
                }
            }
        }
    }

    #[test]
    fn every_registered_api_is_within_the_codec_ranges() {
        for spec in APIS {
            let codec = spec.key.valid_versions();
            assert!(spec.max_version <= codec.max, "{:?}", spec.key);
            // Produce advertises from v0 as Kafka 4 does (see APIS); all others within range.
            if spec.key != ApiKey::Produce {
                assert!(spec.min_version >= codec.min, "{:?}", spec.key);
            }
        }
    }
}
