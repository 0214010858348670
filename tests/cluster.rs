//! Clusters of real `petrel` processes (`tests/common/cluster.rs`): the metadata quorum,
//! partitions spread over the brokers, and nodes that die and come back.
//!
//! Partitions are not replicated yet (replication factor 1): a dead broker's partitions
//! are offline until it returns, and the checks here are that the cluster's metadata
//! stays consistent and available through any single node's death (the quorum's leader
//! included), and that nothing a broker acknowledged is lost when it returns.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    coordinator_of, create_topic_with, eventually, format, isrs, metadata, petrel, Cluster,
};
use common::Raw;
use kafka_protocol::messages::ApiKey;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const RECORDS: usize = 600;

/// Live broker ids, and per topic each partition's leader, as `address` sees them.
fn view(address: &str) -> (BTreeSet<i32>, BTreeMap<String, Vec<i32>>) {
    let response = metadata(address);
    let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
    let topics = response
        .topics
        .iter()
        .map(|topic| {
            let mut leaders: Vec<(i32, i32)> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            leaders.sort_unstable();
            (
                topic
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                leaders.into_iter().map(|(_, leader)| leader).collect(),
            )
        })
        .collect();
    (brokers, topics)
}

/// CreateTopics through `address`, retried while the quorum elects a leader.
fn create_topic(address: &str, name: &str) {
    create_topic_with(address, name, PARTITIONS, -1, &[]);
}

fn produce(bootstrap: &str, topic: &str) {
    produce_range(bootstrap, topic, 0..RECORDS);
}

/// Every record of `topic`, per partition in offset order.
fn consume_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<String>> {
    consume_count(bootstrap, topic, PARTITIONS, RECORDS)
}

fn assert_all_records(by_partition: &BTreeMap<i32, Vec<String>>) {
    assert_exactly(by_partition, RECORDS);
}

#[test]
fn three_nodes_share_one_catalogue_and_survive_losing_any_node() {
    let mut cluster = Cluster::start(3, &[]);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    // Each node serves once it is live itself; the others follow within a heartbeat.
    for node in &cluster.nodes {
        eventually("every node sees every broker live", || {
            view(&node.address).0 == all
        });
    }
    create_topic(&cluster.nodes[0].address, "spread");
    // Every node sees the topic, its partitions led by all three brokers.
    for node in &cluster.nodes {
        eventually("every node sees the new topic", || {
            view(&node.address)
                .1
                .get("spread")
                .is_some_and(|l| l.len() == 6)
        });
        let leaders: BTreeSet<i32> = view(&node.address).1["spread"].iter().copied().collect();
        assert_eq!(leaders, all, "partitions spread over every broker");
    }
    produce(&cluster.bootstrap(), "spread");
    assert_all_records(&consume_all(&cluster.bootstrap(), "spread"));
    // Each node in turn dies (one of them leads the quorum) and comes back.
    for victim in 0..3 {
        let victim_id = cluster.nodes[victim].id;
        cluster.kill(victim);
        let survivor = cluster.nodes[(victim + 1) % 3].address.clone();
        eventually("the dead broker is fenced", || {
            let (brokers, topics) = view(&survivor);
            !brokers.contains(&victim_id) && !topics["spread"].contains(&victim_id)
        });
        // Metadata changes still commit with two of three nodes.
        let created = format!("after-losing-{victim_id}");
        create_topic(&survivor, &created);
        for node in cluster.nodes.iter().filter(|n| n.child.is_some()) {
            eventually("the survivors see the new topic", || {
                view(&node.address).1.contains_key(&created)
            });
        }
        cluster.restart(victim);
        let back = cluster.nodes[victim].address.clone();
        eventually("the restarted node catches up and is live again", || {
            let (brokers, topics) = view(&back);
            brokers == all && topics.contains_key(&created)
        });
        // Its partitions and everything they acknowledged are back.
        assert_all_records(&consume_all(&cluster.bootstrap(), "spread"));
    }
}

#[test]
fn bad_quorum_settings_and_foreign_data_dirs_are_refused_at_start() {
    let temp = tempfile::tempdir().expect("temp dir");
    let start = |dir: &std::path::Path, node: &str, voters: &str| {
        let output = petrel()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--node-id",
                node,
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(["--controller-quorum-voters", voters])
            .output()
            .expect("run petrel");
        assert!(!output.status.success(), "started: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let dir = temp.path().join("unformatted");
    let said = start(&dir, "1", "1@127.0.0.1:1");
    assert!(
        said.contains("not formatted") && said.contains("petrel format"),
        "{said}"
    );
    let said = start(&dir, "1", "1@127.0.0.1");
    assert!(said.contains("controller-quorum-voters"), "{said}");
    // A node the voters do not name is a broker only: it has no quorum listener.
    let output = petrel()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "4",
            "--data-dir",
        ])
        .arg(&dir)
        .args(["--controller-quorum-voters", "1@127.0.0.1:1,2@127.0.0.1:2"])
        .args(["--controller-listen", "127.0.0.1:3"])
        .output()
        .expect("run petrel");
    assert!(!output.status.success(), "started: {output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("only voters listen for the quorum"), "{said}");
    format(&dir, "one-cluster", 1);
    let said = start(&dir, "2", "1@127.0.0.1:1,2@127.0.0.1:2");
    assert!(
        said.contains("belongs to node 1 of cluster one-cluster"),
        "{said}"
    );
    // The same directory without quorum flags: a single broker must not take it.
    let output = petrel()
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run petrel");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("belongs to node 1"),
        "{said}"
    );
    // Formatting again for another cluster is refused.
    let output = petrel()
        .args([
            "format",
            "--cluster-id",
            "other",
            "--node-id",
            "1",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .expect("run petrel format");
    assert!(!output.status.success(), "{output:?}");
}

#[test]
fn a_node_formatted_for_another_cluster_cannot_join() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.kill(2);
    let stranger = tempfile::tempdir().expect("temp dir");
    format(stranger.path(), "another-cluster", 3);
    cluster.nodes[2].dir = stranger.path().to_path_buf();
    let output = cluster.command(2).output().expect("run petrel");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "joined: {said}");
    assert!(
        said.contains("cannot join the cluster") && said.contains("cluster another-cluster"),
        "{said}"
    );
    // The two others still form the cluster.
    create_topic(&cluster.nodes[0].address, "still-working");
}

