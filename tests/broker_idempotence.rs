//! An idempotent librdkafka producer sends while a proxy between it and the broker cuts its
//! connections at random moments. Retries must never duplicate or reorder a record.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Broker;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

const RECORDS: usize = 30_000;
const PARTITIONS: i32 = 3;

/// Forwards connections to `target` and, while `chaos` is on, cuts one at random every
/// 50-300 ms. Bounded: it stops with the test.
struct ChaosProxy {
    port: u16,
    chaos: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl ChaosProxy {
    fn bind() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        (listener, port)
    }

    fn start(listener: TcpListener, port: u16, target: String) -> ChaosProxy {
        let chaos = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let links: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
        listener.set_nonblocking(true).expect("nonblocking");
        {
            let (stop, links) = (stop.clone(), links.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).expect("blocking");
                    let Ok(upstream) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let pairs = [
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                        (upstream.try_clone().unwrap(), client.try_clone().unwrap()),
                    ];
                    for (mut from, mut to) in pairs {
                        std::thread::spawn(move || {
                            let mut buffer = [0u8; 64 * 1024];
                            while let Ok(read) = from.read(&mut buffer) {
                                if read == 0 || to.write_all(&buffer[..read]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(Shutdown::Both);
                            let _ = from.shutdown(Shutdown::Both);
                        });
                    }
                    links.lock().unwrap().push((client, upstream));
                }
            });
        }
        {
            let (chaos, stop, cuts) = (chaos.clone(), stop.clone(), cuts.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(23);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(rng.gen_range(50..300)));
                    if !chaos.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut links = links.lock().unwrap();
                    if links.is_empty() {
                        continue;
                    }
                    let victim = rng.gen_range(0..links.len());
                    let (client, upstream) = links.swap_remove(victim);
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = upstream.shutdown(Shutdown::Both);
                    cuts.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        ChaosProxy {
            port,
            chaos,
            stop,
            cuts,
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Failures(AtomicUsize);

struct CountFailures(Arc<Failures>);

impl ClientContext for CountFailures {}

impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            eprintln!("delivery failed: {error}");
            self.0 .0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn an_idempotent_producer_survives_dropped_connections_without_duplicates() {
    let (listener, proxy_port) = ChaosProxy::bind();
    let advertised = format!("127.0.0.1:{proxy_port}");
    let broker = Broker::start(&[
        "--advertised-listener",
        &advertised,
        "--default-partitions",
        "3",
    ]);
    let proxy = ChaosProxy::start(listener, proxy_port, broker.address.clone());
    let through_proxy = format!("127.0.0.1:{}", proxy.port);

    let failures = Arc::new(Failures::default());
    let producer: ThreadedProducer<CountFailures> = ClientConfig::new()
        .set("bootstrap.servers", &through_proxy)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .set("batch.num.messages", "200")
        .create_with_context(CountFailures(failures.clone()))
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(90);
    for index in 0..RECORDS {
        let value = index.to_string();
        let mut record = BaseRecord::<(), _>::to("chaos")
            .partition((index % PARTITIONS as usize) as i32)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    assert!(Instant::now() < deadline, "producer stuck");
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if index % 2000 == 0 {
            // Spread the sends over the chaos rather than one burst.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    proxy.chaos.store(false, Ordering::Relaxed);
    let cuts = proxy.cuts.load(Ordering::Relaxed);
    assert!(cuts >= 3, "the proxy cut only {cuts} connections");
    assert_eq!(
        failures.0.load(Ordering::Relaxed),
        0,
        "every record must be delivered"
    );

    // Read everything back (through the proxy, now calm).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &through_proxy)
        .set("group.id", "petrel-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset("chaos", partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < RECORDS && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value: usize = std::str::from_utf8(message.payload().expect("payload"))
                .unwrap()
                .parse()
                .unwrap();
            by_partition
                .entry(message.partition())
                .or_default()
                .push(value);
            received += 1;
        }
    }
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "more records than sent: duplicates"
    );
    for partition in 0..PARTITIONS {
        let values = by_partition.get(&partition).cloned().unwrap_or_default();
        let expected: Vec<usize> = (0..RECORDS)
            .filter(|i| (i % PARTITIONS as usize) as i32 == partition)
            .collect();
        assert_eq!(
            values.len(),
            expected.len(),
            "partition {partition}: {} of {} records",
            values.len(),
            expected.len()
        );
        assert_eq!(
            values, expected,
            "partition {partition}: every record once, in order"
        );
    }
    eprintln!("chaos test: {cuts} connections cut, {received} records exactly once");
    drop(broker);
}

/// Raw-protocol helpers for the fencing test below.
mod raw {
    use bytes::Bytes;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use super::common::Raw;

    pub fn topic_name(name: &str) -> TopicName {
        TopicName(StrBytes::from_string(name.to_string()))
    }

    pub fn create_topic(raw: &mut Raw, name: &str) {
        let mut topic = CreatableTopic::default();
        topic.name = topic_name(name);
        topic.num_partitions = 1;
        topic.replication_factor = -1;
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &request);
        assert_eq!(response.topics[0].error_code, 0);
    }

    /// InitProducerId without a transactional id, naming `current` if given.
    pub fn init_producer_id(raw: &mut Raw, current: Option<(i64, i16)>) -> (i64, i16) {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        let (id, epoch) = current.unwrap_or((-1, -1));
        request.producer_id = ProducerId(id);
        request.producer_epoch = epoch;
        let response: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &request);
        assert_eq!(response.error_code, 0);
        (response.producer_id.0, response.producer_epoch)
    }

    /// Produces one idempotent batch to partition 0: (error code, base offset).
    pub fn produce(
        raw: &mut Raw,
        topic: &str,
        (producer_id, epoch): (i64, i16),
        sequence: i32,
    ) -> (i16, i64) {
        let batch = petrel::testkit::idempotent_batch(1, 20, producer_id, epoch, sequence);
        let mut partition = PartitionProduceData::default();
        partition.index = 0;
        partition.records = Some(Bytes::from(batch));
        let mut topic_data = TopicProduceData::default();
        topic_data.name = topic_name(topic);
        topic_data.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![topic_data];
        let response: ProduceResponse = raw.call(ApiKey::Produce, 9, &request);
        let answer = &response.responses[0].partition_responses[0];
        (answer.error_code, answer.base_offset)
    }

    /// Every batch of partition 0 from offset 0: (base offset, producer id).
    pub fn batches(raw: &mut Raw, topic: &str) -> Vec<(i64, i64)> {
        let mut partition = FetchPartition::default();
        partition.partition = 0;
        partition.fetch_offset = 0;
        partition.partition_max_bytes = 1 << 20;
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = topic_name(topic);
        fetch_topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.max_bytes = 1 << 20;
        request.topics = vec![fetch_topic];
        let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
        let answer = &response.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0);
        let mut records = answer.records.clone().unwrap_or_default();
        let mut found = Vec::new();
        while !records.is_empty() {
            let header = petrel::record_batch::RecordBatchHeader::parse(&records).expect("batch");
            found.push((header.base_offset.get(), header.producer_id.get()));
            let length = header.total_bytes().expect("length");
            records = records.slice(length..);
        }
        found
    }
}

