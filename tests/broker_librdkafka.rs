//! librdkafka (through the `rdkafka` crate) against the real `petrel serve`, with the
//! client's default settings except what each step names.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const RECORDS_PER_CODEC: usize = 100_000;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

fn create_topic(address: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let results =
        block_on(admin.create_topics([&topic], &AdminOptions::new())).expect("create_topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Produces `count` keyed records to `topic` with one producer per acks setting, each
/// taking every third record. Values are `<codec>-<index>`.
fn produce(address: &str, topic: &str, codec: &str, count: usize) {
    let producers: Vec<(i32, ThreadedProducer<DefaultProducerContext>)> = [0, 1, -1]
        .into_iter()
        .map(|acks| {
            let producer = ClientConfig::new()
                .set("bootstrap.servers", address)
                .set("compression.codec", codec)
                .set("acks", acks.to_string())
                .set("enable.idempotence", "false")
                .create()
                .expect("producer");
            (acks, producer)
        })
        .collect();
    for index in 0..count {
        let (_, producer) = &producers[index % 3];
        let key = format!("key-{}", index % 1000);
        let value = format!("{codec}-{index}");
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned)) => {
                    assert!(
                        matches!(
                            error,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce failed: {error}"
                    );
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    for (acks, producer) in producers {
        producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("flush acks={acks}: {e}"));
        assert_eq!(
            producer.in_flight_count(),
            0,
            "acks={acks}: undelivered records"
        );
    }
}

/// Reads every partition of `topic` from offset 0 until `count` records arrived.
/// Returns, per partition, the (key, value) pairs in offset order.
fn consume_all(
    address: &str,
    topic: &str,
    count: usize,
) -> BTreeMap<i32, Vec<(String, String, i64)>> {
    // librdkafka's assign() needs a group handle; offsets are explicit and nothing is
    // committed, so the group coordinator is never asked for.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "petrel-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<(String, String, i64)>> = BTreeMap::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received < count {
        assert!(
            Instant::now() < deadline,
            "timed out after {received} of {count} records"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                let key =
                    String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
                let value = String::from_utf8(message.payload().expect("value").to_vec())
                    .expect("utf-8 value");
                by_partition.entry(message.partition()).or_default().push((
                    key,
                    value,
                    message.offset(),
                ));
                received += 1;
            }
            Some(Err(error)) => panic!("consume error: {error}"),
            None => {}
        }
    }
    // Nothing more than what was produced.
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "more records than produced"
    );
    by_partition
}

/// Every record exactly once; offsets dense from 0; keys stay in one partition; each
/// producer's records in order within a partition.
fn check(by_partition: &BTreeMap<i32, Vec<(String, String, i64)>>, codec: &str, count: usize) {
    let mut seen = HashSet::new();
    let mut partition_of_key: BTreeMap<String, i32> = BTreeMap::new();
    for (&partition, records) in by_partition {
        let mut last_index_per_producer = [None::<usize>; 3];
        for (position, (key, value, offset)) in records.iter().enumerate() {
            assert_eq!(
                *offset, position as i64,
                "partition {partition}: offsets are dense and ordered"
            );
            let index: usize = value
                .strip_prefix(&format!("{codec}-"))
                .and_then(|i| i.parse().ok())
                .expect("value");
            assert_eq!(key, &format!("key-{}", index % 1000), "key matches value");
            assert!(seen.insert(index), "record {index} delivered twice");
            let producer = index % 3;
            if let Some(last) = last_index_per_producer[producer] {
                assert!(
                    index > last,
                    "partition {partition}: producer {producer} out of order"
                );
            }
            last_index_per_producer[producer] = Some(index);
            let owner = *partition_of_key.entry(key.clone()).or_insert(partition);
            assert_eq!(owner, partition, "key {key} in two partitions");
        }
    }
    assert_eq!(seen.len(), count, "every record once");
}

#[test]
fn every_codec_and_acks_mode_round_trips_and_survives_a_restart() {
    let broker = Broker::start(&[]);
    let address = broker.address.clone();
    for codec in CODECS {
        let topic = format!("records-{codec}");
        create_topic(&address, &topic);
        produce(&address, &topic, codec, RECORDS_PER_CODEC);
        let consumed = consume_all(&address, &topic, RECORDS_PER_CODEC);
        assert_eq!(
            consumed.len(),
            PARTITIONS as usize,
            "keys spread over every partition"
        );
        check(&consumed, codec, RECORDS_PER_CODEC);
    }

    // Timestamps for lookups: three batches a minute apart on one partition.
    let timed = "timed";
    create_topic(&address, timed);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .expect("producer");
    let base = 1_700_000_000_000i64;
    for step in 0..3i64 {
        for record in 0..10 {
            let value = format!("{step}-{record}");
            producer
                .send(
                    BaseRecord::<(), _>::to(timed)
                        .partition(0)
                        .payload(&value)
                        .timestamp(base + step * 60_000 + record),
                )
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &[]);
    let address = broker.address.clone();
    for codec in CODECS {
        let consumed = consume_all(&address, &format!("records-{codec}"), RECORDS_PER_CODEC);
        check(&consumed, codec, RECORDS_PER_CODEC);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .expect("consumer");
    let lookup = |timestamp: i64| -> Offset {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(timed, 0, Offset::Offset(timestamp))
            .expect("query");
        let answer = consumer
            .offsets_for_times(query, Duration::from_secs(10))
            .expect("offsets_for_times");
        answer.find_partition(timed, 0).expect("partition").offset()
    };
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 60_000), Offset::Offset(10));
    assert_eq!(
        lookup(base + 60_005),
        Offset::Offset(15),
        "exact record inside a batch"
    );
    assert_eq!(lookup(base + 120_000 + 9), Offset::Offset(29));
    assert_eq!(lookup(base + 10 * 60_000), Offset::End, "nothing that late");
    drop(broker);
    drop(temp);
}
