//! Black-box protocol tests: the real `petrel serve` (2 shards) driven with raw Kafka
//! requests, for exact assertions on each API's answers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{produce, topic_name, Broker, Raw};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use petrel::record_batch::RecordBatchHeader;
use petrel::runtime::placement::partition_shard as shard_for;

fn create_topic(
    raw: &mut Raw,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> CreateTopicsResponse {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = -1;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string(k.to_string());
            config.value = Some(StrBytes::from_string(v.to_string()));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    request.validate_only = validate_only;
    raw.call(ApiKey::CreateTopics, 7, &request)
}

fn metadata(raw: &mut Raw, names: Option<&[&str]>, version: i16) -> MetadataResponse {
    let mut request = MetadataRequest::default();
    request.topics = names.map(|names| {
        names
            .iter()
            .map(|n| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(topic_name(n));
                topic
            })
            .collect()
    });
    request.allow_auto_topic_creation = false;
    raw.call(ApiKey::Metadata, version, &request)
}

fn fetch_request(
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name(topic);
    fetch_topic.partitions = partitions
        .iter()
        .map(|&(index, offset)| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.fetch_offset = offset;
            partition.partition_max_bytes = 1 << 20;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = 50 << 20;
    request.topics = vec![fetch_topic];
    request
}

fn batch(records: usize, timestamp: i64) -> Bytes {
    Bytes::from(petrel::testkit::uniform_batch(records, 100, timestamp))
}

#[test]
fn a_produce_spanning_both_shards_gets_one_correct_reply() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    let created = create_topic(&mut raw, "spread", 6, &[], false);
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let owners: Vec<usize> = (0..6).map(|p| shard_for(&topic_id, p, 2)).collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "partitions on both shards: {owners:?}"
    );

    // One request, six partitions, both shards; twice, so base offsets advance.
    for round in 0..2i64 {
        let batches = (0..6).map(|p| (p, batch(1 + p as usize, 1000))).collect();
        let response = produce(&mut raw, "spread", batches, -1);
        assert_eq!(response.responses.len(), 1);
        let partitions = &response.responses[0].partition_responses;
        assert_eq!(partitions.len(), 6);
        for (p, answer) in partitions.iter().enumerate() {
            assert_eq!(answer.index, p as i32, "reply keeps request order");
            assert_eq!(answer.error_code, 0, "partition {p}");
            assert_eq!(answer.base_offset, round * (1 + p as i64), "partition {p}");
        }
    }
    // Every partition holds exactly what was sent to it, from both shards, in one fetch.
    let request = fetch_request("spread", &(0..6).map(|p| (p, 0)).collect::<Vec<_>>(), 0, 0);
    let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
    let partitions = &response.responses[0].partitions;
    for (p, data) in partitions.iter().enumerate() {
        assert_eq!(data.error_code, 0);
        assert_eq!(data.high_watermark, 2 * (1 + p as i64));
        let records = data.records.clone().expect("records");
        let first = RecordBatchHeader::parse(&records).expect("batch");
        assert_eq!(first.records_count.get(), 1 + p as i32);
        assert_eq!(
            records.len(),
            2 * batch(1 + p, 1000).len(),
            "partition {p}: both batches, unchanged"
        );
    }
}