/// Live broker ids as `address` sees them.
fn brokers(address: &str) -> BTreeSet<i32> {
    view(address).0
}

#[test]
fn a_paused_broker_is_fenced_until_it_resumes_and_topic_changes_reach_every_node() {
    let cluster = Cluster::start(3, &["--broker-session-timeout-ms", "3000"]);
    let watcher = cluster.nodes[0].address.clone();
    cluster.pause(1);
    eventually("the paused broker is fenced", || {
        brokers(&watcher) == [1, 3].into()
    });
    cluster.resume(1);
    eventually("the resumed broker is live again", || {
        brokers(&watcher) == [1, 2, 3].into()
    });
    // Topic changes through one node reach the others, and the brokers' logs follow.
    create_topic(&cluster.nodes[1].address, "changing");
    let third = cluster.nodes[2].address.clone();
    eventually("the topic is everywhere", || {
        view(&third).1.contains_key("changing")
    });
    let mut raw = Raw::connect(&cluster.nodes[2].address);
    let mut request = kafka_protocol::messages::DeleteTopicsRequest::default();
    request.topic_names = vec![common::topic_name("changing")];
    request.timeout_ms = 10_000;
    let response: kafka_protocol::messages::DeleteTopicsResponse =
        raw.call(ApiKey::DeleteTopics, 5, &request);
    assert_eq!(response.responses[0].error_code, 0);
    for node in &cluster.nodes {
        eventually("the topic is gone everywhere", || {
            !view(&node.address).1.contains_key("changing")
        });
        eventually("and so are its logs", || {
            !std::fs::read_dir(&node.dir)
                .expect("data dir")
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("changing-"))
        });
    }
}

#[test]
fn a_stopping_broker_is_fenced_at_once_not_after_its_session() {
    // A session far longer than `eventually` waits: only the controlled shutdown can
    // fence the stopped broker in time.
    let mut cluster = Cluster::start(3, &["--broker-session-timeout-ms", "600000"]);
    let watcher = cluster.nodes[0].address.clone();
    for _ in 0..2 {
        cluster.stop(2);
        eventually("the stopped broker is fenced", || {
            brokers(&watcher) == [1, 2].into()
        });
        cluster.restart(2);
        eventually("the node is back", || brokers(&watcher) == [1, 2, 3].into());
    }
}

#[test]
fn five_nodes_keep_their_quorum_with_two_down() {
    let mut cluster = Cluster::start(5, &[]);
    cluster.kill(0);
    cluster.kill(1);
    let survivor = cluster.nodes[2].address.clone();
    create_topic(&survivor, "with-three-of-five");
    for index in 2..5 {
        let address = cluster.nodes[index].address.clone();
        eventually("every survivor sees the topic", || {
            view(&address).1.contains_key("with-three-of-five")
        });
    }
    cluster.restart(0);
    cluster.restart(1);
    let all: BTreeSet<i32> = (1..=5).collect();
    for index in 0..2 {
        let address = cluster.nodes[index].address.clone();
        eventually("the restarted nodes catch up", || {
            let (brokers, topics) = view(&address);
            brokers == all && topics.contains_key("with-three-of-five")
        });
    }
}

/// Fetch v12 of partition `partition` from offset 0, naming `leader_epoch`: the
/// partition's error code and its records.
fn fetch(
    address: &str,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
) -> (i16, Option<bytes::Bytes>) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    let mut wanted = FetchPartition::default();
    wanted.partition = partition;
    wanted.fetch_offset = 0;
    wanted.partition_max_bytes = 1 << 20;
    wanted.current_leader_epoch = leader_epoch;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = common::topic_name(topic);
    fetch_topic.partitions = vec![wanted];
    let mut request = FetchRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.max_wait_ms = 0;
    request.max_bytes = 1 << 20;
    request.topics = vec![fetch_topic];
    let mut raw = Raw::connect(address);
    let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
    let answer = &response.responses[0].partitions[0];
    (answer.error_code, answer.records.clone())
}

/// The leader and leader epoch of `topic`'s partitions as `address` sees them.
fn leadership(address: &str, topic: &str) -> Vec<(i32, i32)> {
    metadata(address)
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .map(|t| {
            let mut partitions: Vec<_> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch))
                .collect();
            partitions.sort_unstable();
            partitions
                .into_iter()
                .map(|(_, leader, epoch)| (leader, epoch))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn leader_epochs_follow_leadership_and_stale_clients_are_fenced() {
    let mut cluster = Cluster::start(3, &[]);
    create_topic(&cluster.nodes[0].address, "epochs");
    let watcher = cluster.nodes[1].address.clone();
    eventually("the topic is known", || {
        leadership(&watcher, "epochs").len() == PARTITIONS as usize
    });
    let before = leadership(&watcher, "epochs");
    assert!(before.iter().all(|&(_, epoch)| epoch == 0), "{before:?}");
    // Node 1 dies: what it led goes offline with a new epoch, and back with another.
    cluster.kill(0);
    eventually("node 1's partitions are offline", || {
        leadership(&watcher, "epochs")
            .iter()
            .zip(&before)
            .all(|(&(leader, epoch), &(old, _))| old != 1 || (leader == -1 && epoch == 1))
    });
    cluster.restart(0);
    let node_one = cluster.nodes[0].address.clone();
    eventually("node 1 leads them again at epoch 2", || {
        leadership(&node_one, "epochs")
            .iter()
            .zip(&before)
            .all(|(&(leader, epoch), &(old, _))| old != 1 || (leader == 1 && epoch == 2))
    });
    let partition = before
        .iter()
        .position(|&(leader, _)| leader == 1)
        .expect("node 1 leads one") as i32;
    // A produce stamps the current epoch into the batch.
    let mut raw = Raw::connect(&node_one);
    let batch = bytes::Bytes::from(petrel::record_batch::build_batch(&[b"stamped"], 0));
    let produced = common::produce(&mut raw, "epochs", vec![(partition, batch)], -1);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let (code, records) = fetch(&node_one, "epochs", partition, 2);
    assert_eq!(code, 0);
    let records = records.expect("records");
    assert_eq!(
        &records[12..16],
        &2i32.to_be_bytes(),
        "partitionLeaderEpoch of the stored batch"
    );
    // KIP-320: an older epoch is fenced, a newer one unknown; other brokers do not lead it.
    assert_eq!(
        fetch(&node_one, "epochs", partition, 0).0,
        74,
        "FENCED_LEADER_EPOCH"
    );
    assert_eq!(
        fetch(&node_one, "epochs", partition, 3).0,
        75,
        "UNKNOWN_LEADER_EPOCH"
    );
    assert_eq!(
        fetch(&watcher, "epochs", partition, -1).0,
        6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    // OffsetForLeaderEpoch: where each epoch's writes end on the leader.
    assert_eq!(
        end_offset(&node_one, partition, 2),
        (0, 2, 1),
        "the latest: the log end"
    );
    assert_eq!(
        end_offset(&node_one, partition, 1),
        (0, 1, 0),
        "before any write of epoch 2"
    );
    assert_eq!(end_offset(&node_one, partition, 3), (0, -1, -1), "unknown");
    assert_eq!(
        end_offset(&watcher, partition, 2).0,
        6,
        "asked of another broker"
    );
    // KIP-951: a produce to another broker names the leader and where to reach it.
    let response = produce_v10(&watcher, "epochs", partition);
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 6);
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (1, 2)
    );
    let port: i32 = node_one.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        response
            .node_endpoints
            .iter()
            .any(|e| e.node_id.0 == 1 && e.port == port),
        "{:?}",
        response.node_endpoints
    );
}

