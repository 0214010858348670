//! Fetch byte limits (KIP-74): the response is bounded by the request's `max_bytes` and the
//! broker's `--fetch-max-bytes`, each partition by `partition_max_bytes` and what is left of
//! the response's budget, and only the first batch of the first non-empty partition may
//! exceed them, so a consumer always makes progress.

mod common;

use bytes::Bytes;
use common::{create_topic, produce, topic_name, Broker, Raw};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use petrel::record_batch::RecordBatchHeader;

const BATCHES: usize = 20;
/// 100 records of 1000 bytes: a stored batch of a little over 100 KiB.
const RECORDS_PER_BATCH: usize = 100;
const VALUE_BYTES: usize = 1000;

/// Produces `BATCHES` batches of about 100 KiB to `partition`; returns the batch size.
fn fill(raw: &mut Raw, topic: &str, partition: i32) -> usize {
    let mut size = 0;
    for n in 0..BATCHES {
        let batch = petrel::testkit::uniform_batch(RECORDS_PER_BATCH, VALUE_BYTES, 1000 + n as i64);
        size = batch.len();
        let response = produce(raw, topic, vec![(partition, Bytes::from(batch))], -1);
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "{answer:?}");
    }
    size
}

/// A fetch of `partitions` (index, offset) of `topic`, each with `partition_max_bytes`.
fn fetch(
    raw: &mut Raw,
    topic: &str,
    partitions: &[(i32, i64)],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchResponse {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name(topic);
    fetch_topic.partitions = partitions
        .iter()
        .map(|&(index, offset)| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.fetch_offset = offset;
            partition.partition_max_bytes = partition_max_bytes;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    // A generous wait: a broker that cannot make progress would answer empty after it.
    request.max_wait_ms = 2_000;
    request.min_bytes = 1;
    request.max_bytes = max_bytes;
    request.topics = vec![fetch_topic];
    raw.call(ApiKey::Fetch, 12, &request)
}

/// The whole batches in one partition's records, checked to tile them exactly.
fn batches_in(records: &Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let header = RecordBatchHeader::parse(&records[position..]).expect("batch header");
        let total = header.total_bytes().expect("batch length");
        assert!(
            position + total <= records.len(),
            "a partial batch was sent"
        );
        batches.push(records.slice(position..position + total));
        position += total;
    }
    batches
}

/// Per partition of the response: (index, batches).
fn answers(response: &FetchResponse) -> Vec<(i32, Vec<Bytes>)> {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| {
            assert_eq!(partition.error_code, 0, "{partition:?}");
            let records = partition.records.clone().unwrap_or_default();
            (partition.partition_index, batches_in(&records))
        })
        .collect()
}

fn total_bytes(response: &FetchResponse) -> usize {
    answers(response)
        .iter()
        .flat_map(|(_, batches)| batches)
        .map(Bytes::len)
        .sum()
}

fn batch_count(response: &FetchResponse) -> usize {
    answers(response)
        .iter()
        .map(|(_, batches)| batches.len())
        .sum()
}

/// `--cache-bytes 1` leaves each shard the smallest cache (1 MiB), so the first batches of
/// a 2 MB partition are read from disk and the last from the cache: both paths are bounded.
fn broker(extra: &[&str]) -> Broker {
    let mut args = vec!["--cache-bytes", "1"];
    args.extend_from_slice(extra);
    Broker::start(&args)
}

#[test]
fn max_bytes_one_returns_exactly_one_batch_from_disk_and_from_cache() {
    let broker = broker(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "tiny", 1).topics[0].error_code, 0);
    fill(&mut raw, "tiny", 0);
    let last = (BATCHES as i64 - 1) * RECORDS_PER_BATCH as i64;
    for offset in [0, last] {
        let response = fetch(&mut raw, "tiny", &[(0, offset)], 1, i32::MAX);
        let batches = &answers(&response)[0].1;
        assert_eq!(
            batches.len(),
            1,
            "offset {offset}: {} batches",
            batches.len()
        );
        let header = RecordBatchHeader::parse(&batches[0]).expect("header");
        assert_eq!(header.base_offset.get(), offset);
    }
}

#[test]
fn max_bytes_bounds_the_response_but_never_below_one_batch() {
    let broker = broker(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "bounded", 1).topics[0].error_code, 0);
    let batch_bytes = fill(&mut raw, "bounded", 0);
    // Under one batch: the first batch whole; then two batches fit, three do not.
    for (max_bytes, expected) in [(50_000, 1), (250_000, 2)] {
        let response = fetch(&mut raw, "bounded", &[(0, 0)], max_bytes, i32::MAX);
        assert_eq!(batch_count(&response), expected, "max_bytes {max_bytes}");
        assert!(total_bytes(&response) <= (max_bytes as usize).max(batch_bytes));
    }
    // partition_max_bytes bounds a partition the same way.
    let response = fetch(&mut raw, "bounded", &[(0, 0)], i32::MAX, 250_000);
    assert_eq!(batch_count(&response), 2);
}