#[test]
fn fetch_long_polls_until_data_arrives_or_max_wait() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "poll", 2, &[], false);

    // Nothing to read: the answer comes after max_wait, empty.
    let started = Instant::now();
    let response: FetchResponse = raw.call(
        ApiKey::Fetch,
        12,
        &fetch_request("poll", &[(0, 0), (1, 0)], 300, 1),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered too early: {:?}",
        started.elapsed()
    );
    assert!(response.responses[0]
        .partitions
        .iter()
        .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty())));

    // A waiting fetch is woken by a produce on another connection, long before max_wait.
    let waiting = raw.send(
        ApiKey::Fetch,
        12,
        &fetch_request("poll", &[(0, 0), (1, 0)], 20_000, 1),
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut producer = Raw::connect(&broker.address);
    let started = Instant::now();
    let produced = produce(&mut producer, "poll", vec![(1, batch(3, 5))], 1);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let response: FetchResponse = raw.receive(ApiKey::Fetch, 12, waiting);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the append must wake the fetch"
    );
    let partition = &response.responses[0].partitions[1];
    assert_eq!(partition.high_watermark, 3);
    assert_eq!(
        partition.records.as_ref().map(Bytes::len),
        Some(batch(3, 5).len())
    );
    // Reading from the end gives nothing; past the end is OFFSET_OUT_OF_RANGE.
    let response: FetchResponse = raw.call(
        ApiKey::Fetch,
        12,
        &fetch_request("poll", &[(1, 3), (1, 99)], 0, 0),
    );
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert_eq!(response.responses[0].partitions[1].error_code, 1);
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "times", 1, &[], false);
    for timestamp in [1_000, 2_000, 3_000] {
        produce(&mut raw, "times", vec![(0, batch(2, timestamp))], -1);
    }
    let query = |raw: &mut Raw, timestamp: i64| -> (i16, i64, i64) {
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = timestamp;
        let mut topic = ListOffsetsTopic::default();
        topic.name = topic_name("times");
        topic.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.topics = vec![topic];
        let response: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &request);
        let answer = &response.topics[0].partitions[0];
        (answer.error_code, answer.offset, answer.timestamp)
    };
    assert_eq!(query(&mut raw, -2).1, 0, "earliest");
    assert_eq!(query(&mut raw, -1).1, 6, "latest");
    assert_eq!(query(&mut raw, 1_500), (0, 2, 2_000));
    assert_eq!(query(&mut raw, 2_000), (0, 2, 2_000));
    assert_eq!(query(&mut raw, 0), (0, 0, 1_000));
    assert_eq!(query(&mut raw, 9_999), (0, -1, -1), "nothing that late");
    assert_eq!(query(&mut raw, -3), (0, 4, 3_000), "max timestamp");
}

