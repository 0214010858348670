//! Metadata (key 3): this broker, and the topics asked for with their partitions and ids.
//! Unknown topics are created on the fly when both the broker and the request allow it.
//! With an authorizer, only topics the principal may DESCRIBE are shown (one asked for by
//! name answers TOPIC_AUTHORIZATION_FAILED), and only those it may CREATE are created.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::str_bytes;
use crate::cluster::metadata::{validate_topic_name, ClusterMetadata, Topic};
use crate::protocol::frame::Request;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

enum Wanted {
    All,
    Some(Vec<(Option<String>, Uuid)>),
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: MetadataRequest = exchange::decode(request)?;
    let version = request.api_version;
    let wanted = match body.topics {
        None => Wanted::All,
        // v0 has no null: an empty list means every topic.
        Some(topics) if topics.is_empty() && version == 0 => Wanted::All,
        Some(topics) => Wanted::Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let auto_create =
        shard.config.auto_create_topics && (version < 4 || body.allow_auto_topic_creation);
    let access = shard.access(request);
    // Kafka's rule: a topic is created for a principal that may describe it and create it
    // (CREATE on the cluster or on the topic).
    let may_create = |name: &str| {
        access.may_on_topic(Operation::Describe, name)
            && (access.may_on_cluster(Operation::Create)
                || access.may_on_topic(Operation::Create, name))
    };
    if let (Wanted::Some(topics), true) = (&wanted, auto_create) {
        let names: Vec<String> = topics
            .iter()
            .filter_map(|(name, _)| name.clone())
            .filter(|name| may_create(name))
            .collect();
        crate::shard::topics::ensure_topics(shard, names).await;
    }
    let metadata = shard.metadata();
    let topic_operations = if version >= 8 && body.include_topic_authorized_operations {
        Some(&access)
    } else {
        None
    };
    let describe = |metadata: &ClusterMetadata, topic: &Topic, version: i16| {
        let mut described = describe(metadata, topic, version);
        if let Some(access) = topic_operations {
            described.topic_authorized_operations =
                access.operations_on(ResourceType::Topic, &topic.name);
        }
        described
    };
    let denied = |name: Option<String>, id: Uuid| {
        missing(name, id, ResponseError::TopicAuthorizationFailed, version)
    };
    let mut response = MetadataResponse::default();
    let config = &shard.config;
    response.brokers = metadata
        .live_brokers()
        .filter_map(|info| {
            // Clients reach each broker through the listener they came in on.
            let (host, port) = info.endpoint(shard.listener_name(request))?;
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(info.id);
            broker.host = str_bytes(host);
            broker.port = i32::from(port);
            Some(broker)
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&metadata.cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(config.node_id);
    }
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations = if body.include_cluster_authorized_operations {
            access.operations_on(ResourceType::Cluster, CLUSTER_NAME)
        } else {
            OPERATIONS_OMITTED
        };
    }
    let may_describe = |name: &str| access.may_on_topic(Operation::Describe, name);
    response.topics = match wanted {
        // Every topic the principal may describe; the others are not mentioned.
        Wanted::All => metadata
            .topics()
            .values()
            .filter(|topic| may_describe(&topic.name))
            .map(|topic| describe(&metadata, topic, version))
            .collect(),
        Wanted::Some(topics) => topics
            .into_iter()
            .map(|(name, id)| match (&name, id.is_nil()) {
                (Some(name), _) if !may_describe(name) => denied(Some(name.clone()), id),
                (Some(name), _) => match metadata.topic(name) {
                    Some(topic) => describe(&metadata, topic, version),
                    None if auto_create && !may_create(name) => {
                        denied(Some(name.clone()), Uuid::nil())
                    }
                    None => missing(Some(name.clone()), Uuid::nil(), name_error(name), version),
                },
                (None, false) => match metadata.topic_by_id(&id) {
                    Some(topic) if !may_describe(&topic.name) => denied(None, id),
                    Some(topic) => describe(&metadata, topic, version),
                    None => missing(None, id, ResponseError::UnknownTopicId, version),
                },
                (None, true) => missing(None, id, ResponseError::InvalidRequest, version),
            })
            .collect(),
    };
    exchange::respond(request, &response)
}

fn name_error(name: &str) -> ResponseError {
    if validate_topic_name(name).is_err() {
        ResponseError::InvalidTopicException
    } else {
        ResponseError::UnknownTopicOrPartition
    }
}

fn missing(
    name: Option<String>,
    id: Uuid,
    error: ResponseError,
    version: i16,
) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.error_code = error.code();
    topic.name = name.map(|n| TopicName(str_bytes(&n)));
    if version >= 10 {
        topic.topic_id = id;
    }
    if version >= 8 {
        topic.topic_authorized_operations = OPERATIONS_OMITTED;
    }
    topic
}

fn describe(metadata: &ClusterMetadata, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let mut described = MetadataResponseTopic::default();
    described.name = Some(TopicName(str_bytes(&topic.name)));
    described.is_internal = crate::cluster::metadata::is_internal_topic(&topic.name);
    if version >= 10 {
        described.topic_id = topic.id;
    }
    if version >= 8 {
        described.topic_authorized_operations = OPERATIONS_OMITTED;
    }
    described.partitions = (0..topic.partitions)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            let replicas = topic.replicas_of(index);
            let live = |id: &&i32| metadata.is_live(**id);
            let state = topic.state_of(index);
            match metadata.leader_of(topic, index) {
                Some(leader) => partition.leader_id = BrokerId(leader),
                None => {
                    partition.leader_id = BrokerId(-1);
                    partition.error_code = ResponseError::LeaderNotAvailable.code();
                }
            }
            if version >= 7 {
                partition.leader_epoch = state.map_or(0, |s| s.leader_epoch);
            }
            partition.replica_nodes = replicas.iter().copied().map(BrokerId).collect();
            partition.isr_nodes = state
                .map(|s| s.isr.iter().copied().map(BrokerId).collect())
                .unwrap_or_default();
            if version >= 5 {
                partition.offline_replicas = replicas
                    .iter()
                    .filter(|id| !live(id))
                    .copied()
                    .map(BrokerId)
                    .collect();
            }
            partition
        })
        .collect();
    described
}
