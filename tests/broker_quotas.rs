//! Client quotas (KIP-13, KIP-55, KIP-219): byte rates set with AlterClientQuotas (as
//! `kafka-configs --alter --entity-type users|clients` sends them), listed with
//! DescribeClientQuotas and its filters, kept across a restart; a producer over its
//! `producer_byte_rate` gets `throttle_time_ms` while a client without a quota does not; a
//! consumer over its `consumer_byte_rate` gets a throttled answer without data; a client
//! over its `request_percentage` (KIP-124) gets `throttle_time_ms` in any answer. Kafka's
//! CLI sets and lists quotas in the interop matrix (`kafka-cli`, step `quotas`); the
//! effect on a calm client's latency beside a flood is `perf/quota-flood`'s figure.

mod common;

use bytes::Bytes;
use common::{create_topic, produce, topic_name, Broker, Raw};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, BrokerId,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse, FetchRequest, FetchResponse,
};
use kafka_protocol::protocol::StrBytes;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// An entry: entity parts (type, name or None for the default) and (key, value or None
/// to remove).
fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> EntryData {
    let mut entry = EntryData::default();
    entry.entity = entity
        .iter()
        .map(|(entity_type, name)| {
            let mut part = EntityData::default();
            part.entity_type = text(entity_type);
            part.entity_name = name.map(text);
            part
        })
        .collect();
    entry.ops = ops
        .iter()
        .map(|(key, value)| {
            let mut op = OpData::default();
            op.key = text(key);
            op.value = value.unwrap_or(0.0);
            op.remove = value.is_none();
            op
        })
        .collect();
    entry
}

fn alter(raw: &mut Raw, entries: Vec<EntryData>) -> Vec<i16> {
    let mut request = AlterClientQuotasRequest::default();
    request.entries = entries;
    let response: AlterClientQuotasResponse = raw.call(ApiKey::AlterClientQuotas, 1, &request);
    response.entries.iter().map(|e| e.error_code).collect()
}

/// A described entry: its entity as "type=name" parts, and its values.
type Described = (Vec<String>, Vec<(String, f64)>);