#[test]
fn admin_apis_create_validate_describe_grow_delete() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    // validate-only creates nothing.
    let checked = create_topic(&mut raw, "admin", 3, &[("retention.ms", "60000")], true);
    assert_eq!(checked.topics[0].error_code, 0);
    assert_eq!(
        metadata(&mut raw, Some(&["admin"]), 12).topics[0].error_code,
        3
    );
    // Bad requests get the codes clients expect.
    assert_eq!(
        create_topic(&mut raw, "bad name!", 1, &[], false).topics[0].error_code,
        17
    );
    assert_eq!(
        create_topic(&mut raw, "zero", 0, &[], false).topics[0].error_code,
        37
    );
    assert_eq!(
        create_topic(
            &mut raw,
            "compacted",
            1,
            &[("cleanup.policy", "compact")],
            false
        )
        .topics[0]
            .error_code,
        40
    );
    let created = create_topic(&mut raw, "admin", 3, &[("retention.ms", "60000")], false);
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].num_partitions, 3);
    assert_eq!(
        create_topic(&mut raw, "admin", 3, &[], false).topics[0].error_code,
        36
    );

    // Metadata carries the topic id, partitions, and this broker.
    let described = metadata(&mut raw, Some(&["admin"]), 12);
    assert_eq!(described.topics[0].topic_id, created.topics[0].topic_id);
    assert_eq!(described.topics[0].partitions.len(), 3);
    assert_eq!(described.brokers[0].port, i32::from(broker.port()));
    assert!(described.cluster_id.is_some());

    // DescribeConfigs: the override, and defaults marked as such.
    let mut resource =
        kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_static_str("admin");
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource.clone()];
    request.include_synonyms = true;
    // Then the cluster-wide broker defaults (name "") and broker 0.
    for name in ["", "0"] {
        let mut broker_resource = resource.clone();
        broker_resource.resource_type = 4;
        broker_resource.resource_name = StrBytes::from_string(name.into());
        request.resources.push(broker_resource);
    }
    let configs: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &request);
    let entries = &configs.results[0].configs;
    let entry = |entries: &[kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult],
                 name: &str| entries.iter().find(|e| e.name.as_str() == name).cloned();
    let value =
        |name: &str| entry(entries, name).map(|e| (e.value.unwrap().to_string(), e.config_source));
    assert_eq!(value("retention.ms"), Some(("60000".into(), 1)));
    assert_eq!(value("cleanup.policy"), Some(("delete".into(), 5)));
    assert!(
        value("segment.bytes").is_some()
            && value("max.message.bytes").is_some()
            && value("retention.bytes").is_some()
    );
    // Synonyms, as `kafka-configs --describe --all` asks for them: the override first, then
    // the broker-level default it replaces.
    let synonyms = |name: &str| -> Vec<(String, String, i8)> {
        entry(entries, name)
            .unwrap()
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.value.clone().unwrap().to_string(),
                    s.source,
                )
            })
            .collect()
    };
    assert_eq!(
        synonyms("retention.ms"),
        vec![
            ("retention.ms".into(), "60000".into(), 1),
            ("log.retention.ms".into(), "604800000".into(), 5)
        ]
    );
    assert_eq!(
        synonyms("cleanup.policy"),
        vec![("log.cleanup.policy".into(), "delete".into(), 5)]
    );
    // The cluster-wide default resource ("") has no dynamic configs; broker 0 describes the
    // flush policy as Kafka's numeric `log.flush.interval.messages`.
    assert_eq!(configs.results[1].error_code, 0);
    assert!(configs.results[1].configs.is_empty());
    let flush = entry(&configs.results[2].configs, "log.flush.interval.messages").unwrap();
    assert_eq!(flush.value.unwrap().as_str(), "1");
    assert_eq!(flush.config_type, 5, "LONG");
    assert!(entry(&configs.results[2].configs, "log.flush.interval.ms").is_none());

    // CreatePartitions grows; shrinking is refused.
    let grow = |raw: &mut Raw, count: i32| -> i16 {
        let mut topic =
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default();
        topic.name = topic_name("admin");
        topic.count = count;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        let response: CreatePartitionsResponse = raw.call(ApiKey::CreatePartitions, 3, &request);
        response.results[0].error_code
    };
    assert_eq!(grow(&mut raw, 5), 0);
    assert_eq!(grow(&mut raw, 2), 37);
    assert_eq!(
        metadata(&mut raw, Some(&["admin"]), 12).topics[0]
            .partitions
            .len(),
        5
    );
    let produced = produce(&mut raw, "admin", vec![(4, batch(1, 1))], -1);
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code, 0,
        "a new partition takes writes"
    );

    // DescribeCluster names this broker as controller.
    let cluster: DescribeClusterResponse = raw.call(
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);

    // DeleteTopics, then the topic is gone, and may be created again, empty.
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![topic_name("admin"), topic_name("never-existed")];
    let deleted: DeleteTopicsResponse = raw.call(ApiKey::DeleteTopics, 5, &request);
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(deleted.responses[1].error_code, 3);
    assert_eq!(
        metadata(&mut raw, Some(&["admin"]), 12).topics[0].error_code,
        3
    );
    assert_eq!(
        create_topic(&mut raw, "admin", 1, &[], false).topics[0].error_code,
        0
    );
    let response: FetchResponse =
        raw.call(ApiKey::Fetch, 12, &fetch_request("admin", &[(0, 0)], 0, 0));
    assert_eq!(
        response.responses[0].partitions[0].high_watermark, 0,
        "a re-created topic starts empty"
    );
}

