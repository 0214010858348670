//! Producer threads: one librdkafka producer instance each. Acks are handled by the
//! producer's own poll thread (`ThreadedProducer`) in `AckContext::delivery`, which receives
//! the record's intended send time as its delivery opaque.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::clock;
use super::gaps::AckGaps;
use super::pacing::Schedule;
use super::record::RecordFactory;
use super::stats::Recorder;
use super::LoadArgs;

/// Per-producer bound on librdkafka's send queue (its default is 1 GiB per instance).
const QUEUE_KBYTES_MAX: u64 = 64 * 1024;
/// How long a producer waits for its queue to drain at the end before giving up; records
/// still queued then are purged and reported as delivery errors.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// A sleeping producer checks for a stop request at least this often.
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// Wait when librdkafka's queue is full before retrying the same record.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
/// Client-level error lines (connection trouble; librdkafka retries those itself) printed
/// per client before going quiet.
const CLIENT_ERRORS_PRINTED_MAX: u64 = 10;

/// When a producer thread sends and when it stops.
pub struct Plan {
    /// Intended send times in rate mode; None = as fast as the queue accepts.
    pub schedule: Option<Schedule>,
    /// Stop after this many records (the catch-up backlog); None = until `stop`.
    pub records_max: Option<u64>,
    pub stop: Arc<AtomicBool>,
    /// Where acks count towards the failover gap (the measured run, not the backlog).
    pub gaps: Option<Arc<AckGaps>>,
}

pub struct AckContext {
    recorder: Arc<Recorder>,
    gaps: Option<Arc<AckGaps>>,
    client_errors: std::sync::atomic::AtomicU64,
}

impl ClientContext for AckContext {
    fn error(&self, error: KafkaError, reason: &str) {
        print_client_error(&self.client_errors, "producer", &error, reason);
    }
}

impl ProducerContext for AckContext {
    /// The intended send time in ns (`clock::now_ns` scale); `usize` is 64-bit here.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_ns: usize) {
        let now_ns = clock::now_ns();
        match result {
            Ok(message) => {
                self.recorder
                    .record(Some(intended_ns as u64), now_ns, message.payload_len());
                if let Some(gaps) = &self.gaps {
                    gaps.acked(message.partition(), now_ns);
                }
            }
            Err((error, _)) => self.recorder.error(format!("delivery failed: {error}")),
        }
    }
}

pub fn print_client_error(
    printed: &std::sync::atomic::AtomicU64,
    client: &str,
    error: &KafkaError,
    reason: &str,
) {
    let count = printed.fetch_add(1, Ordering::Relaxed);
    if count < CLIENT_ERRORS_PRINTED_MAX {
        eprintln!("{client} client error: {error}: {reason}");
    } else if count == CLIENT_ERRORS_PRINTED_MAX {
        eprintln!("{client} client error: (further client errors of this client not shown)");
    }
}

pub fn client_config(args: &LoadArgs, index: usize) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", format!("petrel-bench-producer-{index}"))
        .set("acks", &args.acks)
        .set("compression.type", args.compression.librdkafka_name())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("queue.buffering.max.kbytes", QUEUE_KBYTES_MAX.to_string());
    for (key, value) in &args.extra {
        config.set(key, value);
    }
    config
}

/// Starts producer `index`; its acks go to `recorder`.
pub fn spawn(
    args: &LoadArgs,
    index: usize,
    run_id: u64,
    recorder: Arc<Recorder>,
    plan: Plan,
) -> anyhow::Result<JoinHandle<()>> {
    let context = AckContext {
        recorder: Arc::clone(&recorder),
        gaps: plan.gaps.clone(),
        client_errors: Default::default(),
    };
    let producer: ThreadedProducer<AckContext> = client_config(args, index)
        .create_with_context(context)
        .with_context(|| format!("creating producer {index}"))?;
    let topic = args.topic.clone();
    let seed = run_id ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let records = RecordFactory::new(args.record_bytes, run_id, args.key_distribution, seed);
    let producers = args.producers as u64;
    std::thread::Builder::new()
        .name(format!("producer-{index}"))
        .spawn(move || {
            let sequence = |k: u64| k * producers + index as u64;
            produce(&producer, &topic, records, &plan, &recorder, sequence);
            finish(&producer, &recorder);
        })
        .context("spawning a producer thread")
}

fn produce(
    producer: &ThreadedProducer<AckContext>,
    topic: &str,
    mut records: RecordFactory,
    plan: &Plan,
    recorder: &Recorder,
    global_sequence: impl Fn(u64) -> u64,
) {
    let should_stop = || plan.stop.load(Ordering::Relaxed);
    let records_max = plan.records_max.unwrap_or(u64::MAX);
    for k in 0..records_max {
        let intended_ns = match &plan.schedule {
            Some(schedule) => {
                let intended_ns = schedule.intended_ns(k);
                if !clock::sleep_until_ns(intended_ns, SLEEP_SLICE, should_stop) {
                    return;
                }
                intended_ns
            }
            None if should_stop() => return,
            None => clock::now_ns(),
        };
        let key = records.key(global_sequence(k));
        let value = records.value(k, intended_ns);
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, intended_ns as usize)
                .payload(value);
        if let Some(key) = &key {
            record = record.key(key.as_slice());
        }
        // Retry on a full queue: the wait counts in the record's latency, as it should.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    if should_stop() {
                        return;
                    }
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    recorder.error(format!("send failed: {error}"));
                    break;
                }
            }
        }
    }
}

/// Waits for outstanding acks; what is still queued after `FLUSH_TIMEOUT` is purged when the
/// producer is dropped and reported through the delivery callback as errors.
fn finish(producer: &ThreadedProducer<AckContext>, recorder: &Recorder) {
    if let Err(error) = producer.flush(FLUSH_TIMEOUT) {
        recorder.error(format!(
            "flush: {error}; {} records still in flight",
            producer.in_flight_count()
        ));
    }
}
