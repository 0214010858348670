//! Limits at the limit: each broker-wide bound refuses the one request past it with the
//! error a Kafka client expects, and keeps serving what is within it. (Other limits have
//! their tests beside their features: fetch bytes in broker_fetch_limits.rs, open files and
//! partitions in broker_open_files.rs, frames, connections and decompression in
//! broker_hostile.rs.)

mod common;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use common::{create_topic, produce_one, Broker, Raw};

const POLICY_VIOLATION: i16 = 44;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const MEMBER_ID_REQUIRED: i16 = 79;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A standalone commit (no member, generation -1), as `kafka-consumer-groups
/// --reset-offsets` or a consumer with manual assignment makes.
fn commit(raw: &mut Raw, group: &str, topic: &str) -> i16 {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = 0;
    let mut topic_entry = OffsetCommitRequestTopic::default();
    topic_entry.name = TopicName(text(topic));
    topic_entry.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text(group));
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![topic_entry];
    let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request);
    response.topics[0].partitions[0].error_code
}

#[test]
fn groups_beyond_groups_max_are_refused_and_existing_ones_keep_working() {
    // Two shards: each keeps 2 of the 4 groups.
    let broker = Broker::start(&["--groups-max", "4"]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "t", 1).topics[0].error_code, 0);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for n in 0..40 {
        let group = format!("group-{n}");
        match commit(&mut raw, &group, "t") {
            0 => accepted.push(group),
            POLICY_VIOLATION => refused += 1,
            other => panic!("{group}: unexpected error {other}"),
        }
    }
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    assert_eq!(refused, 36);
    for group in &accepted {
        assert_eq!(
            commit(&mut raw, group, "t"),
            0,
            "{group} is within the limit"
        );
    }
    let listed: ListGroupsResponse = raw.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(listed.groups.len(), 4);
}

#[test]
fn joins_beyond_group_max_size_are_refused() {
    let broker = Broker::start(&["--group-max-size", "2"]);
    let mut raw = Raw::connect(&broker.address);
    let join = |raw: &mut Raw| -> (i16, String) {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = text("range");
        protocol.metadata = bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(text("small"));
        request.session_timeout_ms = 10_000;
        request.rebalance_timeout_ms = 10_000;
        request.protocol_type = text("consumer");
        request.protocols = vec![protocol];
        // v4+: a new member first gets its id with MEMBER_ID_REQUIRED, without waiting.
        let response: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 5, &request);
        (response.error_code, response.member_id.to_string())
    };
    let (first, first_id) = join(&mut raw);
    let (second, _) = join(&mut raw);
    assert_eq!((first, second), (MEMBER_ID_REQUIRED, MEMBER_ID_REQUIRED));
    assert!(!first_id.is_empty());
    assert_eq!(join(&mut raw).0, GROUP_MAX_SIZE_REACHED);
}

#[test]
fn group_limits_are_validated() {
    for (flag, value) in [("--groups-max", "0"), ("--group-max-size", "0")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["serve", "--listen", "127.0.0.1:0", flag, value])
            .output()
            .expect("run petrel");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag.trim_start_matches('-')), "{stderr}");
    }
}

#[test]
fn topics_and_batches_beyond_their_limits_are_refused() {
    let broker = Broker::start(&["--message-max-bytes", "2000"]);
    let mut raw = Raw::connect(&broker.address);
    let mut topic = create_topics_request::CreatableTopic::default();
    topic.name = TopicName(text("huge"));
    topic.num_partitions = 100_001; // PARTITIONS_PER_TOPIC_MAX + 1
    topic.replication_factor = -1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 37, "INVALID_PARTITIONS");

    assert_eq!(create_topic(&mut raw, "t", 1).topics[0].error_code, 0);
    let produce = |raw: &mut Raw, value_bytes: usize| -> i16 {
        let value = vec![b'v'; value_bytes];
        let batch = petrel::record_batch::build_batch(&[value.as_slice()], 0);
        produce_one(raw, "t", bytes::Bytes::from(batch)).0
    };
    assert_eq!(produce(&mut raw, 1_000), 0, "within message-max-bytes");
    assert_eq!(produce(&mut raw, 3_000), 10, "MESSAGE_TOO_LARGE");
}