/// Produce v10 (KIP-951 fields) of one small batch to `partition`, acks=1.
fn produce_v10(
    address: &str,
    topic: &str,
    partition: i32,
) -> kafka_protocol::messages::ProduceResponse {
    produce_raw(address, topic, partition, 1, b"x", 10_000)
}

/// Produce v10 of one record `value` to `partition`: the response.
fn produce_raw(
    address: &str,
    topic: &str,
    partition: i32,
    acks: i16,
    value: &[u8],
    timeout_ms: i32,
) -> kafka_protocol::messages::ProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(bytes::Bytes::from(petrel::record_batch::build_batch(
        &[value],
        0,
    )));
    let mut topic_data = TopicProduceData::default();
    topic_data.name = common::topic_name(topic);
    topic_data.partition_data = vec![data];
    let mut request = kafka_protocol::messages::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = timeout_ms;
    request.topic_data = vec![topic_data];
    let mut raw = Raw::connect(address);
    raw.call(ApiKey::Produce, 10, &request)
}

/// OffsetForLeaderEpoch v4 for `partition` of topic "epochs": (error, epoch, end offset).
fn end_offset(address: &str, partition: i32, leader_epoch: i32) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    let mut wanted = OffsetForLeaderPartition::default();
    wanted.partition = partition;
    wanted.current_leader_epoch = -1;
    wanted.leader_epoch = leader_epoch;
    let mut topic = OffsetForLeaderTopic::default();
    topic.topic = common::topic_name("epochs");
    topic.partitions = vec![wanted];
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    let mut raw = Raw::connect(address);
    let response: OffsetForLeaderEpochResponse =
        raw.call(ApiKey::OffsetForLeaderEpoch, 4, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.leader_epoch, answer.end_offset)
}

/// CreateTopics with a replication factor, retried while no controller answers.
fn create_replicated_topic(address: &str, name: &str, partitions: i32, factor: i16) {
    create_topic_with(address, name, partitions, factor, &[]);
}

fn produce_range(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for index in range {
        let key = format!("key-{index}");
        let value = format!("value-{index}");
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(error, _)| error)
            .expect("queue");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(producer.in_flight_count(), 0, "undelivered records");
}

/// Reads every partition of `topic` until `count` records arrived; values per partition.
fn consume_count(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < count {
        assert!(
            Instant::now() < deadline,
            "timed out after {received} of {count} records"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            by_partition
                .entry(message.partition())
                .or_default()
                .push(value);
            received += 1;
        }
    }
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "more records than produced"
    );
    by_partition
}

fn assert_exactly(by_partition: &BTreeMap<i32, Vec<String>>, count: usize) {
    let mut values: Vec<&String> = by_partition.values().flatten().collect();
    values.sort();
    values.dedup();
    assert_eq!(
        values.len(),
        count,
        "every acknowledged record exactly once"
    );
    for records in by_partition.values() {
        let indexes: Vec<usize> = records
            .iter()
            .map(|v| v.trim_start_matches("value-").parse().expect("index"))
            .collect();
        let mut sorted = indexes.clone();
        sorted.sort_unstable();
        assert_eq!(indexes, sorted, "a partition's records in produce order");
    }
}

#[test]
fn replicated_partitions_keep_every_acknowledged_record_through_leader_kills() {
    let mut cluster = Cluster::start(3, &[]);
    create_replicated_topic(&cluster.nodes[0].address, "replicated", 3, 3);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let watcher = cluster.nodes[0].address.clone();
    eventually("every partition has three in-sync replicas", || {
        let seen = isrs(&watcher, "replicated");
        seen.len() == 3 && seen.iter().all(|(leader, isr)| *leader > 0 && *isr == all)
    });
    produce_range(&cluster.bootstrap(), "replicated", 0..300);
    let mut produced = 300;
    for victim in 0..3 {
        cluster.kill(victim);
        let victim_id = cluster.nodes[victim].id;
        let survivor = cluster.nodes[(victim + 1) % 3].address.clone();
        eventually("the survivors lead every partition", || {
            isrs(&survivor, "replicated").iter().all(|(leader, isr)| {
                *leader > 0 && *leader != victim_id && !isr.contains(&victim_id)
            })
        });
        produce_range(&cluster.bootstrap(), "replicated", produced..produced + 300);
        produced += 300;
        assert_exactly(
            &consume_count(&cluster.bootstrap(), "replicated", 3, produced),
            produced,
        );
        cluster.restart(victim);
        eventually("the restarted broker is back in every ISR", || {
            isrs(&survivor, "replicated")
                .iter()
                .all(|(_, isr)| *isr == all)
        });
    }
    assert_exactly(
        &consume_count(&cluster.bootstrap(), "replicated", 3, produced),
        produced,
    );
}

