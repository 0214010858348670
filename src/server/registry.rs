//! The one table of supported Kafka APIs. Each row names the API, the versions it
//! advertises, how it orders with the connection's other requests, its request type and
//! its handler; ApiVersions, dispatch and the decoder tests are all derived from it, so
//! adding an API is adding a row (and its handler file).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;

use super::exchange::{self, DispatchError, HandlerResult};
use super::handlers::*;
use super::measure;
use super::quota;
use super::turn::Turn;
use crate::protocol::frame::Request;
use crate::runtime::time;
use crate::shard::Shard;

/// How a request orders with the earlier and later requests of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Starts once every earlier request has passed its ordered phase, and lets the next
    /// one start at once (reads).
    Concurrent,
    /// Holds the connection's turn until the handler releases it or finishes: produce
    /// appends in request order (and releases before its durability wait), topic and group
    /// changes complete in order.
    Sequential,
}

type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult>>>;

/// One supported API.
pub struct Api {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub ordering: Ordering,
    handler: fn(Rc<Shard>, Request, Turn) -> HandlerFuture,
    /// Decodes a body as this API's request type and drops it (for the decoder tests).
    decode_only: fn(&Request) -> Result<(), DispatchError>,
}

impl Api {
    pub fn supports(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }

    /// Decodes `request`'s body as this API's request type, only to see whether it decodes
    /// (decoder tests and fuzzing reach every decoder through the table).
    pub fn decode_only(&self, request: &Request) -> Result<(), DispatchError> {
        (self.decode_only)(request)
    }
}

/// A row of [`APIS`]. The handler expression runs with `$shard: Rc<Shard>`, `$request:
/// Request` and `$turn: Turn` in scope; the turn lives until the handler is done.
macro_rules! api {
    ($key:ident $min:literal..=$max:literal, $ordering:ident, $body:ty,
     |$shard:ident, $request:ident, $turn:ident| $handle:expr) => {
        Api {
            key: ApiKey::$key,
            min_version: $min,
            max_version: $max,
            ordering: Ordering::$ordering,
            handler: |$shard, $request, $turn| {
                Box::pin(async move {
                    let $turn = $turn;
                    $handle
                })
            },
            decode_only: |request| exchange::decode::<$body>(request).map(drop),
        }
    };
}

