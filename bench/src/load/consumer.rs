//! Consumer threads: one librdkafka consumer instance each, all in one group. End-to-end
//! latency is the receive time minus the intended send time stamped in the value.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::clock;
use super::producer::print_client_error;
use super::record;
use super::stats::Recorder;
use super::{ConsumeFrom, LoadArgs};

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often a consumer publishes how many partitions it holds (an admin call into librdkafka).
const ASSIGNMENT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub struct ConsumeContext {
    client_errors: AtomicU64,
}

impl ClientContext for ConsumeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        print_client_error(&self.client_errors, "consumer", &error, reason);
    }
}

impl ConsumerContext for ConsumeContext {}

pub struct ConsumerHandle {
    pub thread: JoinHandle<()>,
    /// Partitions currently assigned to this consumer.
    pub assigned_partitions: Arc<AtomicUsize>,
}

pub fn spawn(
    args: &LoadArgs,
    index: usize,
    group: &str,
    run_id: u64,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ConsumerHandle> {
    let from = if args.catch_up {
        ConsumeFrom::Earliest
    } else {
        args.consume_from
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", format!("petrel-bench-consumer-{index}"))
        .set("group.id", group)
        .set(
            "auto.offset.reset",
            match from {
                ConsumeFrom::Earliest => "earliest",
                ConsumeFrom::Latest => "latest",
            },
        )
        .set("enable.partition.eof", "false");
    for (key, value) in &args.extra {
        config.set(key, value);
    }
    let context = ConsumeContext {
        client_errors: AtomicU64::new(0),
    };
    let consumer: BaseConsumer<ConsumeContext> = config
        .create_with_context(context)
        .with_context(|| format!("creating consumer {index}"))?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("consumer {index} subscribing"))?;
    let assigned_partitions = Arc::new(AtomicUsize::new(0));
    let assigned = Arc::clone(&assigned_partitions);
    let thread = std::thread::Builder::new()
        .name(format!("consumer-{index}"))
        .spawn(move || consume(&consumer, run_id, &recorder, &stop, &assigned))
        .context("spawning a consumer thread")?;
    Ok(ConsumerHandle {
        thread,
        assigned_partitions,
    })
}

fn consume(
    consumer: &BaseConsumer<ConsumeContext>,
    run_id: u64,
    recorder: &Recorder,
    stop: &AtomicBool,
    assigned_partitions: &AtomicUsize,
) {
    let mut assignment_checked = Instant::now() - ASSIGNMENT_CHECK_INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => {
                let now_ns = clock::now_ns();
                let value = message.payload().unwrap_or(&[]);
                // Records of other runs still count as bytes read, without a latency.
                let intended_ns = record::decode_intended_ns(value, run_id);
                recorder.record(intended_ns, now_ns, value.len());
            }
            // A broker that went away (the failover workload kills one): librdkafka
            // reconnects and moves to the new leaders itself; nothing was lost. The
            // producer side reports the same through its client-error callback.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(error)) => recorder.error(format!("consume failed: {error}")),
        }
        if assignment_checked.elapsed() >= ASSIGNMENT_CHECK_INTERVAL {
            assignment_checked = Instant::now();
            let count = consumer.assignment().map(|list| list.count()).unwrap_or(0);
            assigned_partitions.store(count, Ordering::Relaxed);
        }
    }
}
