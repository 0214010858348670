//! Fetch (key 1): reads whole stored batches and sends them without re-encoding.
//!
//! The connection's shard splits the request by owning shard and reads every part
//! concurrently. If the answer holds fewer than `min_bytes` and `max_wait_ms` has not
//! passed, it asks each owning shard to wait until one of its partitions has new data
//! (woken by the log's written-offset event), and reads again as soon as the first does.
//!
//! Byte budgets: each partition is bounded by its `partition_max_bytes`, each shard's part
//! by an equal share of the request's `max_bytes`; within a part, the first batch of the
//! first partition with data is always returned whole (as Kafka does, KIP-74).
//!
//! Sessions (KIP-227): Petrel answers with session id 0 (no session), so clients keep
//! sending full fetch requests.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::server::errors::{partition_not_open_code, storage_error_code};
use crate::server::exchange::{self, HandlerResult};
use crate::server::fanout::Fanout;
use crate::shard::Shard;

/// Longest long-poll honoured, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// What the owning shard needs to read one partition.
#[derive(Clone)]
struct Item {
    topic: String,
    partition: i32,
    offset: i64,
    partition_max_bytes: usize,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

impl Outcome {
    fn failed(error: ResponseError) -> Outcome {
        Outcome {
            error: Some(error),
            high_watermark: -1,
            log_start_offset: -1,
            ..Outcome::default()
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: FetchRequest = exchange::decode(request)?;
    let version = request.api_version;
    let metadata = shard.metadata();
    let mut fanout = Fanout::new();
    for fetch_topic in &body.topics {
        let topic = if version >= 13 {
            metadata.topic_by_id(&fetch_topic.topic_id)
        } else {
            metadata.topic(&fetch_topic.topic)
        };
        for fetch_partition in &fetch_topic.partitions {
            match topic {
                Some(topic) if (0..topic.partitions).contains(&fetch_partition.partition) => {
                    let item = Item {
                        topic: topic.name.clone(),
                        partition: fetch_partition.partition,
                        offset: fetch_partition.fetch_offset,
                        partition_max_bytes: fetch_partition.partition_max_bytes.max(0) as usize,
                    };
                    fanout.route(shard.owner_of(topic, fetch_partition.partition), item);
                }
                _ if version >= 13 => fanout.answer(Outcome::failed(ResponseError::UnknownTopicId)),
                _ => fanout.answer(Outcome::failed(ResponseError::UnknownTopicOrPartition)),
            }
        }
    }
    let max_wait = Duration::from_millis(body.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = body.min_bytes.max(0) as usize;
    let share = (body.max_bytes.max(0) as usize / fanout.owner_count().max(1)).max(1);
    loop {
        fanout
            .run(shard, move |target, items| async move {
                read_on_owner(&target, items, share).await
            })
            .await?;
        let (mut bytes, mut errors) = (0, false);
        for outcome in fanout.routed_answers() {
            bytes += outcome.records.len();
            errors |= outcome.error.is_some();
        }
        let now = Instant::now();
        if fanout.owner_count() == 0
            || bytes >= min_bytes.max(1)
            || errors
            || now >= deadline
            || shard.shutdown.is_started()
        {
            break;
        }
        wait_anywhere(shard, &fanout, deadline - now).await;
    }
    let mut response = FetchResponse::default();
    let mut outcomes = fanout.into_answers(Outcome::default);
    for fetch_topic in &body.topics {
        let mut topic_response = FetchableTopicResponse::default();
        if version >= 13 {
            topic_response.topic_id = fetch_topic.topic_id;
        } else {
            topic_response.topic = TopicName(fetch_topic.topic.0.clone());
        }
        for fetch_partition in &fetch_topic.partitions {
            let outcome = outcomes.next().unwrap_or_default();
            let mut partition = PartitionData::default();
            partition.partition_index = fetch_partition.partition;
            partition.error_code = outcome.error.map_or(0, |e| e.code());
            partition.high_watermark = outcome.high_watermark;
            partition.last_stable_offset = outcome.high_watermark;
            if version >= 5 {
                partition.log_start_offset = outcome.log_start_offset;
            }
            partition.records = Some(outcome.records);
            topic_response.partitions.push(partition);
        }
        response.responses.push(topic_response);
    }
    exchange::respond(request, &response)
}

async fn read_on_owner(
    shard: &Rc<Shard>,
    items: Vec<(usize, Item)>,
    share: usize,
) -> Vec<(usize, Outcome)> {
    let mut left = share;
    let mut results = Vec::with_capacity(items.len());
    let mut first = true;
    for (position, item) in items {
        let Some(partition) = shard.partition(&item.topic, item.partition) else {
            let known = shard.knows_partition(&item.topic, item.partition);
            results.push((position, Outcome::failed(partition_not_open_code(known))));
            continue;
        };
        let high_watermark = partition.high_watermark();
        let mut outcome = Outcome {
            high_watermark,
            log_start_offset: partition.log.log_start_offset(),
            ..Outcome::default()
        };
        // Past the first data, a partition only gets what is left of the share.
        let budget = if first {
            item.partition_max_bytes
        } else {
            item.partition_max_bytes.min(left)
        };
        if budget > 0 && item.offset != high_watermark {
            match partition
                .log
                .read(item.offset, budget, high_watermark)
                .await
            {
                Ok(read) => {
                    if !read.batches.is_empty() {
                        first = false;
                    }
                    left = left.saturating_sub(read.bytes);
                    outcome.records = concat(read.batches, read.bytes);
                }
                Err(error) => outcome.error = Some(storage_error_code(&error)),
            }
        }
        results.push((position, outcome));
    }
    results
}

/// Stored batches, contiguous for the response encoder. A single batch (the common case
/// for a tailing consumer) is passed through without a copy; several are joined once.
fn concat(batches: Vec<Bytes>, bytes: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.into_iter().next().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(bytes);
    for batch in batches {
        joined.extend_from_slice(&batch);
    }
    joined.freeze()
}

/// Waits until any owning shard reports new data for its part, or `within` passes.
async fn wait_anywhere(shard: &Rc<Shard>, fanout: &Fanout<Item, Outcome>, within: Duration) {
    let (signal, woken) = async_channel::bounded::<()>(fanout.owner_count().max(1));
    for (owner, items) in fanout.parts() {
        let watched: Vec<(String, i32, i64)> = items
            .iter()
            .map(|(_, i)| (i.topic.clone(), i.partition, i.offset))
            .collect();
        let (shard, signal) = (shard.clone(), signal.clone());
        glommio::spawn_local(async move {
            let _ = shard
                .run_on(owner, move |target| async move {
                    wait_on_owner(&target, watched, within).await
                })
                .await;
            let _ = signal.try_send(());
        })
        .detach();
    }
    drop(signal);
    futures_lite::future::or(
        async {
            let _ = woken.recv().await;
        },
        glommio::timer::sleep(within),
    )
    .await;
}

/// Resolves when any watched partition's high watermark passes its fetch offset.
async fn wait_on_owner(shard: &Rc<Shard>, watched: Vec<(String, i32, i64)>, within: Duration) {
    let mut listeners = Vec::new();
    for (topic, index, offset) in watched {
        if let Some(partition) = shard.partition(&topic, index) {
            listeners.push(partition.log.on_written());
            if partition.high_watermark() > offset {
                return;
            }
        }
    }
    if listeners.is_empty() {
        glommio::timer::sleep(within).await;
        return;
    }
    let any = futures_lite::future::poll_fn(|context| {
        for listener in listeners.iter_mut() {
            if std::pin::Pin::new(listener).poll(context).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    });
    futures_lite::future::or(any, glommio::timer::sleep(within)).await;
}

use std::future::Future as _;