#[test]
fn partitions_on_different_shards_share_one_response_budget() {
    let broker = broker(&[]);
    let mut raw = Raw::connect(&broker.address);
    // Consecutive partitions land on consecutive shards: 0 and 1 are on different shards.
    assert_eq!(create_topic(&mut raw, "pair", 2).topics[0].error_code, 0);
    fill(&mut raw, "pair", 0);
    fill(&mut raw, "pair", 1);
    let response = fetch(&mut raw, "pair", &[(0, 0), (1, 0)], 1, i32::MAX);
    assert_eq!(batch_count(&response), 1);
    // The first partition of the request is the one that may exceed the budget.
    assert_eq!(answers(&response)[0].1.len(), 1);

    let response = fetch(&mut raw, "pair", &[(0, 0), (1, 0)], 450_000, i32::MAX);
    assert!(total_bytes(&response) <= 450_000);
    assert!(batch_count(&response) >= 1);
}

#[test]
fn a_partition_after_an_empty_one_still_gets_its_first_batch() {
    let broker = broker(&[]);
    let mut raw = Raw::connect(&broker.address);
    // With 2 shards, partitions 0 and 1 are on different shards, 0 and 2 on the same one.
    assert_eq!(create_topic(&mut raw, "late", 3).topics[0].error_code, 0);
    fill(&mut raw, "late", 1);
    fill(&mut raw, "late", 2);
    for second in [1, 2] {
        let response = fetch(&mut raw, "late", &[(0, 0), (second, 0)], 1_000, i32::MAX);
        let answers = answers(&response);
        assert!(answers[0].1.is_empty());
        assert_eq!(answers[1].1.len(), 1, "partition {second}");
    }
}

#[test]
fn the_broker_fetch_max_bytes_caps_every_response() {
    let broker = broker(&["--fetch-max-bytes", "300000"]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "capped", 2).topics[0].error_code, 0);
    fill(&mut raw, "capped", 0);
    fill(&mut raw, "capped", 1);
    let response = fetch(&mut raw, "capped", &[(0, 0)], i32::MAX, i32::MAX);
    let bytes = total_bytes(&response);
    assert!(bytes <= 300_000 && bytes > 0, "{bytes} bytes");
    let response = fetch(&mut raw, "capped", &[(0, 0), (1, 0)], i32::MAX, i32::MAX);
    let bytes = total_bytes(&response);
    assert!(bytes <= 300_000 && bytes > 0, "{bytes} bytes");

    // The limit is shown as Kafka names it.
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = 4;
    resource.resource_name = StrBytes::from_static_str("0");
    resource.configuration_keys = Some(vec![StrBytes::from_static_str("fetch.max.bytes")]);
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &request);
    let configs = &response.results[0].configs;
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert_eq!(configs[0].value.as_deref(), Some("300000"));
}

#[test]
fn fetch_max_bytes_is_validated() {
    let temp = tempfile::tempdir().expect("temp dir");
    for bad in ["1023", "1073741825"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["serve", "--listen", "127.0.0.1:0", "--fetch-max-bytes", bad])
            .arg("--data-dir")
            .arg(temp.path())
            .output()
            .expect("run petrel");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid setting fetch-max-bytes"),
            "{stderr}"
        );
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    let (user, system) = (fields[11], fields[12]);
    user.parse::<u64>().expect("utime") + system.parse::<u64>().expect("stime")
}

#[test]
fn a_long_poll_that_data_cannot_satisfy_sleeps_instead_of_spinning() {
    let broker = broker(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "trickle", 1).topics[0].error_code, 0);
    fill(&mut raw, "trickle", 0);
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name("trickle");
    let mut partition = FetchPartition::default();
    partition.partition_max_bytes = i32::MAX;
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    // More than the partition holds: the broker waits the whole max_wait for new data.
    request.max_wait_ms = 1_500;
    request.min_bytes = 100 << 20;
    request.max_bytes = i32::MAX;
    request.topics = vec![fetch_topic];
    let before = cpu_ticks(broker.child.id());
    let started = std::time::Instant::now();
    let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
    let waited = started.elapsed();
    let used = cpu_ticks(broker.child.id()) - before;
    assert_eq!(batch_count(&response), BATCHES);
    // Clock ticks are 1/100 s. A broker that re-read the partition in a loop for the whole
    // wait used a third of the time or more (measured: 51 ticks in 150, on 2 busy cores);
    // one that slept used 2 or 3.
    let waited_ticks = waited.as_millis() as u64 / 10;
    assert!(
        used * 8 < waited_ticks,
        "{used} ticks of CPU in {waited:?} of waiting"
    );
}
