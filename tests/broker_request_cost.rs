//! Requests whose work must stay linear in their size: each names very many partitions,
//! topics or items, and must be answered, with the shard still serving others, well
//! within a watchdog that a quadratic handler would overrun by far. No timing is asserted
//! beyond the watchdog.

mod common;

use std::time::{Duration, Instant};

use common::{Broker, Raw};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// Generous: the linear handlers answer in about a second in a debug build; the quadratic
/// ones they replace took minutes at these sizes.
const WATCHDOG: Duration = Duration::from_secs(60);

fn connect(broker: &Broker) -> Raw {
    let raw = Raw::connect(&broker.address);
    raw.stream
        .set_read_timeout(Some(WATCHDOG))
        .expect("read timeout");
    raw
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Connections opened before the big request: with two shards, some almost surely share
/// its shard (SO_REUSEPORT spreads connections by address hash).
const OTHER_CONNECTIONS: usize = 6;

fn others(broker: &Broker) -> Vec<Raw> {
    (0..OTHER_CONNECTIONS).map(|_| connect(broker)).collect()
}

/// While a big request is being handled, small ones on the other connections (on every
/// shard) must be answered within the watchdog too.
fn shards_keep_serving(others: &mut [Raw], started: Instant) {
    for other in others {
        let response: ApiVersionsResponse =
            other.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0);
    }
    assert!(started.elapsed() < WATCHDOG, "a shard stalled");
}

#[test]
fn an_offset_commit_of_many_unknown_partitions_is_answered_in_linear_time() {
    const PARTITIONS: i32 = 300_000;
    let broker = Broker::start(&[]);
    let mut raw = connect(&broker);
    let mut others = others(&broker);
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("nowhere"));
    topic.partitions = (0..PARTITIONS)
        .map(|index| {
            let mut partition = OffsetCommitRequestPartition::default();
            partition.partition_index = index;
            partition.committed_offset = 1;
            partition
        })
        .collect();
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text("g"));
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![topic];
    let started = Instant::now();
    let id = raw.send(ApiKey::OffsetCommit, 8, &request);
    shards_keep_serving(&mut others, started);
    let response: OffsetCommitResponse = raw.receive(ApiKey::OffsetCommit, 8, id);
    let answered = &response.topics[0].partitions;
    assert_eq!(answered.len(), PARTITIONS as usize);
    assert!(answered
        .iter()
        .enumerate()
        .all(|(index, p)| p.partition_index == index as i32 && p.error_code == 3));
}

#[test]
fn an_offset_delete_of_many_subscribed_topics_is_answered_in_linear_time() {
    const TOPICS: usize = 100_000;
    let broker = Broker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let mut raw = connect(&broker);
    let mut others = others(&broker);
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("t{i}")).collect();
    // One member (JoinGroup v3: no MEMBER_ID_REQUIRED step) subscribing to every topic.
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics.iter().map(|t| text(t.clone())).collect();
    let mut metadata = bytes::BytesMut::new();
    metadata.extend_from_slice(&0i16.to_be_bytes());
    subscription.encode(&mut metadata, 0).expect("encode");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = metadata.freeze();
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(text("g"));
    join.session_timeout_ms = 30_000;
    join.rebalance_timeout_ms = 30_000;
    join.protocol_type = text("consumer");
    join.protocols = vec![protocol];
    let joined: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 3, &join);
    assert_eq!(joined.error_code, 0);
    // Every subscribed topic, then one nobody subscribes to.
    let mut request = OffsetDeleteRequest::default();
    request.group_id = GroupId(text("g"));
    request.topics = topics
        .iter()
        .map(String::as_str)
        .chain(["unsubscribed"])
        .map(|name| {
            let mut topic = OffsetDeleteRequestTopic::default();
            topic.name = TopicName(text(name));
            let mut partition = OffsetDeleteRequestPartition::default();
            partition.partition_index = 0;
            topic.partitions = vec![partition];
            topic
        })
        .collect();
    let started = Instant::now();
    let id = raw.send(ApiKey::OffsetDelete, 0, &request);
    shards_keep_serving(&mut others, started);
    let response: OffsetDeleteResponse = raw.receive(ApiKey::OffsetDelete, 0, id);
    assert_eq!(response.error_code, 0);
    let codes: Vec<i16> = response
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes.len(), TOPICS + 1);
    assert!(
        codes[..TOPICS].iter().all(|&code| code == 86),
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    assert_eq!(codes[TOPICS], 0);
}

#[test]
fn an_incremental_append_of_many_list_items_is_answered_in_linear_time() {
    const ITEMS: usize = 300_000;
    let broker = Broker::start(&[]);
    let mut raw = connect(&broker);
    let mut others = others(&broker);
    let items: Vec<String> = (0..ITEMS).map(|i| format!("i{i}")).collect();
    let mut config = AlterableConfig::default();
    config.name = text("cleanup.policy");
    config.config_operation = 2; // APPEND
    config.value = Some(text(items.join(",")));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2; // TOPIC
    resource.resource_name = text("any");
    resource.configs = vec![config];
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let started = Instant::now();
    let id = raw.send(ApiKey::IncrementalAlterConfigs, 1, &request);
    shards_keep_serving(&mut others, started);
    let response: IncrementalAlterConfigsResponse =
        raw.receive(ApiKey::IncrementalAlterConfigs, 1, id);
    // Not a valid cleanup.policy (nor an existing topic): refused, but answered.
    assert_ne!(response.responses[0].error_code, 0);
}