#[test]
fn topics_and_data_survive_a_restart() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    let created = create_topic(&mut raw, "durable", 4, &[("retention.ms", "-1")], false);
    for p in 0..4 {
        produce(&mut raw, "durable", vec![(p, batch(5, 77))], -1);
    }
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &[]);
    let mut raw = Raw::connect(&broker.address);
    let described = metadata(&mut raw, None, 12);
    let topic = described
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "durable"))
        .expect("topic kept");
    assert_eq!(
        topic.topic_id, created.topics[0].topic_id,
        "same id after restart"
    );
    assert_eq!(topic.partitions.len(), 4);
    let response: FetchResponse = raw.call(
        ApiKey::Fetch,
        12,
        &fetch_request("durable", &[(0, 0), (1, 0), (2, 0), (3, 0)], 0, 0),
    );
    for partition in &response.responses[0].partitions {
        assert_eq!(partition.high_watermark, 5);
        assert_eq!(
            partition.records.as_ref().map(Bytes::len),
            Some(batch(5, 77).len())
        );
    }
    drop(broker);
    drop(temp);
}

#[test]
fn api_versions_answers_unknown_versions_in_v0_with_our_ranges() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    let response: ApiVersionsResponse =
        raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("produce");
    assert_eq!((produce.min_version, produce.max_version), (0, 13));
    // KIP-511: a version from the future gets a v0 answer with UNSUPPORTED_VERSION.
    let id = raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let _ = raw.receive::<ApiVersionsResponse>(ApiKey::ApiVersions, 3, id);
    let mut header = RequestHeader::default();
    header.request_api_key = 18;
    header.request_api_version = 99;
    header.correlation_id = 7;
    let mut frame = bytes::BytesMut::new();
    kafka_protocol::protocol::Encodable::encode(&header, &mut frame, 2).unwrap();
    frame.extend_from_slice(&[0, 0, 0]);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    std::io::Write::write_all(&mut raw.stream, &out).unwrap();
    let mut body = raw
        .read_frame()
        .expect("an answer, not a closed connection");
    let header =
        <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0).unwrap();
    assert_eq!(response.error_code, 35);
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
}

#[test]
fn pipelined_produces_append_in_request_order() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    // Two partitions: consecutive partitions live on different shards, so every request
    // crosses shards, which is where reordering would creep in.
    create_topic(&mut raw, "ordered", 2, &[], false);
    let mut sent = Vec::new();
    for n in 0..500i64 {
        let mut topic_data = TopicProduceData::default();
        topic_data.name = topic_name("ordered");
        topic_data.partition_data = (0..2)
            .map(|index| {
                let mut partition = PartitionProduceData::default();
                partition.index = index;
                partition.records = Some(batch(1 + (n % 3) as usize, n));
                partition
            })
            .collect();
        let mut request = ProduceRequest::default();
        request.acks = if n % 2 == 0 { -1 } else { 1 };
        request.timeout_ms = 10_000;
        request.topic_data = vec![topic_data];
        // Many requests in flight on one connection before any answer is read.
        sent.push(raw.send(ApiKey::Produce, 9, &request));
    }
    let mut expected_base = 0;
    for (n, id) in sent.into_iter().enumerate() {
        let response: ProduceResponse = raw.receive(ApiKey::Produce, 9, id);
        for answer in &response.responses[0].partition_responses {
            assert_eq!(answer.error_code, 0);
            assert_eq!(
                answer.base_offset, expected_base,
                "request {n} appended out of order on partition {}",
                answer.index
            );
        }
        expected_base += 1 + (n as i64 % 3);
    }
}