/// Advertised as Kafka 4.x does. Produce starts at v0 because librdkafka before 2.11.1
/// disables compression unless it is listed (KAFKA-18659); v0-v2 (magic 0/1 message sets)
/// were removed in Kafka 4 and a request at those versions closes the connection.
#[rustfmt::skip]
pub static APIS: &[Api] = &[
    api!(Produce 0..=13, Sequential, ProduceRequest,
        |shard, request, turn| produce::handle(&shard, &request, turn).await),
    api!(Fetch 4..=18, Concurrent, FetchRequest,
        |shard, request, _turn| fetch::handle(&shard, &request).await),
    api!(ListOffsets 1..=10, Concurrent, ListOffsetsRequest,
        |shard, request, _turn| list_offsets::handle(&shard, &request).await),
    api!(OffsetForLeaderEpoch 2..=4, Concurrent, OffsetForLeaderEpochRequest,
        |shard, request, _turn| offset_for_leader_epoch::handle(&shard, &request).await),
    api!(Metadata 0..=13, Concurrent, MetadataRequest,
        |shard, request, _turn| metadata::handle(&shard, &request).await),
    api!(ApiVersions 0..=4, Concurrent, ApiVersionsRequest,
        |_shard, request, _turn| answer_api_versions(&request)),
    api!(CreateTopics 2..=7, Sequential, CreateTopicsRequest,
        |shard, request, _turn| create_topics::handle(&shard, &request).await),
    api!(DeleteTopics 1..=6, Sequential, DeleteTopicsRequest,
        |shard, request, _turn| delete_topics::handle(&shard, &request).await),
    api!(DescribeConfigs 1..=4, Concurrent, DescribeConfigsRequest,
        |shard, request, _turn| describe_configs::handle(&shard, &request)),
    api!(AlterConfigs 0..=2, Sequential, AlterConfigsRequest,
        |shard, request, _turn| alter_configs::handle(&shard, &request).await),
    api!(IncrementalAlterConfigs 0..=1, Sequential, IncrementalAlterConfigsRequest,
        |shard, request, _turn| incremental_alter_configs::handle(&shard, &request).await),
    api!(CreatePartitions 0..=3, Sequential, CreatePartitionsRequest,
        |shard, request, _turn| create_partitions::handle(&shard, &request).await),
    api!(AlterPartitionReassignments 0..=1, Sequential, AlterPartitionReassignmentsRequest,
        |shard, request, _turn| alter_partition_reassignments::handle(&shard, &request).await),
    api!(ListPartitionReassignments 0..=0, Concurrent, ListPartitionReassignmentsRequest,
        |shard, request, _turn| list_partition_reassignments::handle(&shard, &request)),
    api!(ElectLeaders 0..=2, Sequential, ElectLeadersRequest,
        |shard, request, _turn| elect_leaders::handle(&shard, &request).await),
    api!(DescribeLogDirs 1..=4, Concurrent, DescribeLogDirsRequest,
        |shard, request, _turn| describe_log_dirs::handle(&shard, &request).await),
    api!(DescribeCluster 0..=2, Concurrent, DescribeClusterRequest,
        |shard, request, _turn| describe_cluster::handle(&shard, &request)),
    api!(InitProducerId 0..=5, Concurrent, InitProducerIdRequest,
        |shard, request, _turn| init_producer_id::handle(&shard, &request).await),
    api!(FindCoordinator 0..=6, Concurrent, FindCoordinatorRequest,
        |shard, request, _turn| find_coordinator::handle(&shard, &request)),
    api!(JoinGroup 0..=9, Sequential, JoinGroupRequest,
        |shard, request, _turn| join_group::handle(&shard, &request).await),
    api!(SyncGroup 0..=5, Sequential, SyncGroupRequest,
        |shard, request, _turn| sync_group::handle(&shard, &request).await),
    api!(Heartbeat 0..=4, Concurrent, HeartbeatRequest,
        |shard, request, _turn| heartbeat::handle(&shard, &request).await),
    api!(LeaveGroup 0..=5, Sequential, LeaveGroupRequest,
        |shard, request, _turn| leave_group::handle(&shard, &request).await),
    api!(OffsetCommit 2..=9, Sequential, OffsetCommitRequest,
        |shard, request, _turn| offset_commit::handle(&shard, &request).await),
    api!(OffsetFetch 1..=9, Concurrent, OffsetFetchRequest,
        |shard, request, _turn| offset_fetch::handle(&shard, &request).await),
    api!(OffsetDelete 0..=0, Sequential, OffsetDeleteRequest,
        |shard, request, _turn| offset_delete::handle(&shard, &request).await),
    api!(DescribeGroups 0..=6, Concurrent, DescribeGroupsRequest,
        |shard, request, _turn| describe_groups::handle(&shard, &request).await),
    api!(ListGroups 0..=5, Concurrent, ListGroupsRequest,
        |shard, request, _turn| list_groups::handle(&shard, &request).await),
    api!(DeleteGroups 0..=2, Sequential, DeleteGroupsRequest,
        |shard, request, _turn| delete_groups::handle(&shard, &request).await),
    api!(SaslHandshake 0..=1, Sequential, SaslHandshakeRequest,
        |_shard, request, _turn| sasl_handshake::handle(&request)),
    api!(SaslAuthenticate 0..=2, Sequential, SaslAuthenticateRequest,
        |_shard, request, _turn| sasl_authenticate::handle(&request)),
    api!(DescribeUserScramCredentials 0..=0, Concurrent, DescribeUserScramCredentialsRequest,
        |shard, request, _turn| describe_user_scram_credentials::handle(&shard, &request)),
    api!(AlterUserScramCredentials 0..=0, Sequential, AlterUserScramCredentialsRequest,
        |shard, request, _turn| alter_user_scram_credentials::handle(&shard, &request).await),
    api!(DescribeAcls 1..=3, Concurrent, DescribeAclsRequest,
        |shard, request, _turn| describe_acls::handle(&shard, &request)),
    api!(CreateAcls 1..=3, Sequential, CreateAclsRequest,
        |shard, request, _turn| create_acls::handle(&shard, &request).await),
    api!(DeleteAcls 1..=3, Sequential, DeleteAclsRequest,
        |shard, request, _turn| delete_acls::handle(&shard, &request).await),
    api!(DescribeClientQuotas 0..=1, Concurrent, DescribeClientQuotasRequest,
        |shard, request, _turn| describe_client_quotas::handle(&shard, &request)),
    api!(AlterClientQuotas 0..=1, Sequential, AlterClientQuotasRequest,
        |shard, request, _turn| alter_client_quotas::handle(&shard, &request).await),
];

pub fn find(key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|api| api.key == key)
}

/// Every API's version range, as ApiVersions advertises them.
pub fn advertised() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|api| {
            let mut version = ApiVersion::default();
            version.api_key = api.key as i16;
            version.min_version = api.min_version;
            version.max_version = api.max_version;
            version
        })
        .collect()
}

/// ApiVersions at any version: ours at a version we have, and in v0 with
/// UNSUPPORTED_VERSION and our ranges at a newer one (KIP-511), so the client retries with
/// one we have. Before and after a SASL login alike (`authentication`).
pub fn answer_api_versions(request: &Request) -> HandlerResult {
    let supported = find(ApiKey::ApiVersions).is_some_and(|api| api.supports(request.api_version));
    if supported {
        api_versions::handle(request, &advertised())
    } else {
        api_versions::unsupported_version(request, &advertised())
    }
}