/// An intruder naming a live producer's id and epoch in InitProducerId must not take over
/// its sequence numbers: every acknowledged batch must be in the log, written by the
/// producer it was acknowledged to.
#[test]
fn a_producer_id_named_by_another_client_is_not_taken_over() {
    let broker = Broker::start(&[]);
    let mut raw = common::Raw::connect(&broker.address);
    raw::create_topic(&mut raw, "fenced");
    let real = raw::init_producer_id(&mut raw, None);
    assert_eq!(real.1, 0);
    let mut acknowledged = Vec::new();
    let (code, offset) = raw::produce(&mut raw, "fenced", real, 0);
    assert_eq!((code, offset), (0, 0));
    acknowledged.push((offset, real.0));
    // The intruder names the real producer's id and epoch.
    let intruder = raw::init_producer_id(&mut raw, Some(real));
    assert_ne!(intruder.0, real.0, "the intruder must get an id of its own");
    assert_eq!(intruder.1, 0);
    let (code, offset) = raw::produce(&mut raw, "fenced", intruder, 0);
    assert_eq!((code, offset), (0, 1));
    acknowledged.push((offset, intruder.0));
    // The real producer carries on, neither fenced nor deduplicated against the intruder.
    let (code, offset) = raw::produce(&mut raw, "fenced", real, 1);
    assert_eq!((code, offset), (0, 2));
    acknowledged.push((offset, real.0));
    let stored = raw::batches(&mut raw, "fenced");
    for (offset, producer_id) in &acknowledged {
        assert!(
            stored.contains(&(*offset, *producer_id)),
            "offset {offset} was acknowledged to producer {producer_id}; the log holds {stored:?}"
        );
    }
    drop(broker);
}