#[test]
fn auto_creation_topic_ids_and_partition_byte_limits() {
    let broker = Broker::start(&["--default-partitions", "3"]);
    let mut raw = Raw::connect(&broker.address);
    // Metadata that allows it creates an unknown topic with the default partition count.
    let mut request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(topic_name("auto"));
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = true;
    let created: MetadataResponse = raw.call(ApiKey::Metadata, 12, &request);
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 3);
    let topic_id = created.topics[0].topic_id;
    assert!(!topic_id.is_nil());

    // Produce v13 and Fetch v13 address the topic by id.
    let mut topic_data = TopicProduceData::default();
    topic_data.topic_id = topic_id;
    let mut partition_data = PartitionProduceData::default();
    partition_data.index = 2;
    partition_data.records = Some(batch(2, 9));
    topic_data.partition_data = vec![partition_data];
    let mut produce_request = ProduceRequest::default();
    produce_request.acks = -1;
    produce_request.timeout_ms = 5_000;
    produce_request.topic_data = vec![topic_data];
    for _ in 0..3 {
        let response: ProduceResponse = raw.call(ApiKey::Produce, 13, &produce_request);
        assert_eq!(response.responses[0].topic_id, topic_id);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let mut fetch = fetch_request("", &[(2, 0)], 0, 0);
    fetch.topics[0].topic_id = topic_id;
    // partition_max_bytes of 1: still the first whole batch (KIP-74), and only that.
    fetch.topics[0].partitions[0].partition_max_bytes = 1;
    let response: FetchResponse = raw.call(ApiKey::Fetch, 13, &fetch);
    assert_eq!(response.responses[0].topic_id, topic_id);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 6);
    assert_eq!(partition.log_start_offset, 0);
    assert_eq!(
        partition.records.as_ref().map(Bytes::len),
        Some(batch(2, 9).len())
    );
    // An unknown topic id.
    fetch.topics[0].topic_id = uuid::Uuid::new_v4();
    let response: FetchResponse = raw.call(ApiKey::Fetch, 13, &fetch);
    assert_eq!(response.responses[0].partitions[0].error_code, 100);

    // Produce to an unknown topic name auto-creates it too.
    let produced = produce(&mut raw, "auto-produced", vec![(0, batch(1, 1))], 1);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        metadata(&mut raw, Some(&["auto-produced"]), 12).topics[0]
            .partitions
            .len(),
        3
    );
}

#[test]
fn auto_creation_can_be_turned_off() {
    let broker = Broker::start(&["--auto-create-topics", "false"]);
    let mut raw = Raw::connect(&broker.address);
    let produced = produce(&mut raw, "absent", vec![(0, batch(1, 1))], 1);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 3);
    let mut request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(topic_name("absent"));
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = true;
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &request);
    assert_eq!(response.topics[0].error_code, 3);
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("petrel.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nnot-a-setting = 1\n").unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--shards", "0"], vec![], "shards"),
        (vec![], vec![("PETREL_SHARDS", "0")], "shards"),
        (vec!["--listen", "nowhere"], vec![], "listen"),
        (vec!["--segment-bytes", "5"], vec![], "segment.bytes"),
        (
            vec!["--config", file.to_str().unwrap()],
            vec![],
            "not-a-setting",
        ),
    ];
    for (args, env, expected) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
            .arg("serve")
            .args(["--data-dir", temp.path().join("data").to_str().unwrap()])
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("run petrel");
        assert!(!output.status.success(), "{args:?} {env:?} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?} {env:?}: message should name {expected}: {stderr}"
        );
    }
}

#[test]
fn a_relative_data_dir_works_as_the_readme_runs_it() {
    let temp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "petrel-data",
        ])
        .current_dir(temp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let address = line.split(' ').nth(3).expect("address").to_string();
    let mut raw = Raw::connect(&address);
    let produced = produce(&mut raw, "relative", vec![(0, batch(1, 1))], -1);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    assert!(temp.path().join("petrel-data").join("relative-0").is_dir());
    let _ = child.kill();
    let _ = child.wait();
}

fn init_producer_id(raw: &mut Raw, current: Option<(i64, i16)>) -> InitProducerIdResponse {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let (id, epoch) = current.unwrap_or((-1, -1));
    request.producer_id = ProducerId(id);
    request.producer_epoch = epoch;
    raw.call(ApiKey::InitProducerId, 4, &request)
}