/// Runs one request. `turn` orders it after the connection's earlier requests (see
/// [`Ordering`]).
pub async fn dispatch(shard: Rc<Shard>, request: Request, mut turn: Turn) -> HandlerResult {
    turn.wait().await;
    let Some(api) = find(request.api_key) else {
        return Err(DispatchError::UnsupportedApi(request.api_key));
    };
    let version = request.api_version;
    if !api.supports(version) {
        if request.api_key == ApiKey::ApiVersions {
            return answer_api_versions(&request);
        }
        return Err(DispatchError::UnsupportedVersion {
            api_key: request.api_key,
            version,
        });
    }
    if api.ordering == Ordering::Concurrent {
        turn.release();
    }
    let measures = measure::of(api.key);
    measures.requests.increment();
    let started = time::now();
    // A client under a request-time quota (KIP-124) is charged the time its handler runs
    // here: two clock reads per poll, only for such clients.
    let answer = match quota::RequestTime::of(&shard, &request) {
        None => (api.handler)(shard, request, turn).await,
        Some(quota) => {
            let (answer, busy) = measure::Busy::new((api.handler)(shard, request, turn)).await;
            quota.charge(busy);
            answer
        }
    };
    measures.record_duration(time::now() - started);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::{Rng, SeedableRng};

    fn request(api_key: ApiKey, api_version: i16, body: &[u8]) -> Request {
        Request {
            api_key,
            api_version,
            correlation_id: 1,
            client_id: None,
            client_host: String::new(),
            principal: std::rc::Rc::from("User:ANONYMOUS"),
            mute: std::rc::Rc::default(),
            throttle: std::cell::Cell::default(),
            listener: 0,
            body: Bytes::copy_from_slice(body),
        }
    }

    /// A count of 2^31-1 followed by nothing: without the vendored patch the decoder
    /// reserves room for 2^31-1 elements up front and the process aborts.
    #[test]
    fn absurd_array_counts_fail_without_allocating() {
        let count = i32::MAX.to_be_bytes();
        for api in APIS {
            let version = api.min_version.max(0);
            let _ = api.decode_only(&request(api.key, version, &count));
        }
        let decode = |key, version, body: &[u8]| {
            find(key).map(|api| api.decode_only(&request(key, version, body)))
        };
        assert!(matches!(decode(ApiKey::Metadata, 1, &count), Some(Err(_))));
        assert!(matches!(
            decode(ApiKey::CreateTopics, 2, &count),
            Some(Err(_))
        ));
        // Flexible versions use unsigned varints: 0xffffffff0f is 2^32-1.
        let compact = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decode(ApiKey::Metadata, 12, &compact),
            Some(Err(_))
        ));
    }

    /// Random bodies through every decoder in the table, at every advertised version.
    #[test]
    fn random_bodies_never_panic_a_decoder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..3000 {
            let length = rng.gen_range(0..300);
            let body: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
            for api in APIS {
                for version in api.min_version.max(0)..=api.max_version {
                    let _ = api.decode_only(&request(api.key, version, &body));
                }
            }
        }
    }

    #[test]
    fn every_api_is_listed_once_and_within_the_codec_ranges() {
        for (index, api) in APIS.iter().enumerate() {
            assert!(
                APIS[..index].iter().all(|earlier| earlier.key != api.key),
                "{:?} is listed twice",
                api.key
            );
            assert!(api.min_version <= api.max_version, "{:?}", api.key);
            let codec = api.key.valid_versions();
            assert!(api.max_version <= codec.max, "{:?}", api.key);
            // Produce advertises from v0 as Kafka 4 does (see APIS); all others within range.
            if api.key != ApiKey::Produce {
                assert!(api.min_version >= codec.min, "{:?}", api.key);
            }
        }
    }

    /// Requests that change state keep their connection's order; reads do not wait for
    /// each other. A change of this list is a change of behaviour clients can see.
    #[test]
    fn state_changes_are_sequential_and_reads_concurrent() {
        let sequential: Vec<ApiKey> = APIS
            .iter()
            .filter(|api| api.ordering == Ordering::Sequential)
            .map(|api| api.key)
            .collect();
        assert_eq!(
            sequential,
            [
                ApiKey::Produce,
                ApiKey::CreateTopics,
                ApiKey::DeleteTopics,
                ApiKey::AlterConfigs,
                ApiKey::IncrementalAlterConfigs,
                ApiKey::CreatePartitions,
                ApiKey::AlterPartitionReassignments,
                ApiKey::ElectLeaders,
                ApiKey::JoinGroup,
                ApiKey::SyncGroup,
                ApiKey::LeaveGroup,
                ApiKey::OffsetCommit,
                ApiKey::OffsetDelete,
                ApiKey::DeleteGroups,
                ApiKey::SaslHandshake,
                ApiKey::SaslAuthenticate,
                ApiKey::AlterUserScramCredentials,
                ApiKey::CreateAcls,
                ApiKey::DeleteAcls,
                ApiKey::AlterClientQuotas,
            ]
        );
    }
}