#[test]
fn acks_all_below_min_insync_replicas_is_refused() {
    let mut cluster = Cluster::start(3, &[]);
    // One partition on two of the three brokers, both required in sync.
    create_topic_with(
        &cluster.nodes[0].address,
        "guarded",
        1,
        2,
        &[("min.insync.replicas", "2")],
    );
    let watcher = cluster.nodes[2].address.clone();
    eventually("two in-sync replicas", || {
        isrs(&watcher, "guarded")
            .first()
            .is_some_and(|(leader, isr)| *leader > 0 && isr.len() == 2)
    });
    let (leader, isr) = isrs(&watcher, "guarded")[0].clone();
    let leader_index = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("leader");
    let follower = *isr.iter().find(|&&id| id != leader).expect("follower");
    let follower_index = cluster
        .nodes
        .iter()
        .position(|n| n.id == follower)
        .expect("follower");
    let leader_address = cluster.nodes[leader_index].address.clone();
    let produce = |acks: i16| {
        let mut raw = Raw::connect(&leader_address);
        let batch = bytes::Bytes::from(petrel::record_batch::build_batch(&[b"guarded"], 0));
        common::produce(&mut raw, "guarded", vec![(0, batch)], acks).responses[0]
            .partition_responses[0]
            .error_code
    };
    assert_eq!(produce(-1), 0, "both replicas in sync");
    cluster.kill(follower_index);
    let leader_view = cluster.nodes[leader_index].address.clone();
    eventually("the follower left the ISR", || {
        isrs(&leader_view, "guarded")
            .first()
            .is_some_and(|(_, isr)| isr.len() == 1)
    });
    assert_eq!(produce(-1), 19, "NOT_ENOUGH_REPLICAS");
    assert_eq!(produce(1), 0, "acks=1 needs only the leader");
    cluster.restart(follower_index);
    eventually("the follower is back in sync", || {
        isrs(&leader_view, "guarded")
            .first()
            .is_some_and(|(_, isr)| isr.len() == 2)
    });
    assert_eq!(produce(-1), 0);
}

fn group_consumer(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Polls `consumer` until it has `count` more records (values), for up to 60 s.
fn poll_values(consumer: &BaseConsumer, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < count {
        assert!(
            Instant::now() < deadline,
            "timed out after {} of {count} records",
            values.len()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into());
        }
    }
    values
}

/// Commits the consumer's positions, retried (for up to 60 s) while its coordinator moves.
fn commit_positions(consumer: &BaseConsumer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "commit kept failing: {error}");
                consumer.poll(Duration::from_millis(200));
            }
        }
    }
}

/// The group's committed offset per partition, from its coordinator (0: none).
fn committed_offsets(consumer: &BaseConsumer) -> BTreeMap<i32, i64> {
    consumer
        .committed(Duration::from_secs(30))
        .expect("committed offsets from the coordinator")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(0).max(0)))
        .collect()
}

/// Committed offsets live in `__consumer_offsets` (RF 3): when the group's coordinator is
/// SIGKILLed, FindCoordinator names another broker, the group's consumer goes on
/// consuming and committing there, and a new member of the group starts exactly at the
/// committed offsets (nothing read twice, nothing skipped).
#[test]
fn consumer_groups_keep_their_offsets_when_their_coordinator_dies() {
    let mut cluster = Cluster::start(3, &["--offsets-topic-partitions", "6"]);
    let watcher = cluster.nodes[0].address.clone();
    create_replicated_topic(&watcher, "orders", 3, 3);
    produce_range(&cluster.bootstrap(), "orders", 0..600);
    let group = "billing";
    let first = group_consumer(&cluster.bootstrap(), group, "orders");
    let mut seen = poll_values(&first, 300);
    commit_positions(&first);
    let committed_before: BTreeMap<i32, i64> = committed_offsets(&first);
    assert!(committed_before.values().sum::<i64>() >= 300);
    let offsets = metadata(&watcher)
        .topics
        .into_iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.as_str() == "__consumer_offsets")
        })
        .expect("__consumer_offsets was created for the group");
    assert!(offsets.is_internal, "__consumer_offsets is internal");
    assert_eq!(offsets.partitions.len(), 6);
    assert!(offsets
        .partitions
        .iter()
        .all(|p| p.replica_nodes.len() == 3));

    let coordinator = coordinator_of(&watcher, group);
    assert!(coordinator > 0, "the group has a coordinator");
    let victim = cluster
        .nodes
        .iter()
        .position(|node| node.id == coordinator)
        .expect("coordinator is a node");
    cluster.kill(victim);
    let survivor = cluster.nodes[(victim + 1) % 3].address.clone();
    eventually("another broker coordinates the group", || {
        let now = coordinator_of(&survivor, group);
        now > 0 && now != coordinator
    });

    // Every offset committed before the kill is still there.
    let after_kill = committed_offsets(&first);
    for (partition, offset) in &committed_before {
        assert!(
            after_kill.get(partition).is_some_and(|now| now >= offset),
            "partition {partition}: committed {offset} before the kill, {after_kill:?} after"
        );
    }

    // The same member goes on through the failover. (Membership itself is not
    // replicated: the new coordinator makes it rejoin, and a rebalance may hand it
    // partitions again from their committed offsets, so it may read some records twice.)
    seen.extend(poll_values(&first, 300));
    commit_positions(&first);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        600,
        "every record read before the second commit"
    );
    let committed = committed_offsets(&first);
    drop(first);
    assert!(
        committed.values().sum::<i64>() > 300,
        "the second commit counted"
    );

    // A new member starts exactly at the committed offsets.
    produce_range(&cluster.bootstrap(), "orders", 600..610);
    let second = group_consumer(&cluster.bootstrap(), group, "orders");
    let mut expected = 0;
    let mut ends = BTreeMap::new();
    for partition in 0..3 {
        let (_, high) = second
            .fetch_watermarks("orders", partition, Duration::from_secs(30))
            .expect("watermarks");
        let from = committed.get(&partition).copied().unwrap_or(0);
        expected += high - from;
        ends.insert(partition, high);
    }
    let mut offsets = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (offsets.len() as i64) < expected {
        assert!(
            Instant::now() < deadline,
            "timed out after {} of {expected}",
            offsets.len()
        );
        // Errors (the dead broker's connection) are not records.
        if let Some(Ok(message)) = second.poll(Duration::from_millis(200)) {
            let from = committed.get(&message.partition()).copied().unwrap_or(0);
            assert!(
                message.offset() >= from,
                "partition {} read at {}, before its committed offset {from}",
                message.partition(),
                message.offset()
            );
            offsets.insert((message.partition(), message.offset()));
        }
    }
    assert_eq!(
        offsets.len() as i64,
        expected,
        "from the committed offsets to the end"
    );

    // Clients cannot write, delete or grow the internal topic.
    for node in cluster.nodes.iter().filter(|node| node.id != coordinator) {
        let produced = produce_v10(&node.address, "__consumer_offsets", 0);
        let code = produced.responses[0].partition_responses[0].error_code;
        assert_eq!(code, 17, "INVALID_TOPIC_EXCEPTION");
    }
    drop(second);
    cluster.restart(victim);
}