/// Entries a filter matches.
fn describe(
    raw: &mut Raw,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Vec<Described> {
    let mut request = DescribeClientQuotasRequest::default();
    request.components = components
        .iter()
        .map(|(entity_type, match_type, name)| {
            let mut component = ComponentData::default();
            component.entity_type = text(entity_type);
            component.match_type = *match_type;
            component._match = name.map(text);
            component
        })
        .collect();
    request.strict = strict;
    let response: DescribeClientQuotasResponse =
        raw.call(ApiKey::DescribeClientQuotas, 1, &request);
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    let mut entries: Vec<_> = response
        .entries
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let entity: Vec<String> = entry
                .entity
                .iter()
                .map(|part| {
                    let name = part.entity_name.as_deref().unwrap_or("<default>");
                    format!("{}={name}", part.entity_type)
                })
                .collect();
            let values = entry
                .values
                .iter()
                .map(|value| (value.key.to_string(), value.value))
                .collect();
            (entity, values)
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// A batch of about `bytes` bytes.
fn batch_of(bytes: usize) -> Bytes {
    let value = vec![b'x'; bytes];
    Bytes::from(petrel::record_batch::build_batch(
        &[value.as_slice()],
        1_700_000_000_000,
    ))
}

/// Produce acks=1 of one batch: (error code, throttle_time_ms).
fn produce_throttle(raw: &mut Raw, topic: &str, bytes: usize) -> (i16, i32) {
    let response = produce(raw, topic, vec![(0, batch_of(bytes))], 1);
    let code = response.responses[0].partition_responses[0].error_code;
    (code, response.throttle_time_ms)
}

/// A consumer's fetch of partition 0 from offset 0: (throttle_time_ms, record bytes).
fn fetch(raw: &mut Raw, topic: &str) -> (i32, usize) {
    let mut partition = FetchPartition::default();
    partition.partition_max_bytes = 8 << 20;
    let mut asked = FetchTopic::default();
    asked.topic = topic_name(topic);
    asked.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_bytes = 8 << 20;
    request.topics = vec![asked];
    let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
    let bytes = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    (response.throttle_time_ms, bytes)
}

#[test]
fn quotas_are_set_listed_kept_and_throttle_only_their_clients() {
    let broker = Broker::start(&[]);
    let mut admin = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut admin, "flood", 1).topics[0].error_code, 0);
    assert_eq!(
        alter(
            &mut admin,
            vec![
                entry(
                    &[("client-id", Some("noisy"))],
                    &[("producer_byte_rate", Some(10240.0))]
                ),
                entry(
                    &[("client-id", Some("reader"))],
                    &[("consumer_byte_rate", Some(1024.0))]
                ),
                entry(
                    &[("user", Some("bob"))],
                    &[("consumer_byte_rate", Some(1e9))]
                ),
                entry(
                    &[("user", None)],
                    &[("controller_mutation_rate", Some(50.0))]
                ),
                entry(
                    &[("ip", Some("10.0.0.1"))],
                    &[("producer_byte_rate", Some(1.0))]
                ),
                entry(
                    &[("client-id", Some("x"))],
                    &[("producer_byte_rate", Some(-5.0))]
                ),
            ]
        ),
        vec![0, 0, 0, INVALID_CONFIG, INVALID_REQUEST, INVALID_CONFIG]
    );

    let noisy = vec!["client-id=noisy".to_string()];
    assert_eq!(
        describe(&mut admin, &[("client-id", 0, Some("noisy"))], false),
        vec![(noisy.clone(), vec![("producer_byte_rate".into(), 10240.0)])]
    );
    assert_eq!(
        describe(&mut admin, &[("user", 2, None)], true),
        vec![(
            vec!["user=bob".to_string()],
            vec![("consumer_byte_rate".into(), 1e9)]
        )]
    );
    assert_eq!(
        describe(&mut admin, &[("client-id", 2, None)], false).len(),
        2
    );
    assert!(
        describe(&mut admin, &[("user", 1, None)], false).is_empty(),
        "no default user"
    );
    assert_eq!(describe(&mut admin, &[], false).len(), 3);

    // 64 KiB is within 10 KiB/s over the 10 s window; 128 KiB is not.
    let mut flood = Raw::connect(&broker.address);
    flood.client_id = "noisy".into();
    assert_eq!(produce_throttle(&mut flood, "flood", 64 << 10), (0, 0));
    let (code, throttle) = produce_throttle(&mut flood, "flood", 64 << 10);
    assert_eq!(code, 0, "a throttled produce is still written");
    assert!(throttle > 0, "over its quota: throttled");
    // A client without a quota of its own is not.
    let mut calm = Raw::connect(&broker.address);
    calm.client_id = "calm".into();
    for _ in 0..3 {
        assert_eq!(produce_throttle(&mut calm, "flood", 64 << 10), (0, 0));
    }

    // A consumer over its rate gets the throttle and no data; another one gets the data.
    let mut reader = Raw::connect(&broker.address);
    reader.client_id = "reader".into();
    let (throttle, bytes) = fetch(&mut reader, "flood");
    assert!(throttle > 0, "over its quota: throttled");
    assert_eq!(bytes, 0, "a throttled fetch answers without data");
    let (throttle, bytes) = fetch(&mut calm, "flood");
    assert_eq!(throttle, 0);
    assert!(bytes > 64 << 10);

    // Removing a key; then the quotas survive a restart.
    assert_eq!(
        alter(
            &mut admin,
            vec![entry(
                &[("client-id", Some("reader"))],
                &[("consumer_byte_rate", None)]
            )]
        ),
        vec![0]
    );
    drop((admin, flood, calm, reader));
    let dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&dir, &[]);
    let mut admin = Raw::connect(&broker.address);
    let kept = describe(&mut admin, &[], false);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0].0, noisy);
    drop(temp);
}

/// KIP-124: `request_percentage` bounds the time a client's requests take on a shard, in
/// percent of one thread. A client that keeps asking gets `throttle_time_ms` in answers of
/// any API (here Metadata) and its connection is muted; a client under no such quota is
/// not throttled.
#[test]
fn a_client_over_its_request_time_quota_is_throttled_on_any_api() {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let broker = Broker::start(&[]);
    let mut admin = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut admin, "busy", 8).topics[0].error_code, 0);
    // 0.01% of a thread: about a millisecond of handling over the 11 s window.
    assert_eq!(
        alter(
            &mut admin,
            vec![entry(
                &[("client-id", Some("busy"))],
                &[("request_percentage", Some(0.01))]
            )]
        ),
        vec![0]
    );
    let busy = vec!["client-id=busy".to_string()];
    assert_eq!(
        describe(&mut admin, &[("client-id", 0, Some("busy"))], false),
        vec![(busy, vec![("request_percentage".into(), 0.01)])]
    );
    let metadata = |raw: &mut Raw| -> MetadataResponse {
        raw.call(ApiKey::Metadata, 12, &MetadataRequest::default())
    };

    let mut calm = Raw::connect(&broker.address);
    calm.client_id = "calm".into();
    for _ in 0..200 {
        assert_eq!(metadata(&mut calm).throttle_time_ms, 0, "no quota applies");
    }
    let mut raw = Raw::connect(&broker.address);
    raw.client_id = "busy".into();
    let throttled = (0..2000)
        .map(|_| metadata(&mut raw).throttle_time_ms)
        .find(|&throttle| throttle > 0)
        .expect("a throttle within 2,000 requests");
    assert!(
        (1..=11_000).contains(&throttled),
        "at most Kafka's window: {throttled} ms"
    );
    assert_eq!(metadata(&mut calm).throttle_time_ms, 0, "others go on");
    broker.stop();
}