#[test]
fn idempotent_producers_get_ids_and_their_retries_are_deduplicated() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "exactly-once", 1, &[], false);
    let first = init_producer_id(&mut raw, None);
    let second = init_producer_id(&mut raw, None);
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    assert_ne!(first.producer_id.0, second.producer_id.0);
    let pid = first.producer_id.0;
    let idempotent = |records, epoch, sequence| {
        Bytes::from(petrel::testkit::idempotent_batch(
            records, 20, pid, epoch, sequence,
        ))
    };

    let answer = |response: ProduceResponse| {
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    };
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(4, 0, 0))],
            -1
        )),
        (0, 0)
    );
    // The same batch again (a retry after a lost answer): the original offset, no new data.
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(4, 0, 0))],
            -1
        )),
        (0, 0)
    );
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(2, 0, 4))],
            -1
        )),
        (0, 4)
    );
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER, nothing written.
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(1, 0, 9))],
            -1
        ))
        .0,
        45
    );
    // Naming an existing id and epoch (KIP-360) gets a new id at epoch 0, as in Kafka: never
    // a bump of the pair named, which would let anyone fence a live producer.
    let renewed = init_producer_id(&mut raw, Some((pid, 0)));
    assert_eq!(renewed.error_code, 0);
    assert_ne!(renewed.producer_id.0, pid);
    assert_eq!(renewed.producer_epoch, 0);
    // An id without an epoch, or the reverse: INVALID_REQUEST, as Kafka.
    for pair in [(pid, -1), (-1, 0)] {
        let refused = init_producer_id(&mut raw, Some(pair));
        assert_eq!(
            (refused.error_code, refused.producer_id.0),
            (42, -1),
            "{pair:?}"
        );
    }
    // A producer that bumped its epoch itself starts again at sequence 0; the old epoch is
    // then fenced with INVALID_PRODUCER_EPOCH.
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(1, 1, 0))],
            -1
        )),
        (0, 6)
    );
    assert_eq!(
        answer(produce(
            &mut raw,
            "exactly-once",
            vec![(0, idempotent(1, 0, 6))],
            -1
        ))
        .0,
        47
    );
    let response: FetchResponse = raw.call(
        ApiKey::Fetch,
        12,
        &fetch_request("exactly-once", &[(0, 0)], 0, 0),
    );
    assert_eq!(
        response.responses[0].partitions[0].high_watermark, 7,
        "4 + 2 + 1 records, retries not written"
    );

    // Ids stay unique across a restart.
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &[]);
    let mut raw = Raw::connect(&broker.address);
    let after = init_producer_id(&mut raw, None);
    assert!(
        after.producer_id.0 > second.producer_id.0,
        "{} reissued",
        after.producer_id.0
    );
    // Transactions are not implemented: refused clearly.
    let mut transactional = InitProducerIdRequest::default();
    transactional.transactional_id = Some(TransactionalId(StrBytes::from_static_str("txn")));
    transactional.producer_id = ProducerId(-1);
    transactional.producer_epoch = -1;
    let refused: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &transactional);
    assert_eq!(refused.error_code, 53);
    drop(broker);
    drop(temp);
}