/// A follower that was away while retention moved the leader's log start past its end
/// starts its log over at the leader's start (it cannot fetch below it), catches up and
/// rejoins the ISR; then, as the only replica left, it serves exactly the leader's records.
#[test]
fn a_follower_below_the_leaders_log_start_starts_over_there() {
    // Five voters: the quorum survives when both other replicas are killed at the end.
    let mut cluster = Cluster::start(5, &["--log-retention-check-interval-ms", "200"]);
    let watcher = cluster.nodes[0].address.clone();
    create_topic_with(
        &watcher,
        "trimmed",
        1,
        3,
        &[("segment.bytes", "14336"), ("retention.bytes", "20000")],
    );
    eventually("three in-sync replicas", || {
        let seen = isrs(&watcher, "trimmed");
        seen.len() == 1 && seen[0].0 > 0 && seen[0].1.len() == 3
    });
    let (leader, all) = isrs(&watcher, "trimmed").remove(0);
    let index_of = |id: i32| cluster.nodes.iter().position(|node| node.id == id);
    let away = all
        .iter()
        .find(|&&id| id != leader)
        .and_then(|&id| index_of(id))
        .expect("a follower");
    let others: Vec<usize> = all
        .iter()
        .filter_map(|&id| index_of(id))
        .filter(|&index| index != away)
        .collect();
    cluster.kill(away);
    let watcher = cluster.nodes[others[0]].address.clone();
    // Small batches, so that segments roll and retention has sealed ones to delete.
    for start in (0..2000).step_by(100) {
        produce_range(&cluster.bootstrap(), "trimmed", start..start + 100);
    }
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .expect("consumer");
    eventually("retention moved the log start", || {
        reader
            .fetch_watermarks("trimmed", 0, Duration::from_secs(5))
            .is_ok_and(|(low, _)| low > 0)
    });
    cluster.restart(away);
    eventually("the follower is back in the ISR", || {
        isrs(&watcher, "trimmed")
            .first()
            .is_some_and(|(_, isr)| *isr == all)
    });
    // Only the returned follower is left: it leads, and holds the tail of the log.
    let (_, high) = reader
        .fetch_watermarks("trimmed", 0, Duration::from_secs(5))
        .expect("watermarks");
    for index in others {
        cluster.kill(index);
    }
    let returned = cluster.nodes[away].address.clone();
    let returned_id = cluster.nodes[away].id;
    eventually("the returned follower leads", || {
        isrs(&returned, "trimmed")
            .first()
            .is_some_and(|(leader, _)| *leader == returned_id)
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &returned)
        .set("group.id", "trimmed-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, end) = consumer
        .fetch_watermarks("trimmed", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(end, high, "the follower holds the whole tail");
    assert!(low > 0, "its log starts at the leader's start");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("trimmed", 0, Offset::Offset(low))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut next = low;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < end {
        assert!(Instant::now() < deadline, "read up to {next} of {end}");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            assert_eq!(message.offset(), next, "offsets in order, no gap");
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
            assert_eq!(
                value,
                format!("value-{next}"),
                "the leader's record at {next}"
            );
            next += 1;
        }
    }
}

/// AlterPartitionReassignments v1 of `partition` of `topic` to `target` (or cancel):
/// the partition's error code.
fn reassign(address: &str, topic: &str, partition: i32, target: Option<Vec<i32>>) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    let mut wanted = ReassignablePartition::default();
    wanted.partition_index = partition;
    wanted.replicas = target.map(|ids| ids.into_iter().map(BrokerId).collect());
    let mut asked = ReassignableTopic::default();
    asked.name = common::topic_name(topic);
    asked.partitions = vec![wanted];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 10_000;
    request.allow_replication_factor_change = true;
    request.topics = vec![asked];
    let response: AlterPartitionReassignmentsResponse =
        Raw::connect(address).call(ApiKey::AlterPartitionReassignments, 1, &request);
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].error_code
}

/// (topic, partition) -> (replicas, adding, removing).
type Moving = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>, Vec<i32>)>;

/// ListPartitionReassignments.
fn reassignments(address: &str) -> Moving {
    use kafka_protocol::messages::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let request = ListPartitionReassignmentsRequest::default();
    let response: ListPartitionReassignmentsResponse =
        Raw::connect(address).call(ApiKey::ListPartitionReassignments, 0, &request);
    let ids = |list: &[kafka_protocol::messages::BrokerId]| list.iter().map(|b| b.0).collect();
    response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                (
                    (topic.name.to_string(), p.partition_index),
                    (
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ),
                )
            })
        })
        .collect()
}

/// DescribeLogDirs v4 of the broker at `address`: (partition, size) of `topic` it holds.
fn log_dirs(address: &str, topic: &str) -> Vec<(i32, i64)> {
    use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
    let mut request = DescribeLogDirsRequest::default();
    request.topics = None; // everything
    let response: DescribeLogDirsResponse =
        Raw::connect(address).call(ApiKey::DescribeLogDirs, 4, &request);
    assert_eq!(response.results.len(), 1, "one log dir");
    response.results[0]
        .topics
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.partition_size))
        })
        .collect()
}