#[test]
fn group_admin_apis_and_commit_rules() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "audited", 2, &[], false);
    produce(&mut raw, "audited", vec![(0, batch(5, 1))], -1);
    let group = |name: &str| GroupId(StrBytes::from_string(name.to_string()));
    // FindCoordinator, single (v3) and batched (v4+).
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("offline-group");
    let found: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, 3, &find);
    assert_eq!(
        (found.error_code, found.port),
        (0, i32::from(broker.port()))
    );
    find.key = StrBytes::default();
    find.coordinator_keys = vec![
        StrBytes::from_static_str("a"),
        StrBytes::from_static_str("b"),
    ];
    let found: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, 4, &find);
    assert_eq!(found.coordinators.len(), 2);
    // No transaction coordinator: a fatal error for the client (53), not a retriable one.
    find.key_type = 1;
    let found: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, 4, &find);
    assert!(found.coordinators.iter().all(|c| c.error_code == 53));
    find.key_type = 0;
    // A commit without group management (generation -1): allowed for an empty group, with
    // metadata, and past the log end (Kafka accepts it; the consumer's reset policy applies).
    let commit = |raw: &mut Raw, offset: i64, metadata: String| -> i16 {
        let mut partition = OffsetCommitRequestPartition::default();
        partition.partition_index = 0;
        partition.committed_offset = offset;
        partition.committed_metadata = Some(StrBytes::from_string(metadata));
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = topic_name("audited");
        topic.partitions = vec![partition];
        let mut request = OffsetCommitRequest::default();
        request.group_id = group("offline-group");
        request.generation_id_or_member_epoch = -1;
        request.topics = vec![topic];
        let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request);
        response.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut raw, 3, "checkpoint-a".into()), 0);
    assert_eq!(commit(&mut raw, 999, "past the end".into()), 0);
    assert_eq!(
        commit(&mut raw, 4, "x".repeat(5000)),
        12,
        "OFFSET_METADATA_TOO_LARGE"
    );
    let fetch_offsets = |raw: &mut Raw| -> (i64, String) {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = topic_name("audited");
        topic.partition_indexes = vec![0, 1];
        let mut request = OffsetFetchRequest::default();
        request.group_id = group("offline-group");
        request.topics = Some(vec![topic]);
        let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, 7, &request);
        let partitions = &response.topics[0].partitions;
        assert_eq!(
            partitions[1].committed_offset, -1,
            "nothing committed on partition 1"
        );
        (
            partitions[0].committed_offset,
            partitions[0]
                .metadata
                .clone()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(fetch_offsets(&mut raw), (999, "past the end".to_string()));
    // ListGroups and DescribeGroups see the group, Empty.
    let listed: ListGroupsResponse = raw.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    let entry = listed
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == "offline-group")
        .expect("listed");
    assert_eq!(entry.group_state.as_str(), "Empty");
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![group("offline-group"), group("never-seen")];
    let described: DescribeGroupsResponse = raw.call(ApiKey::DescribeGroups, 5, &describe);
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");
    // OffsetDelete removes the commit of a topic the (empty) group does not consume.
    let mut partition = OffsetDeleteRequestPartition::default();
    partition.partition_index = 0;
    let mut topic = OffsetDeleteRequestTopic::default();
    topic.name = topic_name("audited");
    topic.partitions = vec![partition];
    let mut delete_offsets = OffsetDeleteRequest::default();
    delete_offsets.group_id = group("offline-group");
    delete_offsets.topics = vec![topic];
    let deleted: OffsetDeleteResponse = raw.call(ApiKey::OffsetDelete, 0, &delete_offsets);
    assert_eq!(
        (
            deleted.error_code,
            deleted.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    assert_eq!(fetch_offsets(&mut raw).0, -1);
    // DeleteGroups: an unknown group, then a real one.
    assert_eq!(commit(&mut raw, 2, String::new()), 0);
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![group("offline-group"), group("never-seen")];
    let deleted: DeleteGroupsResponse = raw.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(deleted.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(
        fetch_offsets(&mut raw).0,
        -1,
        "the group's offsets went with it"
    );
}

#[test]
fn a_corrupt_batch_is_refused_and_nothing_of_it_is_written() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "guarded", 1, &[], false);
    let mut corrupt = batch(3, 1).to_vec();
    *corrupt.last_mut().unwrap() ^= 0xff;
    let refused = produce(&mut raw, "guarded", vec![(0, Bytes::from(corrupt))], -1);
    assert_eq!(
        refused.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    // The connection stays usable, and the log holds only what was valid.
    let accepted = produce(&mut raw, "guarded", vec![(0, batch(2, 1))], -1);
    assert_eq!(accepted.responses[0].partition_responses[0].base_offset, 0);
    let response: FetchResponse = raw.call(
        ApiKey::Fetch,
        12,
        &fetch_request("guarded", &[(0, 0)], 0, 0),
    );
    assert_eq!(response.responses[0].partitions[0].high_watermark, 2);
}

fn describe_topic_configs(raw: &mut Raw, topic: &str) -> Vec<(String, String, i8)> {
    let mut resource =
        kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.into());
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &request);
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), value, c.config_source)
        })
        .collect()
}

fn incremental_alter(
    raw: &mut Raw,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)], // (config, operation, value)
    validate_only: bool,
) -> (i16, String) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = StrBytes::from_string(name.into());
    resource.configs = ops
        .iter()
        .map(|(name, op, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string((*name).into());
            config.config_operation = *op;
            config.value = value.map(|v| StrBytes::from_string(v.into()));
            config
        })
        .collect();
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    request.validate_only = validate_only;
    let response: IncrementalAlterConfigsResponse =
        raw.call(ApiKey::IncrementalAlterConfigs, 1, &request);
    let result = &response.responses[0];
    let message = result
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (result.error_code, message)
}