/// ElectLeaders v2 (preferred) for `partition` of `topic`: its error code.
fn elect_preferred(address: &str, topic: &str, partition: i32) -> i16 {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
    let mut asked = TopicPartitions::default();
    asked.topic = common::topic_name(topic);
    asked.partitions = vec![partition];
    let mut request = ElectLeadersRequest::default();
    request.election_type = 0;
    request.timeout_ms = 10_000;
    request.topic_partitions = Some(vec![asked]);
    let response: ElectLeadersResponse =
        Raw::connect(address).call(ApiKey::ElectLeaders, 2, &request);
    assert_eq!(response.error_code, 0);
    response.replica_election_results[0].partition_result[0].error_code
}

/// Per partition of `topic`: its replicas, as `address` sees them.
fn replicas(address: &str, topic: &str) -> Vec<Vec<i32>> {
    let response = metadata(address);
    let described = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .expect("topic");
    let mut partitions: Vec<_> = described
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.replica_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    partitions.sort_unstable_by_key(|p| p.0);
    partitions.into_iter().map(|(_, r)| r).collect()
}

/// Four brokers; each partition of an RF 3 topic moves off its leader onto the broker it
/// lacked while an idempotent acks=all producer keeps writing: the new replica copies the
/// log, the move completes once it is in sync (the leader hands over), the old replica's
/// log is deleted, and every acknowledged record is read back exactly once. A preferred
/// leader election then gives each partition back to its first replica.
#[test]
fn reassignments_move_replicas_while_producers_keep_writing() {
    let mut cluster = Cluster::start(4, &[]);
    let watcher = cluster.nodes[0].address.clone();
    create_topic_with(&watcher, "moving", 2, 3, &[("min.insync.replicas", "2")]);
    eventually("every partition fully replicated", || {
        let seen = isrs(&watcher, "moving");
        seen.len() == 2
            && seen
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
    });
    produce_range(&cluster.bootstrap(), "moving", 0..500);
    let before = replicas(&watcher, "moving");
    let leaders: Vec<i32> = isrs(&watcher, "moving").iter().map(|(l, _)| *l).collect();
    let targets: Vec<Vec<i32>> = before
        .iter()
        .zip(&leaders)
        .map(|(replicas, leader)| {
            let missing = (1..=4)
                .find(|id| !replicas.contains(id))
                .expect("a 4th broker");
            let mut target: Vec<i32> = replicas.iter().copied().filter(|id| id != leader).collect();
            target.insert(0, missing);
            target
        })
        .collect();

    let bootstrap = cluster.bootstrap();
    let writer = std::thread::spawn(move || produce_range(&bootstrap, "moving", 500..1500));
    assert_eq!(
        reassign(&watcher, "moving", 5, Some(vec![1, 2, 3])),
        3,
        "no partition 5"
    );
    assert_eq!(
        reassign(&watcher, "moving", 0, Some(vec![1, 1, 2])),
        39,
        "a broker twice"
    );
    assert_eq!(
        reassign(&watcher, "moving", 0, None),
        85,
        "nothing to cancel"
    );
    for (partition, target) in targets.iter().enumerate() {
        assert_eq!(
            reassign(&watcher, "moving", partition as i32, Some(target.clone())),
            0
        );
    }
    eventually("every reassignment completed", || {
        reassignments(&watcher).is_empty()
            && replicas(&watcher, "moving") == targets
            && isrs(&watcher, "moving")
                .iter()
                .zip(&targets)
                .all(|((leader, isr), target)| {
                    target.contains(leader) && *isr == target.iter().copied().collect()
                })
    });
    writer.join().expect("writer");
    for (partition, (old, leader)) in before.iter().zip(&leaders).enumerate() {
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.id == *leader)
            .expect("node");
        let dir = node.dir.join(format!("moving-{partition}"));
        eventually("the moved-off replica's log is deleted", || !dir.exists());
        assert!(old.contains(leader));
    }
    // DescribeLogDirs: each broker lists exactly the replicas it now holds, with data.
    for node in &cluster.nodes {
        let held = log_dirs(&node.address, "moving");
        let expected: Vec<i32> = (0..2)
            .filter(|&p| targets[p as usize].contains(&node.id))
            .collect();
        assert_eq!(
            held.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            expected,
            "broker {}",
            node.id
        );
        assert!(held.iter().all(|(_, size)| *size > 0), "{held:?}");
    }
    assert_exactly(
        &consume_count(&cluster.bootstrap(), "moving", 2, 1500),
        1500,
    );

    // Preferred leaders: move leadership away from partition 0's first replica, then back.
    let preferred = targets[0][0];
    let index = cluster
        .nodes
        .iter()
        .position(|n| n.id == preferred)
        .expect("node");
    if isrs(&watcher, "moving")[0].0 == preferred {
        cluster.kill(index);
        let survivor = cluster.nodes[(index + 1) % 4].address.clone();
        eventually("another replica leads", || {
            let leader = isrs(&survivor, "moving")[0].0;
            leader > 0 && leader != preferred
        });
        cluster.restart(index);
    }
    let watcher = cluster.nodes[(index + 1) % 4].address.clone();
    eventually("the preferred replica is in sync again", || {
        isrs(&watcher, "moving")[0].1.contains(&preferred)
    });
    // Retried: under load the preferred broker may be fenced again for a moment
    // (PREFERRED_LEADER_NOT_AVAILABLE until its next heartbeat).
    eventually("a preferred election succeeds", || {
        matches!(elect_preferred(&watcher, "moving", 0), 0 | 84)
    });
    eventually("the preferred replica leads", || {
        isrs(&watcher, "moving")[0].0 == preferred
    });
    assert_eq!(
        elect_preferred(&watcher, "moving", 0),
        84,
        "ELECTION_NOT_NEEDED"
    );
    assert_exactly(
        &consume_count(&cluster.bootstrap(), "moving", 2, 1500),
        1500,
    );
}