#[test]
fn topic_configs_change_at_runtime_and_survive_a_restart() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    create_topic(&mut raw, "cfg", 4, &[("retention.ms", "60000")], false);
    let value = |configs: &[(String, String, i8)], name: &str| {
        configs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, source)| (v.clone(), *source))
            .expect("described")
    };

    // Validate-only changes nothing; a real change shows up as a topic override (source 1).
    let ops = [
        ("retention.ms", SET, Some("3600000")),
        ("segment.bytes", SET, Some("1048576")),
    ];
    assert_eq!(incremental_alter(&mut raw, 2, "cfg", &ops, true).0, 0);
    let configs = describe_topic_configs(&mut raw, "cfg");
    assert_eq!(value(&configs, "retention.ms"), ("60000".into(), 1));
    assert_eq!(incremental_alter(&mut raw, 2, "cfg", &ops, false).0, 0);
    let configs = describe_topic_configs(&mut raw, "cfg");
    assert_eq!(value(&configs, "retention.ms"), ("3600000".into(), 1));
    assert_eq!(value(&configs, "segment.bytes"), ("1048576".into(), 1));

    // DELETE returns a config to the broker default.
    let ops = [("segment.bytes", DELETE, None)];
    assert_eq!(incremental_alter(&mut raw, 2, "cfg", &ops, false).0, 0);
    let configs = describe_topic_configs(&mut raw, "cfg");
    assert_eq!(value(&configs, "segment.bytes"), ("1073741824".into(), 5));

    // Refusals, each with the code Kafka's clients expect, and nothing changed by them.
    type ConfigOp<'a> = (&'a str, i8, Option<&'a str>);
    let refusals: [(i8, &str, ConfigOp, i16); 6] = [
        (2, "cfg", ("retention.ms", SET, Some("soon")), 40),
        (2, "cfg", ("cleanup.policy", SET, Some("compact")), 40),
        (2, "cfg", ("no.such.config", SET, Some("1")), 40),
        (2, "cfg", ("max.message.bytes", SET, Some("2000000")), 40),
        (2, "missing", ("retention.ms", SET, Some("1")), 3),
        (4, "0", ("log.retention.ms", SET, Some("1")), 42),
    ];
    for (resource_type, name, op, code) in refusals {
        let (got, message) = incremental_alter(&mut raw, resource_type, name, &[op], false);
        assert_eq!(got, code, "{op:?}: {message}");
        assert!(!message.is_empty());
    }
    assert_eq!(
        value(&describe_topic_configs(&mut raw, "cfg"), "retention.ms"),
        ("3600000".into(), 1)
    );

    // AlterConfigs (the older API) replaces the whole set: retention.ms goes back to default.
    {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_static_str("segment.ms");
        config.value = Some(StrBytes::from_static_str("3600000"));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = 2;
        resource.resource_name = StrBytes::from_static_str("cfg");
        resource.configs = vec![config];
        let mut request = AlterConfigsRequest::default();
        request.resources = vec![resource];
        let response: AlterConfigsResponse = raw.call(ApiKey::AlterConfigs, 2, &request);
        assert_eq!(response.responses[0].error_code, 0);
    }
    let configs = describe_topic_configs(&mut raw, "cfg");
    assert_eq!(value(&configs, "segment.ms"), ("3600000".into(), 1));
    assert_eq!(value(&configs, "retention.ms"), ("604800000".into(), 5));

    // The change is in the metadata file: it survives a restart.
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &[]);
    let mut raw = Raw::connect(&broker.address);
    let configs = describe_topic_configs(&mut raw, "cfg");
    assert_eq!(value(&configs, "segment.ms"), ("3600000".into(), 1));
    drop(broker);
    drop(temp);
}