/// A fourth node started with the same voters, which do not name it, joins as a broker
/// only: it follows the catalogue, registers, serves (a CreateTopics through it is
/// forwarded and visible there at once), takes replicas by reassignment, catches up and
/// leads after a preferred election, and comes back after a SIGKILL.
#[test]
fn a_broker_outside_the_quorum_joins_and_takes_over_replicas() {
    let mut cluster = Cluster::start(3, &[]);
    let watcher = cluster.nodes[0].address.clone();
    create_topic_with(&watcher, "grow", 3, 3, &[]);
    eventually("every partition fully replicated", || {
        let seen = isrs(&watcher, "grow");
        seen.len() == 3
            && seen
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
    });
    produce_range(&cluster.bootstrap(), "grow", 0..600);

    let fourth = cluster.add_broker();
    let (id, address) = (
        cluster.nodes[fourth].id,
        cluster.nodes[fourth].address.clone(),
    );
    assert_eq!(id, 4);
    eventually("every node lists the new broker", || {
        cluster
            .nodes
            .iter()
            .all(|node| view(&node.address).0 == BTreeSet::from([1, 2, 3, 4]))
    });
    assert!(
        view(&address).1.contains_key("grow"),
        "it follows the catalogue"
    );
    create_topic_with(&address, "via-four", 4, 2, &[]);
    assert!(
        view(&address).1.contains_key("via-four"),
        "a change made through it is visible there when answered"
    );
    assert!(
        replicas(&address, "via-four")
            .iter()
            .flatten()
            .any(|&b| b == 4),
        "new topics are assigned to it too"
    );

    let before = replicas(&watcher, "grow");
    let targets: Vec<Vec<i32>> = before
        .iter()
        .enumerate()
        .map(|(p, replicas)| {
            let mut target = replicas.clone();
            target.remove(p % 3);
            target.insert(0, 4);
            target
        })
        .collect();
    let bootstrap = cluster.bootstrap();
    let writer = std::thread::spawn(move || produce_range(&bootstrap, "grow", 600..1200));
    for (partition, target) in targets.iter().enumerate() {
        assert_eq!(
            reassign(&address, "grow", partition as i32, Some(target.clone())),
            0
        );
    }
    eventually("the new broker holds its replicas, in sync", || {
        reassignments(&watcher).is_empty()
            && replicas(&watcher, "grow") == targets
            && isrs(&watcher, "grow")
                .iter()
                .all(|(_, isr)| isr.contains(&4))
    });
    writer.join().expect("writer");
    for partition in 0..3 {
        eventually("a preferred election succeeds", || {
            matches!(elect_preferred(&address, "grow", partition), 0 | 84)
        });
    }
    eventually("the new broker leads every partition", || {
        isrs(&watcher, "grow")
            .iter()
            .all(|(leader, _)| *leader == 4)
    });
    assert_exactly(&consume_count(&cluster.bootstrap(), "grow", 3, 1200), 1200);

    cluster.kill(fourth);
    eventually("the voters lead again", || {
        isrs(&watcher, "grow")
            .iter()
            .all(|(leader, _)| (1..=3).contains(leader))
    });
    cluster.restart(fourth);
    eventually("the new broker is back in every ISR", || {
        isrs(&watcher, "grow")
            .iter()
            .all(|(_, isr)| isr.contains(&4))
    });
    // It kept its replicas: they were opened from its stored catalogue, not taken for
    // leftovers of unknown topics and moved aside (then copied again from the leaders).
    let orphans = cluster.nodes[fourth].dir.join(".orphans");
    assert!(
        !orphans.exists(),
        "moved aside on restart: {:?}",
        std::fs::read_dir(&orphans).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert_exactly(&consume_count(&cluster.bootstrap(), "grow", 3, 1200), 1200);
}

/// Network partition, not a crash: the leader of partition 0 is cut off from every voter
/// (its quorum links blackholed by in-test proxies) while its process runs and its Kafka
/// listener still answers. The others fence it and elect new leaders; producers go on.
/// The cut-off broker still believes it leads, but an acks=all produce sent straight to it
/// is never acknowledged (its followers left it), and once the links heal it truncates
/// what only it wrote and rejoins every ISR. Every acknowledged record is read back once;
/// the record written only to the cut-off leader is not.
#[test]
fn a_leader_cut_off_from_the_quorum_acknowledges_nothing_it_cannot_keep() {
    let cluster = Cluster::start_with_links(3, &[]);
    let watcher = cluster.nodes[0].address.clone();
    create_topic_with(&watcher, "cut", 3, 3, &[("min.insync.replicas", "2")]);
    eventually("every partition fully replicated", || {
        let seen = isrs(&watcher, "cut");
        seen.len() == 3
            && seen
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
    });
    produce_range(&cluster.bootstrap(), "cut", 0..300);
    let leader = isrs(&watcher, "cut")[0].0;
    let victim = cluster
        .nodes
        .iter()
        .position(|node| node.id == leader)
        .expect("leader");
    let survivor = cluster.nodes[(victim + 1) % 3].address.clone();
    let isolated = cluster.nodes[victim].address.clone();

    cluster.cut_quorum_links(victim);
    eventually("the others fence it and move its partitions", || {
        !brokers(&survivor).contains(&leader)
            && isrs(&survivor, "cut")
                .iter()
                .all(|(l, _)| *l > 0 && *l != leader)
    });
    let bootstrap: String = cluster
        .nodes
        .iter()
        .filter(|node| node.id != leader)
        .map(|node| node.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    produce_range(&bootstrap, "cut", 300..600);
    // Straight to the cut-off leader, which has not heard of any of this.
    let answer = produce_raw(&isolated, "cut", 0, -1, b"value-split-brain", 3_000);
    let code = answer.responses[0].partition_responses[0].error_code;
    // REQUEST_TIMED_OUT: its followers fetch from the new leader, so its high watermark
    // cannot pass the record (NOT_LEADER_OR_FOLLOWER or NOT_ENOUGH_REPLICAS also refuse).
    assert!(
        matches!(code, 6 | 7 | 19 | 20),
        "an isolated leader answered {code} to an acks=all produce"
    );

    cluster.heal_quorum_links(victim);
    eventually("it rejoins every ISR", || {
        isrs(&survivor, "cut")
            .iter()
            .all(|(_, isr)| isr.contains(&leader))
    });
    let read = consume_count(&cluster.bootstrap(), "cut", 3, 600);
    assert_exactly(&read, 600);
    assert!(
        !read.values().flatten().any(|v| v == "value-split-brain"),
        "a record only the cut-off leader wrote survived"
    );
}

/// The fault injector itself: bytes pass both ways, wait (not lost) while the link is
/// blackholed, and flow again once it passes.
#[test]
fn the_link_proxy_holds_bytes_while_blackholed_and_loses_none() {
    use std::io::{Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = server.local_addr().expect("address");
    std::thread::spawn(move || {
        let (mut stream, _) = server.accept().expect("accept");
        let mut buffer = [0u8; 5];
        while stream.read_exact(&mut buffer).is_ok() {
            if stream.write_all(&buffer).is_err() {
                break;
            }
        }
    });
    let proxy = common::proxy::Proxy::start(target);
    let mut client = std::net::TcpStream::connect(proxy.address).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut echo = [0u8; 5];
    client.write_all(b"hello").expect("write");
    client.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"hello");
    proxy.blackhole();
    client.write_all(b"world").expect("write");
    assert!(
        client.read_exact(&mut echo).is_err(),
        "bytes crossed a blackholed link"
    );
    proxy.pass();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client
        .read_exact(&mut echo)
        .expect("held bytes arrive once the link passes");
    assert_eq!(&echo, b"world");
}

/// A broker whose process dies is fenced as soon as its connection to the quorum's leader
/// is seen closed, not after its session (60 s here): its partitions move within seconds,
/// whichever node dies, the quorum's leader included. A paused process keeps its
/// connections and is not fenced early.
#[test]
fn a_dead_broker_is_fenced_without_waiting_for_its_session() {
    let mut cluster = Cluster::start(3, &["--broker-session-timeout-ms", "60000"]);
    let watcher = cluster.nodes[0].address.clone();
    create_topic_with(&watcher, "fast", 3, 3, &[]);
    eventually("every partition fully replicated", || {
        let seen = isrs(&watcher, "fast");
        seen.len() == 3
            && seen
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
    });
    cluster.pause(2);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        brokers(&watcher).contains(&3),
        "a paused broker is not fenced early"
    );
    cluster.resume(2);
    for victim in [1usize, 2, 0] {
        let id = cluster.nodes[victim].id;
        let survivor = cluster.nodes[(victim + 1) % 3].address.clone();
        cluster.kill(victim);
        // `eventually` gives up after 30 s, half the session: only the closed connection
        // can fence it in time.
        eventually("the dead broker is fenced and leads nothing", || {
            !brokers(&survivor).contains(&id)
                && isrs(&survivor, "fast")
                    .iter()
                    .all(|(l, _)| *l > 0 && *l != id)
        });
        cluster.restart(victim);
        eventually("it is back in every ISR", || {
            isrs(&survivor, "fast")
                .iter()
                .all(|(_, isr)| isr.contains(&id))
        });
    }
}

/// CreateTopics v7 of `topic` with one partition on `replicas` (the first leads), and
/// `min.insync.replicas` 2.
fn create_assigned(address: &str, topic: &str, replicas: Vec<i32>) {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};
    use kafka_protocol::protocol::StrBytes;
    let mut assignment = CreatableReplicaAssignment::default();
    assignment.partition_index = 0;
    assignment.broker_ids = replicas.into_iter().map(BrokerId).collect();
    let mut config = CreatableTopicConfig::default();
    config.name = StrBytes::from_static_str("min.insync.replicas");
    config.value = Some(StrBytes::from_static_str("2"));
    let mut creatable = CreatableTopic::default();
    creatable.name = common::topic_name(topic);
    creatable.num_partitions = -1;
    creatable.replication_factor = -1;
    creatable.assignments = vec![assignment];
    creatable.configs = vec![config];
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![creatable];
    request.timeout_ms = 10_000;
    let response: CreateTopicsResponse =
        Raw::connect(address).call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

/// A leader whose disk fills up while its process lives on (ENOSPC injected on writes of
/// the partition's segment, 5 times from the second; the log fails and is reopened about a
/// second later)
/// leaves the ISR and hands the partition over: acks=all producers go on through the
/// other replicas instead of getting storage errors from it. Once its disk works again it
/// catches up and rejoins the ISR; every acknowledged record is read back exactly once.
#[test]
fn a_leader_whose_disk_fills_up_hands_its_partition_over() {
    let mut cluster = Cluster::start(3, &[]);
    let full = 0;
    let id = cluster.nodes[full].id;
    cluster.stop(full);
    cluster.nodes[full].extra = vec![
        "--inject-faults".into(),
        "write:enospc:skip=1:count=5:path=filling-0/00000000000000000000.log".into(),
    ];
    cluster.restart(full);
    let watcher = cluster.nodes[1].address.clone();
    eventually("every broker is live", || {
        view(&watcher).0 == BTreeSet::from([1, 2, 3])
    });
    let mut replicas: Vec<i32> = cluster.nodes.iter().map(|n| n.id).collect();
    replicas.retain(|&other| other != id);
    replicas.insert(0, id);
    create_assigned(&watcher, "filling", replicas);
    eventually("it leads with every replica in sync", || {
        isrs(&watcher, "filling")
            .first()
            .is_some_and(|(leader, isr)| *leader == id && isr.len() == 3)
    });

    // Its second segment write fails: every record must still be acknowledged, by the
    // replicas that took over (each flush waits at most 60 s; one flush, one write at
    // least).
    for chunk in 0..6 {
        produce_range(
            &cluster.bootstrap(),
            "filling",
            chunk * 100..(chunk + 1) * 100,
        );
    }
    let leader = isrs(&watcher, "filling")[0].0;
    assert_ne!(leader, id, "the failed replica leads no more");
    assert!(leader > 0, "another in-sync replica leads");
    assert!(
        cluster.nodes[full]
            .child
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("wait")
            .is_none(),
        "a full disk does not stop the broker"
    );
    produce_range(&cluster.bootstrap(), "filling", 600..1200);
    eventually("its disk works again: it is back in the ISR", || {
        isrs(&watcher, "filling")[0].1.contains(&id)
    });
    assert_exactly(
        &consume_count(&cluster.bootstrap(), "filling", 1, 1200),
        1200,
    );
}
